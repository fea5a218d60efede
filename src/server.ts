// createServer(): the Fastify instance with /health and one error handler that turns every failure into a clear
// JSON answer. It never listens by itself: tests use inject(), app.ts calls listen().
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
  /** The /health document; `status` decides nothing about the HTTP code, which is 200 while running. */
  readonly health: () => Record<string, unknown>
}

declare module 'fastify' {
  interface FastifyInstance {
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

export function createServer(options: ServerOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // One line per request would cost more than the work it logs; counters are in /health instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimit,
    return503OnClosing: true,
  })

  // Refused requests by error code (BUFFER_FULL, INVALID_JSON, ...): what clients were told, shown in /health.
  const refused: Record<string, number> = {}
  app.setErrorHandler((err, request, reply) => {
    const { status, body, retryAfterS } = toErrorReply(err, options.bodyLimit)
    refused[body.error] = (refused[body.error] ?? 0) + 1
    if (status >= 500 && status !== 503) request.log.error({ err }, 'request failed')
    if (retryAfterS !== undefined) void reply.header('retry-after', String(retryAfterS))
    return reply.code(status).send(body)
  })

  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({
      error: 'NOT_FOUND',
      message: `no route ${request.method} ${request.url}; POST logs to /logs, GET /health`,
    }),
  )

  app.decorate('healthDocument', () => ({ ...options.health(), refused_requests: refused }))
  app.decorate('refusedRequests', refused)
  app.get('/health', async () => app.healthDocument())
  return app
}
