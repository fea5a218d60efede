// Enrichment, once per entry at ingest: adds (never overwrites) event_id, service, revision, host, processed_at,
// timestamp, severity and Cloud Logging's message and trace fields, and serialises the result to the JSON line every
// sink writes.
import { InputError } from '../errors.js'
import {
  createLogEvent,
  EventRun,
  formatEventId,
  type LogEvent,
  newEventId,
  SPAN_FIELD,
  TRACE_FIELD,
} from '../event.js'
import { SlabPool } from '../slabs.js'
import {
  otelIdsOf,
  parseTraceparent,
  type RequestContext,
  severityOf,
  type TraceIds,
  timestampOf,
} from './enrich-fields.js'

export interface EnrichContext {
  readonly service: string
  readonly revision: string
  readonly host: string
  /** Static labels from LABELS, added (last) where the entry lacks the field. */
  readonly labels: Readonly<Record<string, string>>
  readonly maxEntryBytes: number
  readonly newId?: () => string
  /** Project for `logging.googleapis.com/trace` (`projects/<project>/traces/<id>`); without it, the bare trace id. */
  readonly project?: string
}

export {
  parseTraceparent,
  type RequestContext,
  requestContextOf,
  severityOf,
  type TraceIds,
} from './enrich-fields.js'

/** A UTF-16 surrogate that is not half of a pair (with the u flag, a pair is one code point and does not match). */
const LONE_SURROGATE = /\p{Cs}/u

/** Longest app-supplied event_id kept as is (BigQuery's insertId has a length limit; keep ids short and opaque). */
const MAX_EVENT_ID_LENGTH = 128

/** Where an entry was in its request, for errors: its line (NDJSON) or index (JSON array). */
export interface EntryPlace {
  line?: number
  index?: number
}

/**
 * Enriches one parsed entry and serialises it; `where` names the line or index in errors. `text`, when the source
 * has it, is the entry's JSON exactly as received, on one line and trimmed, which `entry` was parsed from: the
 * added fields are spliced into it, and the entry is never encoded again.
 */
export type Enricher = ((
  entry: Record<string, unknown>,
  receivedAt: string,
  where: EntryPlace,
  request?: RequestContext,
  /** The event_id for an entry that sets none (a keyed request's derived id); a new UUID when absent. */
  id?: string,
  /** The entry as received, when it is one line of JSON: the added fields are spliced into it. */
  text?: string,
) => LogEvent) & {
  /** The same for every entry of one request at once (see RequestEnricher). */
  readonly request: RequestEnricher
}

/**
 * Enriches all entries of one request, as the Enricher does one: `texts[i]` is entry i as received (or undefined),
 * `placeOf(i)` its line or index (asked only for an error), `idOf(i)` a keyed request's derived id. The lines are
 * written into one Buffer, one EventRun for the request: one copy and one UTF-8 measure per request instead of one
 * per entry. The Buffer lives until the last of its entries is delivered; all of them are held by the buffer anyway,
 * and they stay together, in one batch or in slices across the few it is cut into.
 */
export type RequestEnricher = (
  entries: readonly Record<string, unknown>[],
  texts: readonly (string | undefined)[],
  receivedAt: string,
  placeOf: (i: number) => EntryPlace,
  request?: RequestContext,
  idOf?: (i: number) => string,
) => EventRun

/**
 * Slabs of 1 MiB: a 100-entry request of 26 KB is 1/40 of one, and one larger than 256 KiB gets its own Buffer.
 * Two are kept for reuse: slabs come back one at a time as batches are delivered, and two did as well as eight at
 * saturation (file and gcs, 100-entry NDJSON, alternating bench runs), for 6 MiB less memory held.
 */
const SLABS = { slabBytes: 1024 * 1024, maxFree: 2 }

/** Below this many characters an entry cannot be nested deeply enough for JSON.stringify to fail (it takes 2 per level). */
const SHALLOW_ENOUGH_CHARS = 2000

/** Whether a parsed object has no own keys, without building the list of them. */
function isEmptyObject(entry: Record<string, unknown>): boolean {
  for (const _ in entry) return false
  return true
}

/**
 * Builds the per-entry enrichment. The fields that never change (service, revision, host, labels) are encoded
 * once here; the rest (a generated id, ISO times, a severity name) need no JSON escaping, so the hot path is the
 * entry's JSON (as received when the source passes it, else one JSON.stringify) plus own-property checks and
 * string concatenation.
 *
 * The enricher throws InputError (with `where`) when an entry is too large, too deeply nested to serialise, or
 * carries an event_id sidelog cannot use.
 */
