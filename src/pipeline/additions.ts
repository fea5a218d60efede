// What enrichment adds to an entry, decided once for both ways an entry reaches it: as an object JSON.parse built
// (enrich.ts), or as bytes a scan validated without building it (enrich-bytes.ts). Each way reads the entry through an
// EntryView and writes through a LineOut; the decisions (which fields, which values, which refusals) are this file's
// alone, so the two ways cannot drift apart.
import { InputError } from '../errors.js'
import { formatEventId, newEventId, SPAN_FIELD, TRACE_FIELD } from '../event.js'
import {
  otelIdsOf,
  parseTraceparent,
  type RequestContext,
  severityOf,
  type TraceIds,
  timestampOf,
} from './enrich-fields.js'

export interface AdditionsContext {
  readonly service: string
  readonly revision: string
  readonly host: string
  /** Static labels from LABELS, added (last) where the entry lacks the field. */
  readonly labels: Readonly<Record<string, string>>
  readonly newId?: () => string
  /** Project for `logging.googleapis.com/trace` (`projects/<project>/traces/<id>`); without it, the bare trace id. */
  readonly project?: string
}

/** Where an entry was in its request, for errors: its line (NDJSON) or index (JSON array). */
export interface EntryPlace {
  line?: number
  index?: number
}

/** The fields enrichment reads, by number; LABELS' names follow. */
export const F = {
  event_id: 0,
  service: 1,
  revision: 2,
  host: 3,
  processed_at: 4,
  timestamp: 5,
  time: 6,
  severity: 7,
  level: 8,
  msg: 9,
  message: 10,
  trace: 11,
  span: 12,
  traceparent: 13,
  trace_id: 14,
  span_id: 15,
} as const
const BUILT_IN_NAMES = Object.keys(F).map((name) =>
  name === 'trace' ? TRACE_FIELD : name === 'span' ? SPAN_FIELD : name,
)

/**
 * An entry as enrichment reads it. `value(field)` is what JSON.parse would give for the field: a string or a number,
 * undefined when the entry lacks it, and null for any other value (an object, an array, true, false, null), which no
 * decision tells apart.
 */
export interface EntryView {
  has(field: number): boolean
  value(field: number): unknown
  /** Whether the field's value is a string, without making it (`msg` is copied as written, never read). */
  isString(field: number): boolean
}

/** A piece of a line both ways can write: its text, and its UTF-8 made once. */
export interface Piece {
  readonly text: string
  readonly bytes: Buffer
}
function piece(text: string): Piece {
  return { text, bytes: Buffer.from(text) }
}

/** Where the added fields go, as pieces made once, strings made per entry, or a field's JSON as the entry has it. */
export interface LineOut<V extends EntryView> {
  piece(piece: Piece): void
  text(text: string): void
  /** A whole number from 0 up in base 36, as `n.toString(36)` writes it. */
  base36(n: number): void
  /** The JSON of the view's (string) value of `field`, as JSON.stringify would write it. */
  json(view: V, field: number): void
}

/** A UTF-16 surrogate that is not half of a pair (with the u flag, a pair is one code point and does not match). */
const LONE_SURROGATE = /\p{Cs}/u

/** Longest app-supplied event_id kept as is (BigQuery's insertId has a length limit; keep ids short and opaque). */
const MAX_EVENT_ID_LENGTH = 128

const MESSAGE_HEAD = piece(',"message":')
const EVENT_ID_HEAD = piece(',"event_id":')
const QUOTE = piece('"')

export interface Additions {
  /** The names of the fields, by number (see F): LABELS' follow the built-in ones. */
  readonly names: readonly string[]
  /** Must be called with a request's receive time before its entries are enriched. */
  setReceivedAt(receivedAt: string): void
  /**
   * Writes the fields entry `i` lacks to `out`, each as `,"name":value`, and returns its id (or the built-in counter's
   * number for it). Throws InputError naming `placeOf(i)` for an event_id sidelog cannot use.
   */
  add<V extends EntryView>(
    view: V,
    out: LineOut<V>,
    i: number,
    placeOf: (i: number) => EntryPlace,
    request: RequestContext | undefined,
    givenId: string | undefined,
  ): string | number
}

