// createServer(): the Fastify instance with /health and one error handler that turns every failure into a clear
// JSON answer. It never listens by itself: tests use inject(), app.ts calls listen().

import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  LogController,
} from 'fastify'
import type { Logger } from 'pino'
import {
  bodyTooLarge,
  errorMessage,
  InputError,
  QueueFullError,
  ShuttingDownError,
  SpoolWriteError,
} from './errors.js'

export interface ServerOptions {
  readonly logger: Logger
  /** Largest request body in bytes (after decompression). */
  readonly bodyLimit: number
  /** Time a client has to send a whole request (REQUEST_TIMEOUT); a stalled one is closed. */
  readonly requestTimeoutMs: number
  /** Open connections at most (MAX_CONNECTIONS); more are closed at once, and counted. */
  readonly maxConnections: number
  /** The /health document; `status` decides nothing about the HTTP code, which is 200 while running. */
  readonly health: () => Record<string, unknown>
}

/**
 * A handler offered every request on Node's own request event, before Fastify routes it: true when it has taken the
 * request (and answers it), false to leave it to Fastify. See sources/http.ts: the usual /logs request costs about
 * a fifth less without Fastify's per-request machinery.
 */
export type FrontDoor = (request: IncomingMessage, response: ServerResponse) => boolean

declare module 'fastify' {
  interface FastifyInstance {
    /** Sets the front door (one per server). */
    setFrontDoor(door: FrontDoor): void
    /** The front door set, if any. */
    readonly frontDoor: FrontDoor | undefined
    /**
     * Answers a request the front door took as the error handler answers a routed one: same status, body, headers
     * and counts. `whileReading`: the body could not be read to its end (too large, over MAX_INFLIGHT_BYTES, cut
     * short), and the connection is closed after the answer, as Fastify closes it after a body parser's error.
     */
    answerError(
      request: IncomingMessage,
      response: ServerResponse,
      err: unknown,
      whileReading?: boolean,
    ): void
    /** Closes every connection of every server listening (shutdown: what is still open holds nothing accepted). */
    closeEveryConnection(): void
    /** The /health document, for other listeners (the admin listener) to serve as it is. */
    healthDocument(): Record<string, unknown>
    /** Requests answered with an error, by the error code they were given (read by /metrics). */
    readonly refusedRequests: Readonly<Record<string, number>>
  }
}

export interface ErrorBody {
  error: string
  message: string
  line?: number
  index?: number
  position?: number
}

const ACCEPTED_TYPES =
  'application/json (one object or an array of objects), or application/x-ndjson, application/jsonl or text/plain (one object per line)'

/** Maps any error raised while handling a request to a status code and a body naming what was wrong. */
export function toErrorReply(
  err: unknown,
  bodyLimit: number,
): { status: number; body: ErrorBody; retryAfterS?: number } {
  if (err instanceof InputError) {
    return { status: err.statusCode, body: { error: err.code, message: err.message, ...err.where } }
  }
  if (err instanceof QueueFullError) {
    return {
      status: 429,
      body: { error: err.code, message: err.message },
      retryAfterS: Math.max(1, Math.ceil(err.retryAfterMs / 1000)),
    }
  }
  if (err instanceof SpoolWriteError) {
    return {
      status: 500,
      body: {
        error: err.code,
        message: `${err.message}; the entries were taken without being made durable (in memory, or in the dead-letter store of a sink that was behind): do not resend them`,
      },
    }
  }
  if (err instanceof ShuttingDownError)
    return { status: 503, body: { error: err.code, message: err.message } }
  const fastifyError = err as Partial<FastifyError>
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return toErrorReply(bodyTooLarge(bodyLimit), bodyLimit)
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        status: 415,
        body: {
          error: 'UNSUPPORTED_MEDIA_TYPE',
          message: `unsupported Content-Type; send ${ACCEPTED_TYPES}`,
        },
      }
    case 'Z_DATA_ERROR':
    case 'Z_BUF_ERROR':
    case 'Z_STREAM_ERROR':
      return {
        status: 400,
        body: { error: 'INVALID_GZIP', message: `body is not valid gzip: ${errorMessage(err)}` },
      }
  }
  const status = fastifyError.statusCode ?? 500
  if (status >= 400 && status < 500) {
    return { status, body: { error: fastifyError.code ?? 'BAD_REQUEST', message: errorMessage(err) } }
  }
  return {
    status: 500,
    body: { error: 'INTERNAL', message: 'internal error; nothing from this request was kept' },
  }
}

