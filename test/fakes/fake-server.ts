// What every protocol-level fake of a Google API shares: an HTTP server on 127.0.0.1:0, a log of requests with
// the status each was answered, Google's error body, and fault injection. The next N requests of a target can
// answer a status, stall, have their connection reset, or take effect and then lose their answer (the connection
// drops before the client hears, so it retries something that already happened).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export type Fault =
  | { readonly kind: 'status'; readonly status: number; readonly reason?: string }
  | { readonly kind: 'stall' }
  | { readonly kind: 'reset' }
  | { readonly kind: 'lost-answer' }

export interface RecordedRequest {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  /** The status answered; undefined while pending, or when the connection was dropped instead. */
  status?: number
}

/** Answers a request; returns true so that a route branch can `return` it. */
export type Send = (status: number, payload: unknown, headers?: Record<string, string>) => true

/** One request being handled: what came in, and how to answer it. */
export interface Exchange {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: IncomingMessage['headers']
  readonly body: Buffer
  readonly res: ServerResponse
  readonly send: Send
}

const REASONS: Record<number, string> = {
  400: 'invalid',
  401: 'required',
  403: 'forbidden',
  404: 'notFound',
  408: 'requestTimeout',
  409: 'duplicate',
  412: 'conditionNotMet',
  429: 'rateLimitExceeded',
  500: 'backendError',
  503: 'backendError',
}

export abstract class FakeGoogleServer<Target extends string> {
  readonly requests: RecordedRequest[] = []
  url = ''
  private readonly faults: {
    fault: Fault
    target: Target | 'any'
    remaining: number
    where?: (request: RecordedRequest) => boolean
  }[] = []
  private readonly stalled = new Set<ServerResponse>()
  private server: Server | undefined

  /** The target a fault applies to when the test names none. */
  protected abstract readonly defaultTarget: Target
  /** Whether a request belongs to a fault target. */
  protected abstract isTarget(target: Target, request: RecordedRequest): boolean
  /** Answers one request (every branch answers). */
  protected abstract route(exchange: Exchange): boolean

  /** Listens on a free port of 127.0.0.1 unless told otherwise (a fake in a container listens on 0.0.0.0). */
  async start(port = 0, host = '127.0.0.1'): Promise<string> {
    this.server = createServer((req, res) => {
      void this.handle(req, res).catch((err: Error) => {
        if (!res.headersSent) this.sendError(res, 500, err.message)
      })
    })
    await new Promise<void>((resolve) => this.server?.listen(port, host, resolve))
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
    return this.url
  }

  async stop(): Promise<void> {
    for (const res of this.stalled) res.destroy()
    this.server?.closeAllConnections()
    await new Promise<void>((resolve) => this.server?.close(() => resolve()))
  }

  /**
   * The next `times` requests of `target` (and, with `where`, only those it picks) suffer `fault`. Faults queue in the
   * order they were injected.
   */
  inject(
    fault: Fault,
    options: { times?: number; target?: Target | 'any'; where?: (request: RecordedRequest) => boolean } = {},
  ): void {
    this.faults.push({
      fault,
      target: options.target ?? this.defaultTarget,
      remaining: options.times ?? 1,
      ...(options.where ? { where: options.where } : {}),
    })
  }

  /** Drops every fault not yet suffered: the service recovers. */
  clearFaults(): void {
    this.faults.length = 0
  }

  /** Google's error body: `{ error: { code, message, errors: [{ domain, reason, message }] } }`. */
  protected sendError(
    res: ServerResponse,
    status: number,
    message: string,
    reason = REASONS[status] ?? 'error',
  ): true {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(
      JSON.stringify({ error: { code: status, message, errors: [{ domain: 'global', reason, message }] } }),
    )
    return true
  }

  private takeFault(request: RecordedRequest): Fault | undefined {
    const pending = this.faults.find(
      (f) =>
        f.remaining > 0 &&
        (f.target === 'any' || this.isTarget(f.target, request)) &&
        (f.where === undefined || f.where(request)),
    )
    if (!pending) return undefined
    pending.remaining--
    return pending.fault
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url)
    const path = decodeURIComponent(url.pathname)
    const body = await readBody(req)
    const method = req.method ?? 'GET'
    const record: RecordedRequest = { method, path, query: url.searchParams }
    this.requests.push(record)
    res.on('finish', () => {
      record.status = res.statusCode
    })

    const fault = this.takeFault(record)
    switch (fault?.kind) {
      case 'status':
        this.sendError(res, fault.status, `injected ${fault.status}`, fault.reason)
        return
      case 'reset':
        req.socket.destroy()
        return
      case 'stall':
        this.stalled.add(res)
        return
    }
    const send: Send =
      fault?.kind === 'lost-answer'
        ? () => {
            req.socket.destroy()
            return true
          }
        : (status, payload, headers = {}) => {
            const data = Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload))
            res.writeHead(status, { 'content-type': 'application/json', ...headers })
            res.end(data)
            return true
          }
    this.route({ method, path, query: url.searchParams, headers: req.headers, body, res, send })
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}
