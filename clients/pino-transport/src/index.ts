// @sidelog/pino-transport: ships a Node app's pino logs to sidelog. pino's JSON lines are batched into NDJSON bodies
// and POSTed to /logs one request at a time (so order is kept), each batch under one Idempotency-Key that every
// retry reuses, so a request whose answer was lost is sent again without being stored twice. 429 and 503 are
// waited out (Retry-After), 413 splits the batch, a body sidelog refuses goes to stderr, and nothing here ever
// throws into the app. Use it as `pino.transport({ target: '@sidelog/pino-transport' })`.
import { randomUUID } from 'node:crypto'
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
  /** How long one request may take before it counts as failed (and is sent again, under the same key). */
  readonly requestTimeoutMs?: number
  /**
   * How long close() keeps trying; what is still unsent then is written to stderr, never dropped silently. Under
   * pino at most 9 s: pino's end() kills a transport that takes 10 s.
   */
  readonly closeTimeoutMs?: number
}

/** What the shipper has done so far. */
export interface ShipperStats {
  /** Lines sidelog took (202, or a 500 SPOOL_WRITE_FAILED, which also took them). */
  sent: number
  /** Lines written to stderr instead: refused by sidelog (400, 413 for one line, 415, 422) or unsent at close. */
  spilled: number
  /** Requests sent again after a 429, 503, 5xx or a network error. */
  retries: number
}

const DEFAULTS = {
  url: 'http://127.0.0.1:9090/logs',
  batchSize: 100,
  batchBytes: 1024 * 1024,
  flushIntervalMs: 1000,
  maxBufferedLines: 10_000,
  maxRetryDelayMs: 30_000,
  requestTimeoutMs: 10_000,
  closeTimeoutMs: 5_000,
} satisfies Required<SidelogTransportOptions>

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The delay sidelog asks for (Retry-After, in seconds), else exponential from 100 ms, capped. */
function retryDelay(res: Response | undefined, attempt: number, maxMs: number): number {
  const asked = Number(res?.headers.get('retry-after'))
  if (Number.isFinite(asked) && asked > 0) return Math.min(asked * 1000, maxMs)
  return Math.min(100 * 2 ** attempt, maxMs)
}

/** The `error` code of a JSON error body, if it has one. */
function errorCode(text: string): string | undefined {
  try {
    const code = (JSON.parse(text) as { error?: unknown }).error
    return typeof code === 'string' ? code : undefined
  } catch {
    return undefined
  }
}

/** Batches lines and sends them, one request at a time. Exported for tests and for use without pino. */
export class SidelogShipper {
  private readonly options: Required<SidelogTransportOptions>
  private pending: string[] = []
  private pendingBytes = 0
  private sending: Promise<void> | undefined
  private readonly timer: NodeJS.Timeout
  private deadline = Number.POSITIVE_INFINITY
  /** Aborted at close's deadline: a request still waiting for its answer then gives up. */
  private readonly closing = new AbortController()
  readonly stats: ShipperStats = { sent: 0, spilled: 0, retries: 0 }

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

  /** Sends everything queued, trying until `closeTimeoutMs`; what is left then goes to stderr. Never rejects. */
  async close(): Promise<void> {
    clearInterval(this.timer)
    this.deadline = Date.now() + this.options.closeTimeoutMs
    const stop = setTimeout(() => this.closing.abort(), this.options.closeTimeoutMs)
    try {
      while (this.pending.length > 0 || this.sending) {
        this.kick()
        await this.sending
      }
    } finally {
      clearTimeout(stop)
    }
  }

  private kick(): void {
    if (this.sending || this.pending.length === 0) return
    this.sending = this.sendAll().finally(() => {
      this.sending = undefined
    })
  }

  /** Never rejects: a batch that meets an error nobody foresaw goes to stderr, and the next one is sent. */
  private async sendAll(): Promise<void> {
    while (this.pending.length > 0) {
      const lines = this.take()
      try {
        await this.send(lines, randomUUID())
      } catch (err) {
        this.spill(lines, `the transport failed (${(err as Error)?.message ?? String(err)})`)
      }
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

  /** Sends one batch under `key` until sidelog has taken it, refused it for good, or close's deadline passes. */
  private async send(lines: string[], key: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      let res: Response | undefined
      let text = ''
      try {
        res = await fetch(this.options.url, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson', 'idempotency-key': key },
          body: lines.join('\n'),
          signal: AbortSignal.any([AbortSignal.timeout(this.options.requestTimeoutMs), this.closing.signal]),
        })
        text = await res.text()
      } catch {
        res = undefined // sidelog not up yet, restarting, or the answer was lost: the same key again
      }
      if (res?.status === 202) {
        this.stats.sent += lines.length
        return
      }
      if (res?.status === 500 && errorCode(text) === 'SPOOL_WRITE_FAILED') {
        // sidelog took the lines but could not make them durable, and says not to resend them.
        this.stats.sent += lines.length
        process.stderr.write(
          `sidelog transport: sidelog took ${lines.length} line(s) without writing them to its spool (500 SPOOL_WRITE_FAILED); not resending\n`,
        )
        return
      }
      if (res?.status === 413 && lines.length > 1) {
        // Each half is another request, so another key.
        const half = Math.ceil(lines.length / 2)
        await this.send(lines.slice(0, half), randomUUID())
        return this.send(lines.slice(half), randomUUID())
      }
      if (res && res.status !== 429 && res.status < 500) {
        // sidelog refused the body for what it is (400, 413 for one line, 415, 422): retrying cannot help.
        return this.spill(lines, `sidelog answered ${res.status} ${text.slice(0, 300)}`)
      }
      const delay = retryDelay(res, attempt, this.options.maxRetryDelayMs)
      if (Date.now() + delay > this.deadline) return this.spill(lines, 'sidelog unreachable at close')
      this.stats.retries++
      await sleep(delay)
    }
  }

  /** Lines that cannot be delivered are written to stderr, where the platform's own log collection sees them. */
  private spill(lines: readonly string[], why: string): void {
    this.stats.spilled += lines.length
    process.stderr.write(`sidelog transport: ${why}; writing ${lines.length} line(s) here instead\n`)
    for (const line of lines) process.stderr.write(`${line}\n`)
  }
}

/**
 * pino's end() (called by the app, or by pino itself at exit) waits 10 s for its transport and then kills it: lines
 * still unsent would vanish. The transport gives up a second before that and writes them to stderr instead.
 */
const PINO_END_LIMIT_MS = 9_000

/** The pino transport entry point: `pino.transport({ target: '@sidelog/pino-transport', options })`. */
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
