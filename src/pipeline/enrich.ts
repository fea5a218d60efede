// Enrichment, once per entry at ingest: adds (never overwrites) event_id, service, revision, host, processed_at,
// timestamp, severity and Cloud Logging's message and trace fields, and serialises the result to the JSON line every
// sink writes.
import { InputError } from '../errors.js'
import {
  ChunkEvent,
  createLogEvent,
  formatEventId,
  type LogEvent,
  newEventId,
  SPAN_FIELD,
  TRACE_FIELD,
} from '../event.js'
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
  /** The same for every entry of one request at once (see RequestEnricher); enrichers made by createEnricher have it. */
  readonly request?: RequestEnricher
}

/**
 * Enriches all entries of one request, as the Enricher does one: `texts[i]` is entry i as received (or undefined),
 * `placeOf(i)` its line or index (asked only for an error), `idOf(i)` a keyed request's derived id. The lines are
 * written into one Buffer and each event points into it (ChunkEvent): one copy and one UTF-8 measure per request
 * instead of one per entry. The Buffer lives until the last of its events is delivered; all of them are held by the
 * buffer anyway, and they stay together in one batch or two.
 */
export type RequestEnricher = (
  entries: readonly Record<string, unknown>[],
  texts: readonly (string | undefined)[],
  receivedAt: string,
  placeOf: (i: number) => EntryPlace,
  request?: RequestContext,
  idOf?: (i: number) => string,
) => LogEvent[]

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
  const encode = (fields: [string, string][]): [name: string, pair: string][] =>
    fields.map(([name, value]) => [name, `${JSON.stringify(name)}:${JSON.stringify(value)}`])
  const identity = encode([
    ['service', ctx.service],
    ['revision', ctx.revision],
    ['host', ctx.host],
  ])
  const labels = encode(Object.entries(ctx.labels))
  const addMissing = (entry: Record<string, unknown>, fields: [string, string][]) => {
    let added = ''
    for (const [name, pair] of fields) {
      if (!Object.hasOwn(entry, name)) added += `,${pair}`
    }
    return added
  }
  // Entries of one request often share their `time`: its ISO form is computed once per distinct value.
  let lastTime: unknown
  let lastTimestamp = ''
  const timestampFor = (entry: Record<string, unknown>, receivedAt: string) => {
    const time = entry.time
    if (time === undefined) return receivedAt
    if (time !== lastTime) {
      lastTimestamp = timestampOf(entry, receivedAt)
      // Only a valid time is cached: an invalid one falls back to the request's own time.
      lastTime = lastTimestamp === receivedAt ? undefined : time
    }
    return lastTimestamp
  }
  // Project ids and hex ids need no JSON escaping: the trace field is spliced as is.
  const tracePrefix = ctx.project ? `projects/${ctx.project}/traces/` : ''
  const traceFields = (ids: TraceIds, hasSpan: boolean) =>
    `,"${TRACE_FIELD}":"${tracePrefix}${ids.traceId}"` +
    (ids.spanId === undefined || hasSpan ? '' : `,"${SPAN_FIELD}":"${ids.spanId}"`)

  /**
   * What entry `i` becomes: its id (or the built-in counter's number for it) and its line, spliced or encoded.
   * Throws InputError naming `placeOf(i)`.
   */
  const enrichLine = (
    entry: Record<string, unknown>,
    receivedAt: string,
    placeOf: (i: number) => EntryPlace,
    i: number,
    request: RequestContext | undefined,
    givenId: string | undefined,
    text: string | undefined,
  ): [id: string | number, line: string] => {
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

    let id: unknown = entry.event_id
    let added = ''
    if (id === undefined) {
      if (givenId === undefined && !ctx.newId) {
        // The built-in ids stay numbers until asked for (ChunkEvent). They are hex, a dash and base 36: nothing to
        // escape.
        id = newEventId()
        added += `,"event_id":"${formatEventId(id as number)}"`
      } else {
        id = givenId ?? (ctx.newId as () => string)()
        added += `,"event_id":${JSON.stringify(id)}`
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
    added += addMissing(entry, identity)
    // ISO 8601 strings and severity names contain nothing JSON would escape.
    if (!Object.hasOwn(entry, 'processed_at')) added += `,"processed_at":"${receivedAt}"`
    if (!Object.hasOwn(entry, 'timestamp')) added += `,"timestamp":"${timestampFor(entry, receivedAt)}"`
    const severity = Object.hasOwn(entry, 'severity') ? undefined : severityOf(entry.level)
    if (severity !== undefined) added += `,"severity":"${severity}"`
    // Cloud Logging shows `message`; pino, Go's slog and many others write `msg`. Only a string is copied, so this
    // costs a stringify of one field, never of the entry.
    if (typeof entry.msg === 'string' && !Object.hasOwn(entry, 'message')) {
      added += `,"message":${JSON.stringify(entry.msg)}`
    }
    if (!Object.hasOwn(entry, TRACE_FIELD)) {
      const ids = parseTraceparent(entry.traceparent) ?? otelIdsOf(entry) ?? request?.trace
      if (ids) added += traceFields(ids, Object.hasOwn(entry, SPAN_FIELD))
    }
    added += addMissing(entry, labels)

    if (added === '') return [id as string | number, json]
    // Splice the added fields into the serialised object instead of copying it.
    return [
      id as string | number,
      isEmptyObject(entry) ? `{${added.slice(1)}}` : `${json.slice(0, -1)}${added}}`,
    ]
  }

  const enrichRequest: RequestEnricher = (entries, texts, receivedAt, placeOf, request, idOf) => {
    const ids: (string | number)[] = new Array(entries.length)
    const lines: string[] = new Array(entries.length)
    for (let i = 0; i < entries.length; i++) {
      const [id, line] = enrichLine(
        entries[i] as Record<string, unknown>,
        receivedAt,
        placeOf,
        i,
        request,
        idOf?.(i),
        texts[i],
      )
      ids[i] = id
      lines[i] = line
    }
    // The request's lines go into one Buffer, each followed by its newline, and each event points into it (see
    // ChunkEvent): one copy per request, and nothing of the text left on the JavaScript heap once the request is
    // answered. When the text is all ASCII, as logs nearly always are, each line's UTF-8 size is its length, and
    // the copy is a plain one.
    const all = lines.join('\n')
    const size = Buffer.byteLength(all) + 1
    const ascii = size === all.length + 1
    // Its own allocation, never a slice of Node's shared 8 KiB pool: a small chunk there would keep the whole block
    // (and whatever was made and freed around it, such as a spool's records) alive while its entries wait.
    const chunk = Buffer.allocUnsafeSlow(size)
    chunk.write(all, 0, ascii ? 'latin1' : 'utf8')
    chunk[size - 1] = 10
    const events: LogEvent[] = new Array(entries.length)
    let at = 0
    for (let i = 0; i < entries.length; i++) {
      const line = lines[i] as string
      const bytes = (ascii ? line.length : Buffer.byteLength(line)) + 1
      events[i] = new ChunkEvent(ids[i] as string | number, chunk, at, bytes)
      at += bytes
    }
    return events
  }

  const enrich = (
    entry: Record<string, unknown>,
    receivedAt: string,
    where: EntryPlace,
    request?: RequestContext,
    givenId?: string,
    text?: string,
  ): LogEvent => {
    const [id, line] = enrichLine(entry, receivedAt, () => where, 0, request, givenId, text)
    // createLogEvent measures the line, which flattens it: it then holds its own characters, not the request body
    // it was cut from.
    return createLogEvent(typeof id === 'number' ? formatEventId(id) : id, line)
  }
  return Object.assign(enrich, { request: enrichRequest })
}
