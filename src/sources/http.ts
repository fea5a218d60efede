// POST /logs: JSON object, JSON array or NDJSON, optionally gzip. Parses and enriches the whole request, then hands
// it to the pipeline in one call: 202 when every entry is buffered, an error naming the line or index otherwise.
import { pipeline as pipe, Transform, type TransformCallback } from 'node:stream'
import { createGunzip } from 'node:zlib'
import type { FastifyInstance } from 'fastify'
import sjson from 'secure-json-parse'
import { bodyTooLarge, InputError, ShuttingDownError } from '../errors.js'
import type { LogEvent } from '../event.js'
import type { Enricher } from '../pipeline/enrich.js'
import type { Pipeline } from '../pipeline/index.js'
import { type IdempotencyStore, keyedEventIds, registerIdempotency } from './idempotency.js'

export interface HttpSourceOptions {
  readonly pipeline: Pipeline
  readonly enrich: Enricher
  readonly maxBodyBytes: number
  /** Honours Idempotency-Key when given (see idempotency.ts). */
  readonly idempotency?: IdempotencyStore
}

type Format = 'json' | 'ndjson'
interface RawBody {
  readonly format: Format
  readonly text: string
}
type Entry = Record<string, unknown>

const JSON_TYPES = ['application/json']
const NDJSON_TYPES = [
  'application/x-ndjson',
  'application/ndjson',
  'application/jsonl',
  'application/x-jsonlines',
  'text/plain',
]
const SAFE_PARSE = { protoAction: 'error', constructorAction: 'error' } as const

function isEntry(value: unknown): value is Entry {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Turns a JSON.parse or secure-json-parse failure into a 400 that says where. */
function syntaxError(err: unknown, where: { line?: number; index?: number }, prefix: string): InputError {
  const message = (err as Error).message
  if (/forbidden (prototype|constructor)/i.test(message)) {
    return new InputError(
      400,
      'FORBIDDEN_KEY',
      `${prefix}has a __proto__ or constructor.prototype key, which sidelog refuses`,
      where,
    )
  }
  const position = /position (\d+)/.exec(message)?.[1]
  return new InputError(400, 'INVALID_JSON', `${prefix}is not valid JSON: ${message}`, {
    ...where,
    ...(position === undefined ? {} : { position: Number(position) }),
  })
}

/** The entries of a JSON body, and whether it was an array (errors then name the index). */
function parseJson(text: string): { entries: Entry[]; isArray: boolean } {
  let value: unknown
  try {
    value = sjson.parse(text, undefined, SAFE_PARSE)
  } catch (err) {
    // If plain JSON.parse succeeds the failure was a forbidden key: for an array, name the element that holds it.
    const plain = safeJsonParse(text)
    if (Array.isArray(plain)) {
      plain.forEach((item, index) => {
        try {
          sjson.scan(item, SAFE_PARSE)
        } catch (scanErr) {
          throw syntaxError(scanErr, { index }, `element ${index} `)
        }
      })
    }
    throw syntaxError(err, {}, 'body ')
  }
  if (isEntry(value)) return { entries: [value], isArray: false }
  if (!Array.isArray(value)) {
    throw new InputError(400, 'NOT_AN_OBJECT', 'body must be a JSON object or an array of objects')
  }
  for (let index = 0; index < value.length; index++) {
    if (!isEntry(value[index])) {
      throw new InputError(400, 'NOT_AN_OBJECT', `element ${index} is not a JSON object`, { index })
    }
  }
  return { entries: value as Entry[], isArray: true }
}

function safeJsonParse(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** One entry per non-empty line; `\r\n` line ends are accepted. Line numbers are 1-based. */
function parseNdjson(text: string): { entries: Entry[]; lines: number[] } {
  const entries: Entry[] = []
  const lines: number[] = []
  let start = 0
  for (let line = 1; start <= text.length; line++) {
    let end = text.indexOf('\n', start)
    if (end === -1) end = text.length
    const content = text.slice(start, end).trim()
    start = end + 1
    if (content === '') continue
    let value: unknown
    try {
      value = sjson.parse(content, undefined, SAFE_PARSE)
    } catch (err) {
      throw syntaxError(err, { line }, `line ${line} `)
    }
    if (!isEntry(value))
      throw new InputError(400, 'NOT_AN_OBJECT', `line ${line} is not a JSON object`, { line })
    entries.push(value)
    lines.push(line)
  }
  return { entries, lines }
}

/** Fails the body with a 413 as soon as the decompressed bytes pass the limit, so a gzip bomb stops inflating. */
class ByteLimit extends Transform {
  private seen = 0
  /** Compressed bytes read from the client: Fastify compares them with Content-Length. */
  receivedEncodedLength = 0
  constructor(private readonly limit: number) {
    super()
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
    this.seen += chunk.length
    if (this.seen > this.limit) {
      callback(bodyTooLarge(this.limit))
      return
    }
    callback(null, chunk)
  }
}

export function registerHttpSource(app: FastifyInstance, options: HttpSourceOptions): void {
  const { pipeline, enrich, maxBodyBytes, idempotency } = options

  // Encapsulated: these parsers and the gzip hook apply to /logs only.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    const asRaw =
      (format: Format) => (_request: unknown, body: Buffer, done: (err: null, body: RawBody) => void) =>
        done(null, { format, text: body.toString('utf8') })
    scope.addContentTypeParser(JSON_TYPES, { parseAs: 'buffer' }, asRaw('json'))
    scope.addContentTypeParser(NDJSON_TYPES, { parseAs: 'buffer' }, asRaw('ndjson'))

    // Before the body is read: a draining or saturated sidecar refuses at once, at the cost of a header parse.
    scope.addHook('onRequest', async () => {
      if (!pipeline.isAccepting) throw new ShuttingDownError()
      pipeline.assertNotSaturated()
    })

    scope.addHook('preParsing', async (request, _reply, payload) => {
      const encoding = (request.headers['content-encoding'] ?? 'identity').trim().toLowerCase()
      if (encoding === 'identity' || encoding === '') return payload
      if (encoding !== 'gzip' && encoding !== 'x-gzip') {
        throw new InputError(
          415,
          'UNSUPPORTED_ENCODING',
          `Content-Encoding "${encoding}" is not supported; send gzip or none`,
        )
      }
      const inflated = pipe(payload, createGunzip(), new ByteLimit(maxBodyBytes), () => {})
      payload.on('data', (chunk: Buffer) => {
        inflated.receivedEncodedLength += chunk.length
      })
      return inflated
    })

    if (idempotency) registerIdempotency(scope, idempotency)

    scope.post('/logs', async (request, reply) => {
      const body = request.body as RawBody | undefined
      if (body === undefined || !/\S/.test(body.text)) {
        throw new InputError(400, 'EMPTY_BODY', 'request body is empty; send at least one entry')
      }
      const receivedAt = new Date().toISOString()
      const keyedId = keyedEventIds(request)
      const events: LogEvent[] = []
      if (body.format === 'json') {
        const { entries, isArray } = parseJson(body.text)
        for (let index = 0; index < entries.length; index++) {
          events.push(enrich(entries[index] as Entry, receivedAt, isArray ? { index } : {}, keyedId?.(index)))
        }
      } else {
        const { entries, lines } = parseNdjson(body.text)
        for (let i = 0; i < entries.length; i++) {
          events.push(enrich(entries[i] as Entry, receivedAt, { line: lines[i] as number }, keyedId?.(i)))
        }
      }
      // With a spool, 202 only once the entries are on disk.
      await pipeline.accept(events)
      return reply.code(202).send({ accepted: events.length })
    })
  })
}