/** A refused request's body that stops arriving for this long is not waited for: the answer goes out at once. */
const DISCARD_IDLE_MS = 1000

/**
 * Reads and throws away what is left of a refused request's body, so that the answer reaches the client: closing a
 * socket with unread bytes makes the kernel reset it, and the client sees a broken connection instead of a 413 or a
 * 429, which it would retry forever. Past `maxBytes`, or once the body stalls, it stops waiting (false: the caller
 * then closes the connection after the answer).
 */
async function discardUnread(raw: IncomingMessage, maxBytes: number): Promise<boolean> {
  if (raw.complete || raw.readableEnded || raw.destroyed) return true
  return new Promise((resolve) => {
    let seen = 0
    let idle = setTimeout(() => done(false), DISCARD_IDLE_MS)
    const done = (ok: boolean) => {
      clearTimeout(idle)
      raw.off('data', onData)
      raw.off('end', onEnd)
      raw.off('close', onClose)
      resolve(ok)
    }
    const onData = (chunk: Buffer) => {
      seen += chunk.length
      clearTimeout(idle)
      idle = setTimeout(() => done(false), DISCARD_IDLE_MS)
      if (seen > maxBytes) done(false)
    }
    const onEnd = () => done(true)
    const onClose = () => done(raw.complete)
    raw.on('data', onData)
    raw.once('end', onEnd)
    raw.once('close', onClose)
    // Whatever it was piped into (a body meter, gunzip) has stopped reading: take it off, or backpressure stalls it.
    raw.unpipe()
    raw.resume()
  })
}

/**
 * For a request answered outside Fastify (the front door): a failure while answering, which nothing else would
 * catch, is logged and the connection closed. The client sees a broken connection, as for any answer lost on the
 * way; whether its entries were taken is then unknown to it, which an Idempotency-Key settles on its resend.
 */
export function destroyOnFailure(response: ServerResponse, logger: Pick<Logger, 'error'>) {
  return (err: unknown) => {
    logger.error({ err }, 'request failed while it was answered')
    response.destroy()
  }
}

/**
 * Fastify's key for the servers it opens beside its main one (for "localhost", one per other address). Internal to
 * Fastify: test/sources/front-door.test.ts fails if it stops finding them.
 */
const fastifySymbols = createRequire(import.meta.url)('fastify/lib/symbols.js') as {
  kServerBindings?: unknown
}
// Loudly, at start-up, rather than a server for ::1 left without the front door and MAX_CONNECTIONS after an upgrade.
if (typeof fastifySymbols.kServerBindings !== 'symbol') {
  throw new Error("this Fastify has no 'fastify.serverBindings' symbol")
}
const kServerBindings: symbol = fastifySymbols.kServerBindings

/** The Content-Type Fastify gives a serialised answer. */
export const JSON_TYPE = 'application/json; charset=utf-8'

