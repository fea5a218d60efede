// POST /v1/logs: the OTLP/HTTP logs receiver. Protobuf or JSON, optionally gzip; the whole request is mapped,
// enriched and accepted in one call, as for /logs, and answered as the OTLP/HTTP specification says.
import { promisify } from 'node:util'
import { gunzip } from 'node:zlib'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { bodyTooLarge, InputError, ShuttingDownError } from '../../errors.js'
import type { LogEvent } from '../../event.js'
import { toErrorReply } from '../../server.js'
import type { Source, SourceContext } from '../source.js'
import { countRecords, decodeJson, decodeProtobuf, toEntries } from './decode.js'
import { ExportLogsServiceResponse, grpcCodeOf, RpcStatus } from './proto.js'
import type { OtlpSettings } from './settings.js'

const PROTOBUF_TYPES = ['application/x-protobuf', 'application/protobuf']
const JSON_TYPES = ['application/json']
/** Retry-After for a 503 while draining: the next instance (or this one, restarted) takes the entries. */
const DRAINING_RETRY_AFTER_S = 1
const gunzipAsync = promisify(gunzip)

type Encoding = 'protobuf' | 'json'

function encodingOf(request: FastifyRequest): Encoding {
  const type = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
  return PROTOBUF_TYPES.includes(type) ? 'protobuf' : 'json'
}

function send(reply: FastifyReply, encoding: Encoding, status: number, message: object, json: object) {
  void reply.code(status)
  if (encoding === 'protobuf') {
    return reply.type('application/x-protobuf').send(Buffer.from(message as Uint8Array))
  }
  return reply.type('application/json').send(json)
}

/** The body, inflated when gzip; inflating stops at MAX_BODY_BYTES, so a gzip bomb is refused, not inflated. */
async function inflate(request: FastifyRequest, body: Buffer, maxBodyBytes: number): Promise<Buffer> {
  const encoding = (request.headers['content-encoding'] ?? 'identity').trim().toLowerCase()
  if (encoding === 'identity' || encoding === '') return body
  if (encoding !== 'gzip' && encoding !== 'x-gzip') {
    throw new InputError(
      415,
      'UNSUPPORTED_ENCODING',
      `Content-Encoding "${encoding}" is not supported; send gzip or none`,
    )
  }
  try {
    return await gunzipAsync(body, { maxOutputLength: maxBodyBytes })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw bodyTooLarge(maxBodyBytes)
    throw err
  }
}

/** Registers POST /v1/logs in a scope of its own. */
export async function createOtlpReceiver({
  shared,
  server,
  pipeline,
  enrich,
}: SourceContext<OtlpSettings>): Promise<Source> {
  {
    const { project, maxBodyBytes } = shared
    const stats = { requests: 0, records: 0, refused_requests: {} as Record<string, number> }

    // Encapsulated: these parsers, hooks and the error handler apply to /v1/logs only.
    server.register(async (scope) => {
      scope.removeAllContentTypeParsers()
      const asBuffer = (_request: unknown, body: Buffer, done: (err: null, body: Buffer) => void) =>
        done(null, body)
      scope.addContentTypeParser([...PROTOBUF_TYPES, ...JSON_TYPES], { parseAs: 'buffer' }, asBuffer)

      // Every failure is a google.rpc.Status in the request's encoding; malformed input is a 4xx, never a 5xx.
      scope.setErrorHandler((err, request, reply) => {
        const { status, body, retryAfterS } = toErrorReply(err, maxBodyBytes)
        stats.refused_requests[body.error] = (stats.refused_requests[body.error] ?? 0) + 1
        if (status >= 500 && status !== 503) request.log.error({ err }, 'OTLP request failed')
        const retryAfter = retryAfterS ?? (status === 503 ? DRAINING_RETRY_AFTER_S : undefined)
        if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter))
        const where = ['index', 'position']
          .filter((key) => key in body)
          .map((key) => ` (${key} ${body[key as 'index' | 'position']})`)
          .join('')
        const status_ = { code: grpcCodeOf(status), message: `${body.error}: ${body.message}${where}` }
        const encoding = encodingOf(request)
        const message = encoding === 'protobuf' ? RpcStatus.encode(RpcStatus.create(status_)).finish() : {}
        return send(reply, encoding, status, message, status_)
      })

      scope.addHook('onRequest', async () => {
        if (!pipeline.isAccepting) throw new ShuttingDownError()
        pipeline.assertNotSaturated()
      })

      scope.post('/v1/logs', async (request, reply) => {
        const encoding = encodingOf(request)
        const body = await inflate(
          request,
          (request.body as Buffer | undefined) ?? Buffer.alloc(0),
          maxBodyBytes,
        )
        const decoded = encoding === 'protobuf' ? decodeProtobuf(body) : decodeJson(body)
        const count = countRecords(decoded)
        const maxBufferedEvents = shared.bufferMaxEvents
        if (count > maxBufferedEvents) {
          throw new InputError(
            413,
            'REQUEST_TOO_LARGE',
            `request holds ${count} log records; a sink buffers at most ${maxBufferedEvents} (BUFFER_MAX_EVENTS): split it`,
          )
        }
        const receivedAt = new Date().toISOString()
        const entries = toEntries(decoded, project)
        const events: LogEvent[] = entries.map((entry, index) => enrich(entry, receivedAt, { index }))
        // All or nothing, as /logs; with a spool, answered only once the entries are on disk.
        if (events.length > 0) await pipeline.accept(events)
        stats.requests++
        stats.records += events.length
        // sidelog takes a request whole or not at all, so a 200 never carries a partial_success.
        const response = ExportLogsServiceResponse.encode(ExportLogsServiceResponse.create({})).finish()
        return send(reply, encoding, 200, response, {})
      })
    })
    return { kind: 'otlp', stats: () => stats }
  }
}
