// Reads a request body into one Buffer as Fastify's own `parseAs: 'buffer'` does (the same limits and errors), but
// without copying a body that arrived in one chunk, as nearly every /logs body does.
//
// Why: V8 counts the bytes of every Buffer made since its last full collection against the old generation's limit
// (see slabs.ts). Fastify copies every body into a new Buffer; at saturation those copies, 26 KB per 100-entry
// request, started full collections three times as often (the bench's NDJSON load, --trace-gc: 49 to 53 in 6 s
// against 13 to 21 without the copy). Node's HTTP parser already gives each chunk a Buffer of its own.
import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import { errorCodes } from 'fastify'

type Done<T> = (err: Error | null, body?: T) => void

/** What the reader reads: the request itself, or the gzip meter after gunzip (see body-meter.ts). */
interface Payload extends Pick<Readable, 'on' | 'removeListener' | 'resume'> {
  readonly receivedEncodedLength?: number
}

/**
 * A content-type parser function: `as(bytes)` of the body, or Fastify's error for a body too large or cut short.
 * `count`, when given, is told of each chunk as it arrives, and fails the body with the error it returns (see
 * body-meter.ts); the payload is then left as it is, its rest for the error handler to read and discard.
 */
export function readBody<T>(limit: number, as: (bytes: Buffer) => T) {
  return (
    request: { readonly headers: IncomingHttpHeaders },
    payload: Payload,
    done: Done<T>,
    count?: (bytes: number) => Error | undefined,
  ): void => {
    const contentLength = Number(request.headers['content-length'])
    if (contentLength > limit) {
      done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE())
      return
    }
    const chunks: Buffer[] = []
    let received = 0
    const stop = () => {
      payload.removeListener('data', onData)
      payload.removeListener('end', onEnd)
      payload.removeListener('error', onEnd)
    }
    const onData = (chunk: Buffer | string) => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
      received += bytes.length
      const failure = count?.(bytes.length)
      if (failure !== undefined) {
        stop()
        done(failure)
        return
      }
      if (received > limit || (payload.receivedEncodedLength ?? 0) > limit) {
        stop()
        done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE())
        return
      }
      chunks.push(bytes)
    }
    const onEnd = (err?: Error & { statusCode?: number }) => {
      stop()
      if (err != null) {
        if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400
        done(err)
        return
      }
      if (!Number.isNaN(contentLength) && (payload.receivedEncodedLength || received) !== contentLength) {
        done(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH())
        return
      }
      done(null, as(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received)))
    }
    payload.on('data', onData)
    payload.on('end', onEnd)
    payload.on('error', onEnd)
    payload.resume()
  }
}
