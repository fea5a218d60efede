// POST /logs: JSON object, JSON array or NDJSON, optionally gzip. Parses and enriches the whole request, then hands
// it to the pipeline in one call: 202 when every entry is buffered, an error naming the line or index otherwise.
import { Transform, type TransformCallback } from 'node:stream'
import { createGunzip } from 'node:zlib'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import sjson from 'secure-json-parse'
import { bodyTooLarge, InputError, QueueFullError, ShuttingDownError } from '../errors.js'
import type { LogEvent } from '../event.js'
import { type Enricher, requestContextOf } from '../pipeline/enrich.js'
import type { Pipeline } from '../pipeline/index.js'
import { type IdempotencyStore, keyedEventIds, registerIdempotency } from './idempotency/index.js'

export interface HttpSourceOptions {
  readonly pipeline: Pipeline
  readonly enrich: Enricher
  readonly maxBodyBytes: number
  /** Body bytes all requests together may hold while they are read and parsed (MAX_INFLIGHT_BYTES). */
  readonly maxInflightBytes: number
  /** Retry-After given with a 429. */
  readonly retryAfterMs: number
  /** Honours Idempotency-Key when given (see idempotency.ts). */
  readonly idempotency?: IdempotencyStore
}

declare module 'fastify' {
  interface FastifyRequest {
    /** /logs only: the body bytes this request counts against MAX_INFLIGHT_BYTES until it is answered. */
    inflightHold: { held: number } | null
  }
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
function parseJson(text: string, maxEntries: number): { entries: Entry[]; isArray: boolean } {
  // Every element takes at least three characters ({} and a comma): only a body that long can hold too many.
  if (
    text.length > 3 * maxEntries &&
    /^\s*\[/.test(text) &&
    countArrayElements(text, maxEntries) > maxEntries
  )
    throw tooManyEntries(maxEntries + 1, maxEntries, {})
  let value: unknown
  try {
    // secure-json-parse drops a leading byte-order mark; so does the plain path, where positions in errors stay the same.
    value = mayHoldForbiddenKey(text)
      ? sjson.parse(text, undefined, SAFE_PARSE)
      : JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text)
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
function parseNdjson(
  text: string,
  maxEntries: number,
): { entries: Entry[]; lines: number[]; texts: string[] } {
  // Every entry takes at least three characters ({} and a newline): only a body that long can hold too many.
  if (text.length > 3 * maxEntries && countLines(text, maxEntries) > maxEntries)
    throw tooManyEntries(maxEntries + 1, maxEntries, {})
  const entries: Entry[] = []
  const lines: number[] = []
  /** The entries' JSON text as received (each line, trimmed): enrichment splices into it instead of re-encoding. */
  const texts: string[] = []
  // One look at the whole body instead of one per line: no line can hold a forbidden key the body does not.
  const parse = mayHoldForbiddenKey(text)
    ? (line: string) => sjson.parse(line, undefined, SAFE_PARSE)
    : (line: string) => JSON.parse(line)
  let start = 0
  for (let line = 1; start <= text.length; line++) {
    let end = text.indexOf('\n', start)
    if (end === -1) end = text.length
    const content = text.slice(start, end).trim()
    start = end + 1
    if (content === '') continue
    let value: unknown
    try {
      value = parse(content)
    } catch (err) {
      throw syntaxError(err, { line }, `line ${line} `)
    }
    if (!isEntry(value))
      throw new InputError(400, 'NOT_AN_OBJECT', `line ${line} is not a JSON object`, { line })
    entries.push(value)
    lines.push(line)
    texts.push(content)
  }
  return { entries, lines, texts }
}

/**
 * Whether secure-json-parse's check for `__proto__` and `constructor` keys is needed. Its patterns match those names
 * written plainly or with \u00XX escapes, so a text with neither the names nor any such escape cannot hold one, and
 * three substring searches stand in for two regular-expression scans per line.
 */
function mayHoldForbiddenKey(text: string): boolean {
  return text.includes('__proto__') || text.includes('constructor') || text.includes('\\u00')
}

/** Body bytes held by requests being read or parsed, across all of them: bounded by MAX_INFLIGHT_BYTES. */
interface Inflight {
  bytes: number
}

/**
 * Counts a body's bytes as they arrive (after decompression): fails it with a 413 as soon as it passes the limit, so
 * a gzip bomb stops inflating, and with a 429 when all bodies in flight together would pass MAX_INFLIGHT_BYTES.
 */
class BodyMeter extends Transform {
  /** This body's bytes so far. */
  private seen = 0
  /** What this request counts in `inflight` until it is answered: its announced size, or more if more came. */
  held: number
  /** Bytes read from the client (compressed, for gzip): Fastify compares them with Content-Length. */
  receivedEncodedLength = 0
  constructor(
    private readonly limit: number,
    private readonly inflight: Inflight,
    private readonly maxInflight: number,
    private readonly retryAfterMs: number,
    private readonly encoded: boolean,
    reserved: number,
  ) {
    super()
    this.held = reserved
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
    if (!this.encoded) this.receivedEncodedLength += chunk.length
    this.seen += chunk.length
    if (this.seen > this.held) {
      this.inflight.bytes += this.seen - this.held
      this.held = this.seen
    }
    if (this.seen > this.limit) {
      callback(bodyTooLarge(this.limit))
      return
    }
    if (this.inflight.bytes > this.maxInflight) {
      callback(inflightFull(this.inflight.bytes, this.retryAfterMs))
      return
    }
    callback(null, chunk)
  }
}

function inflightFull(bytes: number, retryAfterMs: number): QueueFullError {
  return new QueueFullError(
    `requests being read hold ${bytes} bytes of bodies, over MAX_INFLIGHT_BYTES; retry later`,
    retryAfterMs,
    'INFLIGHT_FULL',
  )
}

function tooManyEntries(count: number, max: number, where: { line?: number; index?: number }): InputError {
  return new InputError(
    413,
    'REQUEST_TOO_LARGE',
    `request holds ${count} or more entries; a sink buffers at most ${max} (BUFFER_MAX_EVENTS): split it`,
    where,
  )
}

/**
 * How many elements a JSON array body holds, counted without parsing it (strings and nesting respected), so that an
 * oversized request is refused before any entry is built. Stops counting past `max`.
 */
export function countArrayElements(text: string, max: number): number {
  let depth = 0
  let count = 0
  let inString = false
  let empty = true
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92)
        i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
      continue
    }
    if (c === 34) inString = true
    else if (c === 91 || c === 123) depth++
    else if (c === 93 || c === 125) depth--
    else if (c === 44 && depth === 1) {
      count++
      if (count >= max) return count + 1
    }
    if (depth >= 1 && empty && c !== 91 && c !== 32 && c !== 10 && c !== 13 && c !== 9) empty = false
  }
  return empty ? 0 : count + 1
}

