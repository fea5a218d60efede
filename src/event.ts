// Log events and batches: what flows from ingest to the sinks. Imports nothing from src.

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

/** Cloud Logging's special fields for the trace and span an entry belongs to (set at enrichment, read by sinks). */
export const TRACE_FIELD = 'logging.googleapis.com/trace'
export const SPAN_FIELD = 'logging.googleapis.com/spanId'
