// The byte path of /logs: a body in the form nearly every body is in (UTF-8, objects on one line each, no escaped or
// forbidden keys) is enriched from its bytes, without JSON.parse, a string of the body, or a string per line. Each
// entry is validated by a scan that finds only the top-level fields enrichment reads (scan-json.ts), its bytes are
// copied as received, and the added fields are written after them, decided by the same code as the parsing path's
// (additions.ts). Anything else (a body that is not valid UTF-8, an entry the scan does not take, any refusal at all)
// makes it return undefined, and the caller parses the body instead: every error and every rare case keeps the
// parsing path's exact answer, and the two paths write the same bytes for the same body (a property test compares
// them).
//
// Why: at saturation, JSON.parse was a quarter of the main thread's time, and the objects it built, the body's string
// and the lines' strings most of what the young generation collected.
import { isUtf8 } from 'node:buffer'
import { InputError } from '../errors.js'
import type { EventRun } from '../event.js'
import { ESCAPED_STRING, JsonScanner, NUMBER, STRING } from '../ingest/scan-json.js'
import type { SlabPool } from '../slabs.js'
import type { Additions, EntryView, LineOut, Piece } from './additions.js'
import type { RequestContext } from './enrich-fields.js'
import { RunIds, writeRun } from './run-writer.js'

/**
 * Enriches every entry of a body from its bytes into one EventRun; undefined when the body must go the parsing way
 * (see the header), including whenever that way would refuse it. `maxEntries` is the most one request may hold.
 */
export type BodyEnricher = (
  body: Buffer,
  format: 'json' | 'ndjson',
  receivedAt: string,
  request: RequestContext | undefined,
  idOf: ((i: number) => string) | undefined,
  maxEntries: number,
) => EventRun | undefined

/** Values up to this long are remembered by their bytes, per field: one request's entries often share a `level`. */
const REMEMBERED_BYTES = 32

/** An entry the scanner has just validated, read as enrichment reads it. */
class ScannedView implements EntryView {
  body: Buffer = Buffer.alloc(0)
  /** Per field, the bytes and value last read: the same bytes give the same value without decoding them again. */
  private readonly lastBytes: Buffer[]
  private readonly lastLength: Int32Array
  private readonly lastValue: unknown[]

  constructor(
    readonly scanner: JsonScanner,
    fields: number,
  ) {
    this.lastBytes = Array.from({ length: fields }, () => Buffer.alloc(REMEMBERED_BYTES))
    this.lastLength = new Int32Array(fields).fill(-1)
    this.lastValue = new Array(fields).fill(undefined)
  }

  has(field: number): boolean {
    return this.scanner.has(field)
  }

  isString(field: number): boolean {
    const kind = this.scanner.kind(field)
    return this.scanner.has(field) && (kind === STRING || kind === ESCAPED_STRING)
  }

  value(field: number): unknown {
    const { scanner, body } = this
    if (!scanner.has(field)) return undefined
    const start = scanner.valueStart(field)
    const end = scanner.valueEnd(field)
    const length = end - start
    if (length > REMEMBERED_BYTES) return this.decode(field, start, end)
    const last = this.lastBytes[field] as Buffer
    if (this.lastLength[field] === length) {
      let k = 0
      while (k < length && body[start + k] === last[k]) k++
      if (k === length) return this.lastValue[field]
    }
    const value = this.decode(field, start, end)
    for (let k = 0; k < length; k++) last[k] = body[start + k] as number
    this.lastLength[field] = length
    this.lastValue[field] = value
    return value
  }

  private decode(field: number, start: number, end: number): unknown {
    const { scanner, body } = this
    switch (scanner.kind(field)) {
      case STRING:
        return body.toString('utf8', start + 1, end - 1)
      case ESCAPED_STRING:
        return JSON.parse(body.toString('utf8', start, end)) as string
      case NUMBER:
        // JSON's numbers are a subset of Number's syntax, read to the same double.
        return Number(body.toString('latin1', start, end))
      default:
        return null
    }
  }
}

/**
 * Bytes of a request's lines, written into the scanner's memory after the body it holds: an entry's bytes are copied
 * there from the body's copy with copyWithin, where Buffer.copy from the body made a view per entry (a third of what
 * a 100-entry request allocated). The lines are then copied into the run once.
 */
