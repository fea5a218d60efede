// A pino transport that ships a Node app's logs to sidelog: pino's JSON lines are batched into NDJSON bodies and
// POSTed to /logs one request at a time (so order is kept), retried on 429/503 (after Retry-After) and on network
// errors, and flushed on close. The app never loses a line to a busy sidecar: when too many lines wait, the
// transport stops reading and pino's own buffer holds the rest. Use it as `transport: { target: 'sidelog/pino-transport' }`.
import build from 'pino-abstract-transport'

export interface SidelogTransportOptions {
  /** sidelog's endpoint. */
  readonly url?: string
  /** Lines per request. */
  readonly batchSize?: number
  /** Bytes per request, well under sidelog's MAX_BODY_BYTES (5 MiB by default). */
  readonly batchBytes?: number
  /** A partial batch is sent this long after its first line. */
  readonly flushIntervalMs?: number
  /** Past this many waiting lines the transport stops reading until a request succeeds. */
  readonly maxBufferedLines?: number
  /** The longest wait between two attempts of one request. */
  readonly maxRetryDelayMs?: number
  /**
   * How long close() keeps trying; what is still unsent then is written to stderr, never dropped silently. Under
   * pino at most 9 s: pino's end() kills a transport that takes 10 s.
   */
  readonly closeTimeoutMs?: number
}

const DEFAULTS = {
  url: 'http://127.0.0.1:9090/logs',
  batchSize: 100,
  batchBytes: 1024 * 1024,
  flushIntervalMs: 1000,
  maxBufferedLines: 10_000,
  maxRetryDelayMs: 30_000,
  closeTimeoutMs: 5_000,
} satisfies Required<SidelogTransportOptions>

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The delay sidelog asks for (Retry-After, in seconds), else exponential from 100 ms, capped. */
function retryDelay(res: Response | undefined, attempt: number, maxMs: number): number {
  const asked = Number(res?.headers.get('retry-after'))
  if (Number.isFinite(asked) && asked > 0) return Math.min(asked * 1000, maxMs)
  return Math.min(100 * 2 ** attempt, maxMs)
}

/** Batches lines and sends them, one request at a time. Exported for tests and for non-pino use. */
export class SidelogShipper {
  private readonly options: Required<SidelogTransportOptions>
  private pending: string[] = []
  private pendingBytes = 0
  private sending: Promise<void> | undefined
  private readonly timer: NodeJS.Timeout
  private deadline = Number.POSITIVE_INFINITY

  constructor(options: SidelogTransportOptions = {}) {
    this.options = { ...DEFAULTS, ...options }
    this.timer = setInterval(() => this.kick(), this.options.flushIntervalMs)
    this.timer.unref()
  }

  /** Queues one line; resolves at once unless too many lines wait, then when a request has gone through. */
  async push(line: string): Promise<void> {
    this.pending.push(line)
    this.pendingBytes += Buffer.byteLength(line) + 1
    if (this.pending.length >= this.options.batchSize || this.pendingBytes >= this.options.batchBytes)
      this.kick()
    while (this.pending.length >= this.options.maxBufferedLines && this.sending) await this.sending
  }

  /** Sends everything queued, trying until `closeTimeoutMs`; what is left then goes to stderr. */
  async close(): Promise<void> {
    clearInterval(this.timer)
    this.deadline = Date.now() + this.options.closeTimeoutMs
    while (this.pending.length > 0 || this.sending) {
      this.kick()
      await this.sending
    }
  }

  private kick(): void {
    if (this.sending || this.pending.length === 0) return
    this.sending = this.sendAll().finally(() => {
      this.sending = undefined
    })
  }

  private async sendAll(): Promise<void> {
    while (this.pending.length > 0) {
      const lines = this.take()
      await this.send(lines)
    }
  }

  /** The next request's lines: at most batchSize, and at most batchBytes (but always at least one line). */
  private take(): string[] {
    let count = 0
    let bytes = 0
    for (const line of this.pending) {
      const size = Buffer.byteLength(line) + 1
      if (count > 0 && (count === this.options.batchSize || bytes + size > this.options.batchBytes)) break
      count++
      bytes += size
    }
    const lines = this.pending.splice(0, count)
    this.pendingBytes -= bytes
    return lines
  }

  private async send(lines: string[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      let res: Response | undefined
      try {
        res = await fetch(this.options.url, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson' },
          body: lines.join('\n'),
          signal: AbortSignal.timeout(30_000),
        })
        await res.text()
      } catch {
        res = undefined // sidelog not up yet, or restarting: retry
      }
      if (res?.status === 202) return
      if (res?.status === 413 && lines.length > 1) {
        const half = Math.ceil(lines.length / 2)
        await this.send(lines.slice(0, half))
        return this.send(lines.slice(half))
      }
      if (res && res.status !== 429 && res.status !== 503 && res.status < 500) {
        // sidelog refused the body for what it is (400, 413 for one line, 415): retrying cannot help.
        return this.spill(lines, `sidelog answered ${res.status}`)
      }
      const delay = retryDelay(res, attempt, this.options.maxRetryDelayMs)
      if (Date.now() + delay > this.deadline) return this.spill(lines, 'sidelog unreachable at close')
      await sleep(delay)
    }
  }

  /** Lines that cannot be delivered are written to stderr, where the platform's own log collection sees them. */
  private spill(lines: readonly string[], why: string): void {
    process.stderr.write(`sidelog transport: ${why}; writing ${lines.length} line(s) here instead\n`)
    for (const line of lines) process.stderr.write(`${line}\n`)
  }
}

/**
 * pino's end() (called by the app, or by pino itself at exit) waits 10 s for its transport and then kills it: lines
 * still unsent would vanish. The transport gives up a second before that and writes them to stderr instead.
 */
const PINO_END_LIMIT_MS = 9_000

/** The pino transport entry point: `pino.transport({ target: 'sidelog/pino-transport', options })`. */
export default async function sidelogTransport(options: SidelogTransportOptions = {}) {
  const shipper = new SidelogShipper({
    ...options,
    closeTimeoutMs: Math.min(options.closeTimeoutMs ?? DEFAULTS.closeTimeoutMs, PINO_END_LIMIT_MS),
  })
  return build(
    async (source: AsyncIterable<string>) => {
      for await (const line of source) await shipper.push(line)
    },
    {
      parse: 'lines',
      async close() {
        await shipper.close()
      },
    },
  )
}
