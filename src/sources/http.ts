// POST /logs: JSON object, JSON array or NDJSON, optionally gzip. Enriches the whole request (from its bytes when it
// is in the usual form, see enrich-bytes.ts; else parsed), then hands it to the pipeline in one call: 202 when every
// entry is buffered, an error naming the line or index otherwise.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { InputError, ShuttingDownError } from '../errors.js'
import type { EventRun } from '../event.js'
import { type ParsedBody, parseJson, parseNdjson } from '../ingest/parse-body.js'
import { type Enricher, type RequestContext, requestContextOf } from '../pipeline/enrich.js'
import type { Pipeline } from '../pipeline/index.js'
import { destroyOnFailure, JSON_TYPE } from '../server.js'
import {
  BodyMeter,
  count,
  type Inflight,
  type InflightHold,
  inflightFull,
  type MeterLimits,
} from './body-meter.js'
import {
  IDEMPOTENCY_KEY_HEADER,
  type IdempotencyStore,
  keyedEventIds,
  registerIdempotency,
} from './idempotency/index.js'
import { type Format, RawBody } from './raw-body.js'
import { readBody } from './read-body.js'

export interface HttpSourceOptions {
  readonly pipeline: Pipeline
  readonly enrich: Enricher
  readonly maxBodyBytes: number
  /** Body bytes all requests together may hold while they are read and parsed (MAX_INFLIGHT_BYTES). */
  readonly maxInflightBytes: number
  /** Retry-After given with a 429. */
  readonly retryAfterMs: number
  /** How long a request waits for room in a full buffer that a delivering sink is emptying (BUFFER_FULL_WAIT). */
  readonly fullWaitMs: number
  /** Honours Idempotency-Key when given (see idempotency.ts). */
  readonly idempotency?: IdempotencyStore
}

declare module 'fastify' {
  interface FastifyRequest {
    /** /logs only: the body bytes this request counts against MAX_INFLIGHT_BYTES until it is answered. */
    inflightHold: InflightHold | null
  }
}

/**
 * What a request waiting for room (BUFFER_FULL_WAIT) may hold of its body before it is read: Node reads up to 64 KiB
 * from the socket at a time, and TCP holds back the rest.
 */
const WAITING_REQUEST_BYTES = 64 * 1024

const JSON_TYPES = ['application/json']
const NDJSON_TYPES = [
  'application/x-ndjson',
  'application/ndjson',
  'application/jsonl',
  'application/x-jsonlines',
  'text/plain',
]

/**
 * The Content-Type headers the front door takes, as clients write them: each type alone or with the UTF-8 charset.
 * Any other spelling goes through Fastify, whose parser matching decides as it always has.
 */
const FRONT_DOOR_TYPES = new Map<string, Format>(
  [
    ...JSON_TYPES.map((t) => [t, 'json'] as const),
    ...NDJSON_TYPES.map((t) => [t, 'ndjson'] as const),
  ].flatMap(([type, format]) => [
    [type, format],
    [`${type}; charset=utf-8`, format],
    [`${type}; charset=UTF-8`, format],
    [`${type};charset=utf-8`, format],
  ]),
)

/** The answer to a taken request, as Fastify would serialise { accepted }. */
function acceptedAnswer(count: number): string {
  return `{"accepted":${count}}`
}

function emptyBody(): InputError {
  return new InputError(400, 'EMPTY_BODY', 'request body is empty; send at least one entry')
}

/** The entries of one parsed body, enriched all at once into one run. */
function enrichBody(
  enrich: Enricher,
  body: ParsedBody,
  receivedAt: string,
  context: RequestContext,
  keyedId: ((i: number) => string) | undefined,
): EventRun {
  const { entries, texts, lines } = body
  const placeOf = lines ? (i: number) => ({ line: lines[i] as number }) : (i: number) => ({ index: i })
  // A single object's errors name no index.
  const place = body.isArray || lines ? placeOf : () => ({})
  return enrich.request(entries, texts, receivedAt, place, context, keyedId)
}

/** What the http source shows in /health and /metrics. */
export interface HttpSource {
  /** Bytes of /logs bodies being read, or read and waiting for their answer (bounded by MAX_INFLIGHT_BYTES). */
  readonly inflightBytes: number
}

