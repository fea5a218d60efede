// `sidelog top`: polls a running sidelog's /health and /metrics and redraws one frame per interval in the terminal;
// `--once` prints a single frame (two readings an interval apart, for the rates) and exits, for scripts.
import { parseArgs } from 'node:util'
import { loadConfig } from '../config.js'
import { errorMessage } from '../errors.js'
import { probeHost } from '../listen-address.js'
import { type HealthDocument, type Reading, reading, renderFrame } from './view.js'

const USAGE = `Usage: sidelog top [--url URL] [--interval SECONDS] [--once]

Shows a running sidelog: entries/s in and out, each sink's buffer fill, spool lag, retries, dead letters and last
error, redrawn every interval (q or Ctrl-C quits).

  --url URL           sidelog to watch (default: http://SIDELOG_HOST:SIDELOG_PORT from the environment);
                      the admin listener's address works too
  --interval SECONDS  time between readings (default 1)
  --once              print one frame and exit: 0 if sidelog answered, 1 if not
  --help              this text`

const REQUEST_TIMEOUT_MS = 2000

async function read(url: string): Promise<Reading> {
  const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  const [health, metrics] = await Promise.all([
    fetch(`${url}/health`, { signal }),
    fetch(`${url}/metrics`, { signal }),
  ])
  if (!health.ok) throw new Error(`GET /health answered ${health.status}`)
  if (!metrics.ok) throw new Error(`GET /metrics answered ${metrics.status}`)
  return reading(Date.now(), (await health.json()) as HealthDocument, await metrics.text())
}

/** fetch() says only "fetch failed"; the reason (ECONNREFUSED, a timeout) is its cause. */
function reason(err: unknown): string {
  const cause = err instanceof Error ? err.cause : undefined
  return errorMessage(cause ?? err)
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

interface TopOptions {
  readonly url: string
  readonly intervalS: number
  readonly once: boolean
}

function parse(args: readonly string[]): TopOptions | string {
  const { values } = parseArgs({
    args: [...args],
    options: {
      url: { type: 'string' },
      interval: { type: 'string', default: '1' },
      once: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) return USAGE
  const intervalS = Number(values.interval)
  if (!(intervalS > 0 && intervalS <= 3600)) {
    throw new Error(`--interval "${values.interval}" is not a number of seconds from 0.1 to 3600`)
  }
  let url = values.url
  if (!url) {
    const config = loadConfig(process.env)
    url = `http://${probeHost(config.SIDELOG_HOST)}:${config.SIDELOG_PORT}`
  }
  return { url: url.replace(/\/+$/, ''), intervalS, once: values.once }
}

/** Runs `sidelog top` with `args` (after `top`); resolves with the exit code. */
export async function runTop(args: readonly string[]): Promise<number> {
  let options: TopOptions
  try {
    const parsed = parse(args)
    if (typeof parsed === 'string') {
      process.stdout.write(`${parsed}\n`)
      return 0
    }
    options = parsed
  } catch (err) {
    process.stderr.write(`sidelog top: ${errorMessage(err)}\n${USAGE}\n`)
    return 2
  }
  return options.once ? once(options) : live(options)
}

async function once(options: TopOptions): Promise<number> {
  try {
    const first = await read(options.url)
    await wait(options.intervalS * 1000)
    const second = await read(options.url)
    const width = process.stdout.columns ?? 200
    process.stdout.write(`${renderFrame(second, first, { ...options, width }).join('\n')}\n`)
    return 0
  } catch (err) {
    process.stderr.write(`sidelog top: cannot read ${options.url}: ${reason(err)}\n`)
    return 1
  }
}

/** Redraws in place on a terminal (alternate screen, cursor hidden); elsewhere prints frame after frame. */
async function live(options: TopOptions): Promise<number> {
  const { stdout, stdin } = process
  const tty = stdout.isTTY === true
  let stopped = false
  let wake: (() => void) | undefined
  const stop = () => {
    stopped = true
    wake?.()
  }
  const onKey = (key: Buffer) => {
    // q, Q, Ctrl-C, Ctrl-D
    if ([0x71, 0x51, 0x03, 0x04].includes(key[0] ?? 0)) stop()
  }
  if (stdin.isTTY) {
    stdin.setRawMode(true)
    stdin.on('data', onKey)
    stdin.resume()
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  if (tty) stdout.write('\x1b[?1049h\x1b[?25l')
  try {
    let previous: Reading | undefined
    while (!stopped) {
      const width = stdout.columns ?? 200
      let lines: string[]
      try {
        const current = await read(options.url)
        lines = renderFrame(current, previous, { ...options, width, hint: tty ? 'q quits' : '' })
        previous = current
      } catch (err) {
        lines = [
          `sidelog top  ${options.url}`,
          '',
          `cannot read ${options.url}: ${reason(err)}; trying again every ${options.intervalS}s`,
        ]
        previous = undefined
      }
      if (tty) stdout.write(`\x1b[H${lines.map((line) => `${line}\x1b[K`).join('\n')}\x1b[J`)
      else stdout.write(`${lines.join('\n')}\n\n`)
      if (stopped) break
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.intervalS * 1000)
        wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  } finally {
    if (tty) stdout.write('\x1b[?25h\x1b[?1049l')
    if (stdin.isTTY) {
      stdin.setRawMode(false)
      stdin.off('data', onKey)
      stdin.pause()
    }
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
  return 0
}