export function createAdditions(ctx: AdditionsContext): Additions {
  const labelNames = Object.keys(ctx.labels)
  const names = [...BUILT_IN_NAMES, ...labelNames]
  const pair = (name: string, value: string) => `,${JSON.stringify(name)}:${JSON.stringify(value)}`
  // The fields that never change, as one piece for the usual entry that has none of them, and one each.
  const fieldsOf = (fields: { field: number; value: string }[]) => {
    const pieces = fields.map(({ field, value }) => piece(pair(names[field] as string, value)))
    return {
      fields: fields.map(({ field }) => field),
      pieces,
      all: piece(pieces.map((p) => p.text).join('')),
    }
  }
  const identity = fieldsOf([
    { field: F.service, value: ctx.service },
    { field: F.revision, value: ctx.revision },
    { field: F.host, value: ctx.host },
  ])
  // A label named like a field sidelog reads (`msg`, `level`, ...) is that field: an entry has it or not, whichever
  // way it is read. (Names of fields sidelog writes itself are refused at start-up: see WRITTEN_FIELDS in config.ts.)
  const labels = fieldsOf(
    labelNames.map((name) => ({ field: names.indexOf(name), value: ctx.labels[name] ?? '' })),
  )
  /** Writes the pieces of `fields` the entry lacks: all of them at once in the usual case, where it has none. */
  const addMissing = <V extends EntryView>(view: V, out: LineOut<V>, fields: ReturnType<typeof fieldsOf>) => {
    const { fields: numbers, pieces, all } = fields
    let missing = 0
    for (let k = 0; k < numbers.length; k++) if (!view.has(numbers[k] as number)) missing++
    if (missing === numbers.length) {
      if (missing > 0) out.piece(all)
      return
    }
    for (let k = 0; k < numbers.length; k++) {
      if (!view.has(numbers[k] as number)) out.piece(pieces[k] as Piece)
    }
  }
  /** The built-in event id's piece up to its counter: the counter's base-36 digits and `"` follow. */
  const builtInIdHead = piece(`,"event_id":"${formatEventId(0).slice(0, -1)}`)
  // Severity names, ISO times and hex ids contain nothing JSON would escape: their pieces are spliced as they are.
  const severityPieces = new Map<string, Piece>()
  const severityPiece = (severity: string) => {
    let made = severityPieces.get(severity)
    if (made === undefined) {
      made = piece(`,"severity":"${severity}"`)
      severityPieces.set(severity, made)
    }
    return made
  }
  // Entries of one request mostly share a level: the piece for the last one is kept.
  let lastLevel: unknown
  let lastLevelPiece: Piece | undefined
  const levelPiece = (level: unknown) => {
    if (level !== lastLevel || level === undefined) {
      const severity = severityOf(level)
      lastLevel = level
      lastLevelPiece = severity === undefined ? undefined : severityPiece(severity)
    }
    return lastLevelPiece
  }
  // The pieces that depend on the time a request was received, made once for all its entries (and for the
  // requests received in the same millisecond).
  let receivedFor = ''
  let processedAtPiece = piece('')
  let receivedTimestampPiece = piece('')
  // The usual entry's fields after a built-in id's digits, in one piece: the id's closing quote, the identity, the
  // processing time and the request's time as timestamp (one copy instead of four, for every entry).
  let afterBuiltInIdPiece = piece('')
  const setReceivedAt = (receivedAt: string) => {
    if (receivedAt === receivedFor) return
    receivedFor = receivedAt
    processedAtPiece = piece(`,"processed_at":"${receivedAt}"`)
    receivedTimestampPiece = piece(`,"timestamp":"${receivedAt}"`)
    afterBuiltInIdPiece = piece(
      QUOTE.text + identity.all.text + processedAtPiece.text + receivedTimestampPiece.text,
    )
  }
  // Entries of one request often share their `time`: its ISO form is computed once per distinct value.
  let lastTime: unknown
  let lastTimestampPiece = receivedTimestampPiece
  const timestampPiece = (time: unknown) => {
    if (time === undefined) return receivedTimestampPiece
    if (time !== lastTime) {
      const timestamp = timestampOf(time, receivedFor)
      // Only a valid time is cached: an invalid one falls back to the request's own time.
      lastTime = timestamp === receivedFor ? undefined : time
      lastTimestampPiece =
        timestamp === receivedFor ? receivedTimestampPiece : piece(`,"timestamp":"${timestamp}"`)
    }
    return lastTimestampPiece
  }
  // Project ids and hex ids need no JSON escaping: the trace field is spliced as is.
  const tracePrefix = ctx.project ? `projects/${ctx.project}/traces/` : ''
  const traceFields = (ids: TraceIds, hasSpan: boolean) =>
    `,"${TRACE_FIELD}":"${tracePrefix}${ids.traceId}"` +
    (ids.spanId === undefined || hasSpan ? '' : `,"${SPAN_FIELD}":"${ids.spanId}"`)

  /** Whether the entry has none of the fields `afterBuiltInIdPiece` holds or decides on. */
  const usual = (view: EntryView) =>
    !view.has(F.service) &&
    !view.has(F.revision) &&
    !view.has(F.host) &&
    !view.has(F.processed_at) &&
    !view.has(F.timestamp) &&
    !view.has(F.time)

  const add: Additions['add'] = (view, out, i, placeOf, request, givenId) => {
    let id = view.value(F.event_id)
    // The usual entry, with a built-in id: its id, identity and times in three copies.
    let written = false
    if (id === undefined) {
      if (givenId === undefined && !ctx.newId) {
        // The built-in ids stay numbers until asked for (EventRun, ChunkEvent). They are hex, a dash and base 36:
        // nothing to escape.
        id = newEventId()
        out.piece(builtInIdHead)
        out.base36(id as number)
        written = usual(view)
        out.piece(written ? afterBuiltInIdPiece : QUOTE)
      } else {
        id = givenId ?? (ctx.newId as () => string)()
        out.piece(EVENT_ID_HEAD)
        out.text(JSON.stringify(id))
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
    if (!written) {
      addMissing(view, out, identity)
      if (!view.has(F.processed_at)) out.piece(processedAtPiece)
      if (!view.has(F.timestamp)) out.piece(timestampPiece(view.value(F.time)))
    }
    const severity = view.has(F.severity) ? undefined : levelPiece(view.value(F.level))
    if (severity !== undefined) out.piece(severity)
    // Cloud Logging shows `message`; pino, Go's slog and many others write `msg`. Only a string is copied, so this
    // costs a stringify of one field, never of the entry.
    if (view.isString(F.msg) && !view.has(F.message)) {
      out.piece(MESSAGE_HEAD)
      out.json(view, F.msg)
    }
    if (!view.has(F.trace)) {
      const ids =
        parseTraceparent(view.value(F.traceparent)) ??
        otelIdsOf(view.value(F.trace_id), view.value(F.span_id)) ??
        request?.trace
      if (ids) out.text(traceFields(ids, view.has(F.span)))
    }
    addMissing(view, out, labels)
    return id as string | number
  }

  return { names, setReceivedAt, add }
}