export function createEnricher(ctx: EnrichContext): Enricher {
  // Every field sidelog may add is written as one or more ready-made pieces (`,"name":value`), pushed onto an
  // array and joined once per request: the request's output is the one string its Buffer is written from, with no
  // string per added field or per line on the way (those were 60% of what a request allocated, and what the young
  // generation allocates sets how often it is collected and how much of the requests in flight it promotes).
  const pair = (name: string, value: string) => `,${JSON.stringify(name)}:${JSON.stringify(value)}`
  const fieldsOf = (fields: [string, string][]) => {
    const pieces = fields.map(([name, value]) => pair(name, value))
    return { names: fields.map(([name]) => name), pieces, all: pieces.join('') }
  }
  const identity = fieldsOf([
    ['service', ctx.service],
    ['revision', ctx.revision],
    ['host', ctx.host],
  ])
  const labels = fieldsOf(Object.entries(ctx.labels))
  /** Pushes the pieces of `fields` the entry lacks: all of them at once in the usual case, where it has none. */
  const addMissing = (
    entry: Record<string, unknown>,
    fields: ReturnType<typeof fieldsOf>,
    parts: string[],
  ) => {
    const { names, pieces, all } = fields
    let missing = 0
    for (let k = 0; k < names.length; k++) if (!Object.hasOwn(entry, names[k] as string)) missing++
    if (missing === names.length) {
      if (missing > 0) parts.push(all)
      return
    }
    for (let k = 0; k < names.length; k++) {
      if (!Object.hasOwn(entry, names[k] as string)) parts.push(pieces[k] as string)
    }
  }
  /** The built-in event id's piece up to its counter: the counter's base-36 digits and `"` follow. */
  const builtInIdHead = `,"event_id":"${formatEventId(0).slice(0, -1)}`
  // Severity names, ISO times and hex ids contain nothing JSON would escape: their pieces are spliced as they are.
  const severityPieces = new Map<string, string>()
  const severityPiece = (severity: string) => {
    let piece = severityPieces.get(severity)
    if (piece === undefined) {
      piece = `,"severity":"${severity}"`
      severityPieces.set(severity, piece)
    }
    return piece
  }
  // The pieces that depend on the time a request was received, made once for all its entries (and for the
  // requests received in the same millisecond).
  let receivedFor = ''
  let processedAtPiece = ''
  let receivedTimestampPiece = ''
  const setReceivedAt = (receivedAt: string) => {
    if (receivedAt === receivedFor) return
    receivedFor = receivedAt
    processedAtPiece = `,"processed_at":"${receivedAt}"`
    receivedTimestampPiece = `,"timestamp":"${receivedAt}"`
  }
  // Entries of one request often share their `time`: its ISO form is computed once per distinct value.
  let lastTime: unknown
  let lastTimestampPiece = ''
  const timestampPiece = (entry: Record<string, unknown>, receivedAt: string) => {
    const time = entry.time
    if (time === undefined) return receivedTimestampPiece
    if (time !== lastTime) {
      const timestamp = timestampOf(entry, receivedAt)
      // Only a valid time is cached: an invalid one falls back to the request's own time.
      lastTime = timestamp === receivedAt ? undefined : time
      lastTimestampPiece = timestamp === receivedAt ? receivedTimestampPiece : `,"timestamp":"${timestamp}"`
    }
    return lastTimestampPiece
  }
  // Project ids and hex ids need no JSON escaping: the trace field is spliced as is.
  const tracePrefix = ctx.project ? `projects/${ctx.project}/traces/` : ''
  const traceFields = (ids: TraceIds, hasSpan: boolean) =>
    `,"${TRACE_FIELD}":"${tracePrefix}${ids.traceId}"` +
    (ids.spanId === undefined || hasSpan ? '' : `,"${SPAN_FIELD}":"${ids.spanId}"`)

  /**
   * Pushes entry `i`'s line (without its newline) onto `parts` as pieces, its JSON as received (or encoded) with the
   * added fields spliced in before its closing brace, and returns its id (or the built-in counter's number for it).
   * `setReceivedAt(receivedAt)` must have been called. Throws InputError naming `placeOf(i)`.
   */
  const enrichLine = (
    entry: Record<string, unknown>,
    receivedAt: string,
    placeOf: (i: number) => EntryPlace,
    i: number,
    request: RequestContext | undefined,
    givenId: string | undefined,
    text: string | undefined,
    parts: string[],
  ): string | number => {
    let json: string
    if (text !== undefined && text.length < SHALLOW_ENOUGH_CHARS) {
      json = text
    } else {
      try {
        // A long text is encoded once anyway, as the check that it is not nested too deeply to handle.
        json = JSON.stringify(entry)
      } catch {
        // JSON.stringify recurses; a pathologically deep entry overflows the stack rather than the heap.
        throw new InputError(400, 'ENTRY_TOO_DEEP', 'entry is nested too deeply to be processed', placeOf(i))
      }
      if (text !== undefined) json = text
    }
    // UTF-8 takes at most 3 bytes per UTF-16 unit: only a text that long can be over the limit.
    const entryBytes = json.length * 3 > ctx.maxEntryBytes ? Buffer.byteLength(json) : 0
    if (entryBytes > ctx.maxEntryBytes) {
      throw new InputError(
        413,
        'ENTRY_TOO_LARGE',
        `entry is ${entryBytes} bytes; the limit is ${ctx.maxEntryBytes} (MAX_ENTRY_BYTES)`,
        placeOf(i),
      )
    }

    const head = parts.length
    parts.push(json)
    let id: unknown = entry.event_id
    if (id === undefined) {
      if (givenId === undefined && !ctx.newId) {
        // The built-in ids stay numbers until asked for (EventRun, ChunkEvent). They are hex, a dash and base 36:
        // nothing to escape.
        id = newEventId()
        parts.push(builtInIdHead, (id as number).toString(36), '"')
      } else {
        id = givenId ?? (ctx.newId as () => string)()
        parts.push(',"event_id":', JSON.stringify(id))
      }
    } else if (
      typeof id !== 'string' ||
      id.length === 0 ||
      id.length > MAX_EVENT_ID_LENGTH ||
      // A lone surrogate is written to disk as U+FFFD: the id would change between a send and a replay.
      LONE_SURROGATE.test(id)
    ) {
      throw new InputError(
        400,
        'INVALID_EVENT_ID',
        `event_id must be a string of 1 to ${MAX_EVENT_ID_LENGTH} characters (valid Unicode) when the app sets it`,
        placeOf(i),
      )
    }
    addMissing(entry, identity, parts)
    if (!Object.hasOwn(entry, 'processed_at')) parts.push(processedAtPiece)
    if (!Object.hasOwn(entry, 'timestamp')) parts.push(timestampPiece(entry, receivedAt))
    const severity = Object.hasOwn(entry, 'severity') ? undefined : severityOf(entry.level)
    if (severity !== undefined) parts.push(severityPiece(severity))
    // Cloud Logging shows `message`; pino, Go's slog and many others write `msg`. Only a string is copied, so this
    // costs a stringify of one field, never of the entry.
    if (typeof entry.msg === 'string' && !Object.hasOwn(entry, 'message')) {
      parts.push(',"message":', JSON.stringify(entry.msg))
    }
    if (!Object.hasOwn(entry, TRACE_FIELD)) {
      const ids = parseTraceparent(entry.traceparent) ?? otelIdsOf(entry) ?? request?.trace
      if (ids) parts.push(traceFields(ids, Object.hasOwn(entry, SPAN_FIELD)))
    }
    addMissing(entry, labels, parts)

    if (parts.length === head + 1) return id as string | number
    // Splice the added fields into the serialised object instead of copying it: its closing brace goes last.
    if (isEmptyObject(entry)) {
      parts[head] = '{'
      parts[head + 1] = (parts[head + 1] as string).slice(1)
    } else {
      parts[head] = json.slice(0, -1)
    }
    parts.push('}')
    return id as string | number
  }

  const slabs = new SlabPool(SLABS)
  const enrichRequest: RequestEnricher = (entries, texts, receivedAt, placeOf, request, idOf) => {
    setReceivedAt(receivedAt)
    const ids: (string | number)[] = new Array(entries.length)
    const parts: string[] = []
    // Whether every entry took the next built-in id: the run then keeps only the first.
    let builtInIds = true
    for (let i = 0; i < entries.length; i++) {
      const id = enrichLine(
        entries[i] as Record<string, unknown>,
        receivedAt,
        placeOf,
        i,
        request,
        idOf?.(i),
        texts[i],
        parts,
      )
      ids[i] = id
      if (builtInIds && (typeof id !== 'number' || (i > 0 && id !== (ids[i - 1] as number) + 1)))
        builtInIds = false
      parts.push('\n')
    }
    // The request's lines go into one Buffer, each followed by its newline, as one EventRun: one copy per request,
    // one object for all its entries, and nothing of the text left on the JavaScript heap once the request is
    // answered. When the text is all ASCII, as logs nearly always are, its UTF-8 is its characters, and the copy is a
    // plain one.
    const all = parts.join('')
    const size = Buffer.byteLength(all)
    // In a slab that is reused once every request in it is delivered (see slabs.ts), or, for a very large request,
    // in a Buffer of its own; never in Node's shared 8 KiB pool, where a small chunk would keep the whole block (and
    // whatever was made and freed around it, such as a spool's records) alive while its entries wait.
    const taken = slabs.take(size)
    const chunk = taken ? taken.chunk : Buffer.allocUnsafeSlow(size)
    chunk.write(all, 0, size === all.length ? 'latin1' : 'utf8')
    return new EventRun(chunk, entries.length, builtInIds ? (ids[0] as number) : ids, taken?.slab)
  }

  const enrich = (
    entry: Record<string, unknown>,
    receivedAt: string,
    where: EntryPlace,
    request?: RequestContext,
    givenId?: string,
    text?: string,
  ): LogEvent => {
    setReceivedAt(receivedAt)
    const parts: string[] = []
    const id = enrichLine(entry, receivedAt, () => where, 0, request, givenId, text, parts)
    return createLogEvent(typeof id === 'number' ? formatEventId(id) : id, parts.join(''))
  }
  return Object.assign(enrich, { request: enrichRequest })
}
