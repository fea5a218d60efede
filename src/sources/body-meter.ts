// Counting /logs bodies as they arrive, against MAX_BODY_BYTES (per request, after decompression) and
// MAX_INFLIGHT_BYTES (all requests together): a plain body by the reader itself, chunk by chunk (`count`, given to
// read-body.ts), a gzip body through a Transform after the gunzip stream.
import { Transform, type TransformCallback } from 'node:stream'
import { bodyTooLarge, QueueFullError } from '../errors.js'

/** Body bytes held by requests being read or parsed, across all of them: bounded by MAX_INFLIGHT_BYTES. */
export interface Inflight {
  bytes: number
}

/** What one request counts in `Inflight` until it is answered. */
export interface InflightHold {
  held: number
  /** Given back (the request was answered, or its connection is gone): it counts nothing more. */
  released: boolean
}

export interface MeterLimits {
  /** MAX_BODY_BYTES. */
  readonly limit: number
  readonly inflight: Inflight
  /** MAX_INFLIGHT_BYTES. */
  readonly maxInflight: number
  readonly retryAfterMs: number
}

export function inflightFull(bytes: number, retryAfterMs: number): QueueFullError {
  return new QueueFullError(
    `requests being read hold ${bytes} bytes of bodies, over MAX_INFLIGHT_BYTES; retry later`,
    retryAfterMs,
    'INFLIGHT_FULL',
  )
}

/** Counts `length` more bytes for `hold`; the error to fail the body with when it passes a limit. */
export function count(
  hold: InflightHold & { seen: number },
  length: number,
  limits: MeterLimits,
): Error | undefined {
  // A request already answered or gone (a gzip body still coming out of gunzip): nothing to count, nothing to refuse.
  if (hold.released) return undefined
  hold.seen += length
  if (hold.seen > hold.held) {
    limits.inflight.bytes += hold.seen - hold.held
    hold.held = hold.seen
  }
  if (hold.seen > limits.limit) return bodyTooLarge(limits.limit)
  if (limits.inflight.bytes > limits.maxInflight)
    return inflightFull(limits.inflight.bytes, limits.retryAfterMs)
  return undefined
}

/**
 * A gzip body's decompressed bytes, counted as they come out of gunzip: fails with a 413 as soon as they pass the
 * limit, so a gzip bomb stops inflating, and with a 429 when all bodies in flight together would pass the bound.
 */
export class BodyMeter extends Transform implements InflightHold {
  held = 0
  seen = 0
  released = false
  /** Bytes read from the client (compressed): Fastify compares them with Content-Length. */
  receivedEncodedLength = 0

  constructor(private readonly limits: MeterLimits) {
    super()
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
    const failure = count(this, chunk.length, this.limits)
    if (failure) callback(failure)
    else callback(null, chunk)
  }
}