/** Non-empty lines of an NDJSON body, counted without parsing them; stops counting past `max`. */
function countLines(text: string, max: number): number {
  let count = 0
  let start = 0
  while (start <= text.length) {
    let end = text.indexOf('\n', start)
    if (end === -1) end = text.length
    for (let i = start; i < end; i++) {
      const c = text.charCodeAt(i)
      if (c !== 32 && c !== 9 && c !== 13) {
        if (++count > max) return count
        break
      }
    }
    start = end + 1
  }
  return count
}

export function registerHttpSource(app: FastifyInstance, options: HttpSourceOptions): void {
  const { pipeline, enrich, maxBodyBytes, maxInflightBytes, retryAfterMs, idempotency } = options
  const inflight: Inflight = { bytes: 0 }

  // Encapsulated: these parsers and the gzip hook apply to /logs only.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    // As a string: Fastify decodes the whole body once, where a Buffer would be copied and then decoded.
    const asRaw =
      (format: Format) => (_request: unknown, text: string, done: (err: null, body: RawBody) => void) =>
        done(null, { format, text })
    scope.addContentTypeParser(JSON_TYPES, { parseAs: 'string' }, asRaw('json'))
    scope.addContentTypeParser(NDJSON_TYPES, { parseAs: 'string' }, asRaw('ndjson'))
    // Per request: the bytes it counts in `inflight` (reserved from Content-Length, then as the body arrives). A
    // decorated field, part of every request's shape, is cheaper than a WeakMap keyed by request.
    scope.decorateRequest('inflightHold', null)

    // The hooks take callbacks rather than returning promises: each request runs them all, and a promise per hook
    // was a measurable share of a one-entry request's cost.

    // Before the body is read: a draining or saturated sidecar refuses at once, at the cost of a header parse.
    scope.addHook('onRequest', (request, _reply, done) => {
      if (!pipeline.isAccepting) return done(new ShuttingDownError())
      try {
        pipeline.assertNotSaturated()
      } catch (err) {
        return done(err as Error)
      }
      // Only bytes that have arrived count: a client that announces a large body and sends nothing holds nothing
      // (reserving the announced size let 16 idle connections shut everyone out until REQUEST_TIMEOUT).
      if (inflight.bytes >= maxInflightBytes) return done(inflightFull(inflight.bytes, retryAfterMs))
      request.inflightHold = { held: 0 }
      done()
    })

    scope.addHook('preParsing', (request, _reply, payload, done) => {
      const encoding = (request.headers['content-encoding'] ?? 'identity').trim().toLowerCase()
      const encoded = encoding !== 'identity' && encoding !== ''
      if (encoded && encoding !== 'gzip' && encoding !== 'x-gzip') {
        return done(
          new InputError(
            415,
            'UNSUPPORTED_ENCODING',
            `Content-Encoding "${encoding}" is not supported; send gzip or none`,
          ),
        )
      }
      const meter = new BodyMeter(maxBodyBytes, inflight, maxInflightBytes, retryAfterMs, encoded, 0)
      request.inflightHold = meter
      if (!encoded) return done(null, payload.pipe(meter))
      // pipe(), not stream.pipeline(): a failure must not destroy the request, whose rest is read and discarded so
      // that the error answer reaches the client (see the server's error handler).
      const gunzip = createGunzip()
      gunzip.on('error', (err) => meter.destroy(err))
      payload.on('data', (chunk: Buffer) => {
        meter.receivedEncodedLength += chunk.length
      })
      done(null, payload.pipe(gunzip).pipe(meter))
    })

    // The body's bytes count against MAX_INFLIGHT_BYTES until the request is answered or abandoned.
    const release = (request: FastifyRequest) => {
      const hold = request.inflightHold
      if (!hold) return
      request.inflightHold = null
      inflight.bytes -= hold.held
    }
    scope.addHook('onResponse', (request, _reply, done) => {
      release(request)
      done()
    })
    scope.addHook('onRequestAbort', (request, done) => {
      release(request)
      done()
    })

    if (idempotency) registerIdempotency(scope, idempotency)

    scope.post('/logs', async (request, reply) => {
      const body = request.body as RawBody | undefined
      if (body === undefined || !/\S/.test(body.text)) {
        throw new InputError(400, 'EMPTY_BODY', 'request body is empty; send at least one entry')
      }
      const receivedAt = new Date().toISOString()
      const context = requestContextOf(request.headers)
      const keyedId = keyedEventIds(request)
      const events: LogEvent[] = []
      const maxEntries = pipeline.maxRequestEntries
      if (body.format === 'json') {
        const { entries, isArray } = parseJson(body.text, maxEntries)
        pipeline.assertRoomFor(entries.length)
        if (!isArray) {
          // A single object's text is the body; pretty-printed over several lines it would break the JSONL line.
          const text = body.text.trim()
          const oneLine = text.indexOf('\n') === -1 && text.indexOf('\r') === -1
          events.push(
            enrich(entries[0] as Entry, receivedAt, {}, context, keyedId?.(0), oneLine ? text : undefined),
          )
        } else {
          // Finding each element's text would take a scan of the body that costs more than encoding it again.
          for (let index = 0; index < entries.length; index++) {
            events.push(enrich(entries[index] as Entry, receivedAt, { index }, context, keyedId?.(index)))
          }
        }
      } else {
        const { entries, lines, texts } = parseNdjson(body.text, maxEntries)
        pipeline.assertRoomFor(entries.length)
        for (let i = 0; i < entries.length; i++) {
          const text = texts[i] as string
          // A lone \r inside a line is JSON whitespace, but some readers take it for a line end.
          const oneLine = text.indexOf('\r') === -1
          events.push(
            enrich(
              entries[i] as Entry,
              receivedAt,
              { line: lines[i] as number },
              context,
              keyedId?.(i),
              oneLine ? text : undefined,
            ),
          )
        }
      }
      // With a spool, 202 only once the entries are on disk.
      await pipeline.accept(events)
      return reply.code(202).send({ accepted: events.length })
    })
  })
}