export function createServer(options: ServerOptions): FastifyInstance {
  let frontDoor: FrontDoor | undefined
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // One line per request would cost more than the work it logs; counters are in /health instead.
    logController: new LogController({ disableRequestLogging: true }),
    // Not a child logger per request (a pino child costs more than some requests): the few lines logged per request
    // (errors) go out without its id, which nothing else refers to.
    childLoggerFactory: (logger) => logger,
    bodyLimit: options.bodyLimit,
    return503OnClosing: true,
    // Every wait on a client has a time-out: a body that stalls is closed (Node checks every second here).
    requestTimeout: options.requestTimeoutMs,
    http: { connectionsCheckingInterval: 1000, headersTimeout: options.requestTimeoutMs },
  })
  let droppedConnections = 0
  /**
   * What sidelog sets on each server Fastify makes: the front door before Fastify's own handler, and
   * MAX_CONNECTIONS with its count of refused connections. (The door is not installed through `serverFactory`: with
   * one, Fastify leaves the server to its maker, and listens on one address of "localhost" only.)
   */
  const equip = (server: HttpServer) => {
    const [fastifyHandler] = server.listeners('request') as ((
      request: IncomingMessage,
      response: ServerResponse,
    ) => void)[]
    if (fastifyHandler === undefined) throw new Error("Fastify's server has no request handler")
    server.removeListener('request', fastifyHandler)
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      if (frontDoor?.(request, response) !== true) fastifyHandler(request, response)
    })
    server.maxConnections = options.maxConnections
    server.on('drop', () => {
      droppedConnections++
    })
  }
  equip(app.server)
  // For SIDELOG_HOST=localhost Fastify opens one more server per other address of the name (::1 beside 127.0.0.1)
  // while it listens: each gets the same, before it is announced as listening.
  const serverBindings = (app as unknown as Record<symbol, unknown>)[kServerBindings]
  if (!Array.isArray(serverBindings)) throw new Error('this Fastify keeps no list of the servers it opens')
  const bindings = () => serverBindings as HttpServer[]
  app.addHook('onListen', (done) => {
    for (const server of bindings()) equip(server)
    done()
  })
  app.decorate('closeEveryConnection', () => {
    for (const server of [app.server, ...bindings()]) server.closeAllConnections()
  })

  // Refused requests by error code (BUFFER_FULL, INVALID_JSON, ...): what clients were told, shown in /health.
  const refused: Record<string, number> = {}
  /** The answer to a request that failed with `err`, once what is left of its body is read (see discardUnread). */
  const errorAnswer = async (err: unknown, raw: IncomingMessage) => {
    const { status, body, retryAfterS } = toErrorReply(err, options.bodyLimit)
    refused[body.error] = (refused[body.error] ?? 0) + 1
    if (status >= 500 && status !== 503) options.logger.error({ err }, 'request failed')
    const headers: Record<string, string> = {}
    if (retryAfterS !== undefined) headers['retry-after'] = String(retryAfterS)
    // A client that sends more than twice the limit after being refused is not listening: close on it.
    if (!(await discardUnread(raw, 2 * options.bodyLimit + 1024 ** 2))) headers.connection = 'close'
    return { status, body, headers }
  }
  app.setErrorHandler(async (err, request, reply) => {
    const { status, body, headers } = await errorAnswer(err, request.raw)
    return reply.code(status).headers(headers).send(body)
  })
  app.decorate('setFrontDoor', (door: FrontDoor) => {
    frontDoor = door
  })
  app.decorate('frontDoor', { getter: () => frontDoor })
  app.decorate(
    'answerError',
    (request: IncomingMessage, response: ServerResponse, err: unknown, whileReading = false) => {
      errorAnswer(err, request).then(
        ({ status, body, headers }) => {
          if (response.headersSent || response.destroyed) return
          const text = JSON.stringify(body)
          response.writeHead(status, {
            ...headers,
            ...(whileReading ? { connection: 'close' } : {}),
            'content-type': JSON_TYPE,
            'content-length': String(Buffer.byteLength(text)),
          })
          response.end(text)
        },
        destroyOnFailure(response, options.logger),
      )
    },
  )

  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({
      error: 'NOT_FOUND',
      message: `no route ${request.method} ${request.url}; POST logs to /logs, GET /health`,
    }),
  )

  app.decorate('healthDocument', () => ({
    ...options.health(),
    refused_requests: refused,
    refused_connections: droppedConnections,
  }))
  app.decorate('refusedRequests', refused)
  app.get('/health', async () => app.healthDocument())
  return app
}