export function registerHttpSource(app: FastifyInstance, options: HttpSourceOptions): HttpSource {
  const { pipeline, enrich, maxBodyBytes, maxInflightBytes, retryAfterMs, fullWaitMs, idempotency } = options
  const inflight: Inflight = { bytes: 0 }

  const limits: MeterLimits = { limit: maxBodyBytes, inflight, maxInflight: maxInflightBytes, retryAfterMs }

  const release = (hold: InflightHold | null) => {
    if (hold === null || hold.released) return
    // Once released, the hold counts nothing more: a gzip body's decompressed bytes may still come out of gunzip.
    hold.released = true
    inflight.bytes -= hold.held
  }

  /** Per connection, the releases of its requests not answered yet (see releaseWhenGone). */
  const pendingOn = new WeakMap<Socket, Set<() => void>>()
  /**
   * Releases a request's hold once its response closes, or its socket does, whichever comes first. The response's
   * close alone was not enough: a pipelined request's response waits in Node's queue, not yet on the socket, and
   * never closes if the socket goes first, so a client that sent two requests on one connection and went away
   * kept the second one's bytes counted for good. One 'close' listener per socket: one per request piled up on a
   * connection of pipelined requests waiting for their answers, and Node warned of a listener leak past ten.
   */
  const releaseWhenGone = (
    request: IncomingMessage,
    response: ServerResponse,
    holdOf: () => InflightHold | null,
  ) => {
    const { socket } = request
    let pending = pendingOn.get(socket)
    if (pending === undefined) {
      const releases = new Set<() => void>()
      pending = releases
      pendingOn.set(socket, releases)
      socket.once('close', () => {
        for (const gone of releases) gone()
      })
    }
    const waiting = pending
    const gone = () => {
      response.removeListener('close', gone)
      waiting.delete(gone)
      release(holdOf())
    }
    response.on('close', gone)
    waiting.add(gone)
  }

  // Only bytes that have arrived count: a client that announces a large body and sends nothing holds nothing
  // (reserving the announced size let 16 idle connections shut everyone out until REQUEST_TIMEOUT).
  const admit = (done: (err?: Error) => void) => {
    if (inflight.bytes >= maxInflightBytes) return done(inflightFull(inflight.bytes, retryAfterMs))
    done()
  }

  /**
   * Takes a /logs body: enriches it (from its bytes when it is in the usual form, else parsed) and hands it to the
   * pipeline in one call. Resolves to the entries taken (at once without a spool: no promise then); throws or rejects
   * with what the client is told instead. Both ways in use it: the Fastify route and the front door.
   */
  const take = (
    body: RawBody | undefined,
    headers: IncomingHttpHeaders,
    keyedId: ((i: number) => string) | undefined,
  ): number | Promise<number> => {
    if (body === undefined) throw emptyBody()
    const receivedAt = new Date().toISOString()
    const context = requestContextOf(headers)
    const maxEntries = pipeline.maxRequestEntries
    let run = enrich.body(body.bytes, body.format, receivedAt, context, keyedId, maxEntries)
    if (run !== undefined) {
      try {
        pipeline.assertRoomFor(run.count)
      } catch (err) {
        run.release()
        throw err
      }
    } else {
      // The parsing path: any body the byte path does not take, and every refusal.
      if (!/\S/.test(body.text)) throw emptyBody()
      const parsed =
        body.format === 'json' ? parseJson(body.text, maxEntries) : parseNdjson(body.text, maxEntries)
      pipeline.assertRoomFor(parsed.entries.length)
      run = enrichBody(enrich, parsed, receivedAt, context, keyedId)
    }
    const taken = run
    let written: Promise<void> | undefined
    try {
      // With a spool, 202 only once the entries are on disk.
      written = pipeline.accept(taken)
    } catch (err) {
      taken.release()
      throw err
    }
    // The batches that took it hold it now; refused, nothing does, and its memory may be reused.
    if (written === undefined) {
      taken.release()
      return taken.count
    }
    return written.then(
      () => {
        taken.release()
        return taken.count
      },
      (err: unknown) => {
        taken.release()
        throw err
      },
    )
  }

  const readRaw = {
    json: readBody(maxBodyBytes, (bytes) => new RawBody('json', bytes)),
    ndjson: readBody(maxBodyBytes, (bytes) => new RawBody('ndjson', bytes)),
  }

  /**
   * The front door: the usual /logs request (POST, a JSON or NDJSON type, no Content-Encoding, no Idempotency-Key,
   * while there is room) is read and answered on Node's own request event, without Fastify's request and reply
   * objects, hooks, routing and content-type parsing: a one-entry request cost 21 µs of the main thread through
   * Fastify, 17 this way. Which requests it takes is decided on the headers alone, before a byte of the body is
   * read; the rest (gzip, keys, a full buffer to wait on, a draining sidecar, any other type or path) go through
   * Fastify as before. Both take a body the same way (`take`) and answer an error the same way (the server's
   * `answerError`); a test sends the same requests both ways and compares the answers.
   */
  const frontDoor = (request: IncomingMessage, response: ServerResponse): boolean => {
    const { url, headers } = request
    if (request.method !== 'POST' || (url !== '/logs' && !url?.startsWith('/logs?'))) return false
    const format = FRONT_DOOR_TYPES.get(headers['content-type'] ?? '')
    if (format === undefined) return false
    if (headers['content-encoding'] !== undefined || headers[IDEMPOTENCY_KEY_HEADER] !== undefined)
      return false
    if (!pipeline.isAccepting || inflight.bytes >= maxInflightBytes || pipeline.isSaturated()) return false
    const hold = { held: 0, seen: 0, released: false }
    // As the onRequest hook does: the bytes count until the response or its socket closes.
    releaseWhenGone(request, response, () => hold)
    const refuse = (err: unknown) => app.answerError(request, response, err)
    const answer = (count: number) => {
      const text = acceptedAnswer(count)
      response.writeHead(202, { 'content-type': JSON_TYPE, 'content-length': text.length })
      response.end(text)
    }
    readRaw[format](
      request,
      request,
      (err, body) => {
        // As Fastify does after a body parser's error: the connection is closed after the answer.
        if (err !== null) return app.answerError(request, response, err, true)
        let taken: number | Promise<number>
        try {
          taken = take(body, headers, undefined)
        } catch (failure) {
          return refuse(failure)
        }
        // Once the entries are taken, a failure to answer must not be told as "nothing was kept" (refuse): the
        // connection is closed instead.
        if (typeof taken !== 'number') {
          return void taken.then(answer, refuse).catch(destroyOnFailure(response, app.log))
        }
        try {
          answer(taken)
        } catch (failure) {
          destroyOnFailure(response, app.log)(failure)
        }
      },
      (bytes) => count(hold, bytes, limits),
    )
    return true
  }
  app.setFrontDoor(frontDoor)

  // Encapsulated: these parsers apply to /logs only.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    // As bytes: most bodies are enriched from them (enrich-bytes.ts), and decoded only to be parsed. Each body is
    // counted as it arrives, against MAX_BODY_BYTES and with the others against MAX_INFLIGHT_BYTES: a plain one by
    // the reader itself, a gzip one after gunzip. In the parser, not in a preParsing hook: a hook, and a stream to
    // count a plain body through, cost every request (1.4 µs of a one-entry request's 23 on the main thread).
    const asRaw = (format: Format) => {
      const read = readRaw[format]
      return (
        request: FastifyRequest,
        payload: Readable,
        done: (err: Error | null, body?: RawBody) => void,
      ) => {
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
        if (!encoded) {
          const hold = { held: 0, seen: 0, released: false }
          request.inflightHold = hold
          return read(request, payload, done, (bytes) => count(hold, bytes, limits))
        }
        const meter = new BodyMeter(limits)
        request.inflightHold = meter
        // pipe(), not stream.pipeline(): a failure must not destroy the request, whose rest is read and discarded so
        // that the error answer reaches the client (see the server's error handler).
        const gunzip = createGunzip()
        gunzip.on('error', (err) => meter.destroy(err))
        payload.on('data', (chunk: Buffer) => {
          meter.receivedEncodedLength += chunk.length
        })
        read(request, payload.pipe(gunzip).pipe(meter), done)
      }
    }
    scope.addContentTypeParser(JSON_TYPES, asRaw('json'))
    scope.addContentTypeParser(NDJSON_TYPES, asRaw('ndjson'))
    // Per request: the bytes it counts in `inflight` (as the body arrives). A decorated field, part of every
    // request's shape, is cheaper than a WeakMap keyed by request.
    scope.decorateRequest('inflightHold', null)

    // The hooks take callbacks rather than returning promises: each request runs them all, and a promise per hook
    // was a measurable share of a one-entry request's cost.

    // Before the body is read: a draining sidecar refuses at once, a saturated one at once or after waiting for room
    // (BUFFER_FULL_WAIT), at the cost of a header parse.
    scope.addHook('onRequest', (request, reply, done) => {
      if (!pipeline.isAccepting) return done(new ShuttingDownError())
      // The body's bytes count against MAX_INFLIGHT_BYTES until the answer is sent or the connection is gone: the
      // response's close, or its socket's, is what every way out of a request has (see releaseWhenGone).
      // (onResponse and onRequestAbort were not: a client that went away after its whole body, before its answer,
      // held its bytes for good, and every request got 429 INFLIGHT_FULL once such clients held MAX_INFLIGHT_BYTES.)
      releaseWhenGone(request.raw, reply.raw, () => request.inflightHold)
      if (pipeline.isSaturated()) {
        // A buffer that a delivering sink is emptying is waited on (BUFFER_FULL_WAIT), with the body unread but for
        // what Node has read from the socket before TCP holds the rest back: that much is counted as in flight
        // while the request waits, so that the waiting requests together stay inside MAX_INFLIGHT_BYTES.
        if (fullWaitMs === 0 || inflight.bytes + WAITING_REQUEST_BYTES > maxInflightBytes) {
          try {
            pipeline.assertNotSaturated()
          } catch (err) {
            return done(err as Error)
          }
          return admit(done)
        }
        inflight.bytes += WAITING_REQUEST_BYTES
        pipeline.whenNotSaturated(fullWaitMs).then(
          () => {
            inflight.bytes -= WAITING_REQUEST_BYTES
            admit(done)
          },
          (refusal: Error) => {
            inflight.bytes -= WAITING_REQUEST_BYTES
            done(refusal)
          },
        )
        return
      }
      admit(done)
    })

    if (idempotency) registerIdempotency(scope, idempotency)

    scope.post('/logs', async (request, reply) => {
      const count = await take(request.body as RawBody | undefined, request.headers, keyedEventIds(request))
      return reply.code(202).type(JSON_TYPE).send(acceptedAnswer(count))
    })
  })
  return {
    get inflightBytes() {
      return inflight.bytes
    },
  }
}
