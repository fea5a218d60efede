// Enrichment, once per entry at ingest: adds (never overwrites) event_id, service, revision, host, processed_at,
// timestamp, severity and Cloud Logging's message and trace fields, and serialises the result to the JSON line every
// sink writes.
import { InputError } from '../errors.js'
import { createLogEvent, type EventRun, formatEventId, type LogEvent } from '../event.js'
import { SlabPool } from '../slabs.js'
import {
  type AdditionsContext,
  createAdditions,
  type EntryPlace,
  type EntryView,
  type LineOut,
  type Piece,
} from './additions.js'
import { type BodyEnricher, createBodyEnricher } from './enrich-bytes.js'
import type { RequestContext } from './enrich-fields.js'
import { RunIds, writeRun } from './run-writer.js'

export interface EnrichContext extends AdditionsContext {
  readonly maxEntryBytes: number
}

export type { EntryPlace } from './additions.js'
export type { BodyEnricher } from './enrich-bytes.js'
export {
  parseTraceparent,
  type RequestContext,
  requestContextOf,
  severityOf,
  type TraceIds,
} from './enrich-fields.js'

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
  /** The event_id for an entry that sets none (a keyed request's derived id); a new built-in id when absent. */
  id?: string,
  /** The entry as received, when it is one line of JSON: the added fields are spliced into it. */
  text?: string,
) => LogEvent) & {
  /** The same for every entry of one request at once (see RequestEnricher). */
  readonly request: RequestEnricher
  /** The same for a whole body's bytes, without parsing it, when it is in the usual form (see enrich-bytes.ts). */
  readonly body: BodyEnricher
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

function entryTooLarge(bytes: number, max: number, where: EntryPlace): InputError {
  return new InputError(
    413,
    'ENTRY_TOO_LARGE',
    `entry is ${bytes} bytes; the limit is ${max} (MAX_ENTRY_BYTES)`,
    where,
  )
}

/** Whether a parsed object has no own keys, without building the list of them. */
function isEmptyObject(entry: Record<string, unknown>): boolean {
  for (const _ in entry) return false
  return true
}

const NO_ENTRY: Record<string, unknown> = {}
const NO_PARTS: string[] = []

/** An entry JSON.parse built, read as enrichment reads it (see additions.ts). One is reused for every entry. */
class ObjectView implements EntryView {
  entry = NO_ENTRY
  constructor(private readonly names: readonly string[]) {}
  has(field: number): boolean {
    return Object.hasOwn(this.entry, this.names[field] as string)
  }
  value(field: number): unknown {
    return this.entry[this.names[field] as string]
  }
  isString(field: number): boolean {
    return typeof this.value(field) === 'string'
  }
}

/** Added fields as strings, pushed onto the parts of a request's output, which are joined once. */
class StringsOut implements LineOut<ObjectView> {
  parts = NO_PARTS
  piece(piece: Piece): void {
    this.parts.push(piece.text)
  }
  text(text: string): void {
    this.parts.push(text)
  }
  base36(n: number): void {
    this.parts.push(n.toString(36))
  }
  json(view: ObjectView, field: number): void {
    this.parts.push(JSON.stringify(view.value(field)))
  }
}

/**
 * Builds the per-entry enrichment. The fields that never change (service, revision, host, labels) are encoded
 * once (see additions.ts); the rest (a generated id, ISO times, a severity name) need no JSON escaping, so the hot
 * path is the entry's JSON (as received when the source passes it, else one JSON.stringify) plus own-property checks
 * and string concatenation.
 *
 * The enricher throws InputError (with `where`) when an entry is too large, too deeply nested to serialise, or
 * carries an event_id sidelog cannot use.
 */
export function createEnricher(ctx: EnrichContext): Enricher {
  // Every field sidelog may add is written as one or more ready-made pieces (`,"name":value`), pushed onto an
  // array and joined once per request: the request's output is the one string its Buffer is written from, with no
  // string per added field or per line on the way (those were 60% of what a request allocated, and what the young
  // generation allocates sets how often it is collected and how much of the requests in flight it promotes).
  const additions = createAdditions(ctx)
  const view = new ObjectView(additions.names)
  const out = new StringsOut()

  /**
   * Pushes entry `i`'s line (without its newline) onto `parts` as pieces, its JSON as received (or encoded) with the
   * added fields spliced in before its closing brace, and returns its id (or the built-in counter's number for it).
   * `additions.setReceivedAt(receivedAt)` must have been called. Throws InputError naming `placeOf(i)`.
   */
  const enrichLine = (
    entry: Record<string, unknown>,
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
    if (entryBytes > ctx.maxEntryBytes) throw entryTooLarge(entryBytes, ctx.maxEntryBytes, placeOf(i))

    const head = parts.length
    parts.push(json)
    view.entry = entry
    out.parts = parts
    let id: string | number
    try {
      id = additions.add(view, out, i, placeOf, request, givenId)
    } finally {
      // The reused view and output keep nothing of the request past its line.
      view.entry = NO_ENTRY
      out.parts = NO_PARTS
    }

    if (parts.length === head + 1) return id
    // Splice the added fields into the serialised object instead of copying it: its closing brace goes last.
    if (isEmptyObject(entry)) {
      parts[head] = '{'
      parts[head + 1] = (parts[head + 1] as string).slice(1)
    } else {
      parts[head] = json.slice(0, -1)
    }
    parts.push('}')
    return id
  }

  const slabs = new SlabPool(SLABS)
  const enrichRequest: RequestEnricher = (entries, texts, receivedAt, placeOf, request, idOf) => {
    additions.setReceivedAt(receivedAt)
    const ids = new RunIds()
    const parts: string[] = []
    for (let i = 0; i < entries.length; i++) {
      ids.push(
        enrichLine(entries[i] as Record<string, unknown>, placeOf, i, request, idOf?.(i), texts[i], parts),
      )
      parts.push('\n')
    }
    // The request's lines go into one Buffer, each followed by its newline, as one EventRun: one copy per request,
    // one object for all its entries, and nothing of the text left on the JavaScript heap once the request is
    // answered. When the text is all ASCII, as logs nearly always are, its UTF-8 is its characters, and the copy is a
    // plain one.
    const all = parts.join('')
    const size = Buffer.byteLength(all)
    return writeRun(slabs, size, ids, (chunk) => chunk.write(all, 0, size === all.length ? 'latin1' : 'utf8'))
  }

  const enrich = (
    entry: Record<string, unknown>,
    receivedAt: string,
    where: EntryPlace,
    request?: RequestContext,
    givenId?: string,
    text?: string,
  ): LogEvent => {
    additions.setReceivedAt(receivedAt)
    const parts: string[] = []
    const id = enrichLine(entry, () => where, 0, request, givenId, text, parts)
    return createLogEvent(typeof id === 'number' ? formatEventId(id) : id, parts.join(''))
  }
  const body = createBodyEnricher(additions, slabs, ctx.maxEntryBytes)
  return Object.assign(enrich, { request: enrichRequest, body })
}
