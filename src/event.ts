// Log events and batches: what flows from ingest to the sinks. Imports nothing from src.
import { randomBytes } from 'node:crypto'

/** One enriched log entry, serialised once at ingest and never re-encoded on the way to a sink. */
export interface LogEvent {
  /** Stable for the life of the entry: BigQuery's insertId, the key every retry and replay keeps. */
  readonly id: string
  /** The enriched entry as one line of JSON, without the trailing newline. */
  readonly line: string
  /** UTF-8 bytes of `line` plus its newline: what the entry costs in a JSONL object and in the buffer. */
  readonly bytes: number
  /** Its place in the disk spool's log, given when the entry is accepted (only with SPOOL_DIR). */
  seq?: number
}

/** A sealed group of events handed to one sink. Every retry of it writes the same `name`. */
export interface Batch {
  /** Unique across instances and flushes: `<instance>-<seq>`; sinks derive object names from it. */
  readonly name: string
  /** When the batch was opened (its first event arrived); sinks lay out objects by this time. */
  readonly openedAt: Date
  readonly events: readonly LogEvent[]
  readonly bytes: number
}

/** `bytes`, when the caller knows it (`line`'s UTF-8 size plus its newline), saves measuring the line again. */
export function createLogEvent(id: string, line: string, bytes?: number): LogEvent {
  return { id, line, bytes: bytes ?? Buffer.byteLength(line) + 1 }
}

/**
 * An event whose line lives in a Buffer shared by the events of one request (`chunk`: each line and its newline, one
 * after another), not in a string of its own. Buffered entries are what survives the young generation and fills the
 * old one; as bytes outside the JavaScript heap they cost the garbage collector one small object each instead of
 * their text, which it copied twice and then marked. The line is decoded only for a sink that asks for it (BigQuery,
 * dead letters); JSONL writers copy the bytes (see `copyLines`).
 */
export class ChunkEvent implements LogEvent {
  /** Declared, not a field: only a spool sets it, and a slot in every event would be kept for nothing. */
  declare seq?: number
  constructor(
    /** The event id, or the number the built-in id source (`newEventId`) made it from, formatted when asked. */
    private readonly key: string | number,
    /** Shared with the other events of the request. */
    readonly chunk: Buffer,
    /** Where this event's line starts in `chunk`; the line and its newline take `bytes` from there. */
    readonly start: number,
    readonly bytes: number,
  ) {}

  get id(): string {
    return typeof this.key === 'string' ? this.key : formatEventId(this.key)
  }

  get line(): string {
    return this.chunk.toString('utf8', this.start, this.start + this.bytes - 1)
  }
}

/**
 * The built-in event ids: a random prefix per process (80 bits, new at every start) and a counter. Unique across
 * instances and restarts as a random UUID is, at a fraction of its cost, and they need no JSON escaping. An event
 * keeps the counter's number (a small integer is no object to keep) and formats it when its id is asked for.
 */
const ID_PREFIX = `${randomBytes(10).toString('hex')}-`
let nextId = 0
export function newEventId(): number {
  return nextId++
}
export function formatEventId(n: number): string {
  return ID_PREFIX + n.toString(36)
}

/**
 * Writes `events` as JSONL (each line and its newline) into `target` from `at`, and returns where it stopped. Runs of
 * ChunkEvents that follow each other in one chunk (a request's entries, as they are batched) are one copy.
 */
export function copyLines(events: readonly LogEvent[], target: Buffer, at: number): number {
  let i = 0
  while (i < events.length) {
    const event = events[i] as LogEvent
    if (event instanceof ChunkEvent) {
      let end = event.start + event.bytes
      let j = i + 1
      for (; j < events.length; j++) {
        const next = events[j]
        if (!(next instanceof ChunkEvent) || next.chunk !== event.chunk || next.start !== end) break
        end += next.bytes
      }
      at += event.chunk.copy(target, at, event.start, end)
      i = j
    } else {
      const written = target.write(event.line, at, 'utf8')
      if (written !== event.bytes - 1) {
        throw new RangeError(`event ${event.id}: its line is not the ${event.bytes - 1} bytes it says`)
      }
      at += written
      target[at++] = 10
      i++
    }
  }
  return at
}

/** Cloud Logging's special fields for the trace and span an entry belongs to (set at enrichment, read by sinks). */
export const TRACE_FIELD = 'logging.googleapis.com/trace'
export const SPAN_FIELD = 'logging.googleapis.com/spanId'