class BytesOut implements LineOut<ScannedView> {
  /** The scanner's memory; made again whenever it grows. */
  buffer: Buffer
  /** Where this request's lines start, and where the next byte goes. */
  start = 0
  at = 0

  constructor(private readonly scanner: JsonScanner) {
    this.buffer = scanner.memory
  }

  /** Room for `bytes` more. */
  private room(bytes: number): void {
    if (this.at + bytes <= this.buffer.length) return
    this.scanner.reserve(Math.max(this.at + bytes, this.buffer.length * 1.5))
    this.buffer = this.scanner.memory
  }

  /** Empty, after the body the scanner holds now. */
  reset(): void {
    this.buffer = this.scanner.memory
    this.start = this.scanner.free
    this.at = this.start
  }

  byte(value: number): void {
    this.room(1)
    this.buffer[this.at++] = value
  }

  /** Bytes `start` to `end` of the body. */
  body(start: number, end: number): void {
    this.room(end - start)
    const { bodyAt } = this.scanner
    this.buffer.copyWithin(this.at, bodyAt + start, bodyAt + end)
    this.at += end - start
  }

  piece(piece: Piece): void {
    const { bytes } = piece
    const n = bytes.length
    this.room(n)
    this.buffer.set(bytes, this.at)
    this.at += n
  }

  text(text: string): void {
    const n = text.length
    this.room(n * 3)
    const { buffer } = this
    let at = this.at
    for (let k = 0; k < n; k++) {
      const c = text.charCodeAt(k)
      if (c >= 0x80) {
        this.at = at + buffer.write(text.slice(k), at, 'utf8')
        return
      }
      buffer[at++] = c
    }
    this.at = at
  }

  /**
   * The digits of the last built-in id but its last one: consecutive ids share them 35 times in 36, and are written
   * by copying them and one digit (the divisions were 3% of the main thread at 100 entries per request).
   */
  private readonly high = new Uint8Array(MAX_BASE36_DIGITS)
  private highOf = -1
  private highLength = 0

  base36(n: number): void {
    this.room(MAX_BASE36_DIGITS)
    const high = Math.floor(n / 36)
    if (high !== this.highOf) {
      this.highOf = high
      this.highLength = high === 0 ? 0 : writeBase36(this.high, 0, high)
    }
    const { buffer, high: digits, highLength } = this
    let at = this.at
    for (let k = 0; k < highLength; k++) buffer[at++] = digits[k] as number
    const digit = n - high * 36
    buffer[at++] = digit < 10 ? 0x30 + digit : 0x61 - 10 + digit
    this.at = at
  }

  json(view: ScannedView, field: number): void {
    const { scanner } = view
    // A string without escapes is written as JSON.stringify would write it: valid UTF-8 holds no lone surrogate,
    // and JSON forbids the control characters it would escape.
    if (scanner.kind(field) === STRING) this.body(scanner.valueStart(field), scanner.valueEnd(field))
    else this.text(JSON.stringify(view.value(field)))
  }
}

/** Digits of the largest safe integer in base 36. */
const MAX_BASE36_DIGITS = 11

/**
 * Writes a whole number from 0 to 2^53 - 1 in base 36 into `target` at `at`, as `n.toString(36)` would (without the
 * string: a built-in id's counter is written for every entry); returns where it stopped.
 */
export function writeBase36(target: Uint8Array, at: number, n: number): number {
  let digits = 1
  for (let m = n; m >= 36; m = Math.floor(m / 36)) digits++
  const end = at + digits
  let p = end
  let m = n
  do {
    const digit = m % 36
    target[--p] = digit < 10 ? 0x30 + digit : 0x61 - 10 + digit
    m = Math.floor(m / 36)
  } while (m > 0)
  return end
}

/** Errors are the parsing path's to report: the byte path gives up at the first. */
const NO_PLACE = () => ({})

export function createBodyEnricher(
  additions: Additions,
  slabs: SlabPool,
  maxEntryBytes: number,
): BodyEnricher {
  const scanner = new JsonScanner(additions.names)
  const view = new ScannedView(scanner, additions.names.length)
  const out = new BytesOut(scanner)

  // The request being enriched.
  let request: RequestContext | undefined
  let idOf: ((i: number) => string) | undefined

  /** Enriches the object at `body[start]`, scanned to `end`; false when it must go the parsing way. */
  const line = (start: number, end: number, ids: RunIds): boolean => {
    if (end - start > maxEntryBytes) return false
    const i = ids.count
    const head = out.at
    const empty = scanner.keys === 0
    // The entry as received without its closing brace, the added fields, and the brace (as the parsing path
    // splices them). An empty object's first added field loses its leading comma.
    if (empty) out.byte(0x7b)
    else out.body(start, end - 1)
    const added = out.at
    ids.push(additions.add(view, out, i, NO_PLACE, request, idOf?.(i)))
    if (out.at === added) {
      out.at = head
      out.body(start, end)
    } else {
      if (empty) {
        out.buffer.copyWithin(added, added + 1, out.at)
        out.at--
      }
      out.byte(0x7d)
    }
    out.byte(0x0a)
    return true
  }

  /** The entries of an NDJSON body, one per non-blank line; false when the body must go the parsing way. */
  const ndjson = (body: Buffer, ids: RunIds, maxEntries: number): boolean => {
    const n = body.length
    let p = 0
    while (p < n) {
      let c = body[p]
      while (c === 0x20 || c === 0x09 || c === 0x0d) c = body[++p]
      if (p >= n) break
      if (c === 0x0a) {
        p++
        continue
      }
      if (ids.count === maxEntries) return false
      const end = scanner.object(body, p)
      if (end < 0 || !line(p, end, ids)) return false
      p = end
      c = body[p]
      while (c === 0x20 || c === 0x09 || c === 0x0d) c = body[++p]
      if (p < n && c !== 0x0a) return false
      p++
    }
    return true
  }

  /** The entries of a JSON body, an object or an array of objects; false when it must go the parsing way. */
  const json = (body: Buffer, ids: RunIds, maxEntries: number): boolean => {
    const n = body.length
    let p = skipSpace(body, 0)
    if (body[p] === 0x7b) {
      const end = scanner.object(body, p)
      return end >= 0 && skipSpace(body, end) === n && line(p, end, ids)
    }
    if (body[p] !== 0x5b) return false
    p = skipSpace(body, p + 1)
    for (;;) {
      if (ids.count === maxEntries) return false
      const end = scanner.object(body, p)
      if (end < 0 || !line(p, end, ids)) return false
      p = skipSpace(body, end)
      if (body[p] === 0x5d) return skipSpace(body, p + 1) === n
      if (body[p] !== 0x2c) return false
      p = skipSpace(body, p + 1)
    }
  }

  return (body, format, receivedAt, requestContext, keyedIdOf, maxEntries) => {
    // Not UTF-8: the parsing path decodes it as Fastify would, with replacement characters. A byte-order mark: the
    // parsing path drops it.
    if (!isUtf8(body) || (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf)) return undefined
    if (!scanner.load(body)) return undefined
    additions.setReceivedAt(receivedAt)
    view.body = body
    request = requestContext
    idOf = keyedIdOf
    out.reset()
    try {
      const ids = new RunIds()
      const taken = (format === 'ndjson' ? ndjson : json)(body, ids, maxEntries)
      if (!taken || ids.count === 0) return undefined
      const { buffer, start, at } = out
      return writeRun(slabs, at - start, ids, (chunk) => buffer.copy(chunk, 0, start, at))
    } catch (err) {
      // An event_id the parsing path refuses, with the line or index it names; or the scan's memory could not grow
      // for a very large request's lines (RangeError): the parsing path takes it.
      if (err instanceof InputError || err instanceof RangeError) return undefined
      throw err
    } finally {
      // Nothing of the request is kept past it: not its body, nor its keyed ids' closure (and the ticket it holds),
      // nor the memory a large one grew.
      view.body = EMPTY
      scanner.forget()
      out.reset()
      request = undefined
      idOf = undefined
    }
  }
}

const EMPTY = Buffer.alloc(0)

/** JSON's whitespace from `p`: the position of the next other byte (or the end). */
function skipSpace(body: Buffer, p: number): number {
  let c = body[p]
  while (c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d) c = body[++p]
  return p
}
