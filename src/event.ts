// Log events and batches: what flows from ingest to the sinks. Imports only slabs.ts (the memory runs live in) and
// errors.ts.
import { randomBytes } from 'node:crypto'
import { RunMemoryReusedError } from './errors.js'
import type { Slab } from './slabs.js'

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
  /** Its events. A batch formed of requests' runs (FormedBatch) makes them only when first asked. */
  readonly events: readonly LogEvent[]
  readonly bytes: number
}

/** How many events a batch holds, without making a FormedBatch's events. */
export function countOf(batch: Batch): number {
  return batch instanceof FormedBatch ? batch.count : batch.events.length
}

/** `bytes`, when the caller knows it (`line`'s UTF-8 size plus its newline), saves measuring the line again. */
export function createLogEvent(id: string, line: string, bytes?: number): LogEvent {
  return { id, line, bytes: bytes ?? Buffer.byteLength(line) + 1 }
}

/**
 * An event whose line lives in a Buffer shared by the events of one request (`chunk`: each line and its newline, one
 * after another), not in a string of its own: what an EventRun's events are, made when a sink or a store asks for
 * them one by one. The line is decoded only when asked for (BigQuery, dead letters); JSONL writers copy the bytes
 * (see `copyLines`).
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
 * The events of one request as one object: their lines one after another in `chunk`, each followed by its newline,
 * and their ids. A buffered entry lives until its batch is delivered, long enough to be promoted to the old
 * generation: one object per request instead of one per entry (ChunkEvent) cut what the bench's 100-entry NDJSON
 * load promoted to a fifth (143 to 30 MB in 6 s, --trace-gc-nvp). Its events are made only for a sink or a store that
 * asks for them one by one (BigQuery, the spool, dead letters); JSONL writers copy the bytes (see FormedBatch).
 * No line holds a raw newline (JSON escapes it in strings), so the newlines are where the lines end.
 */
export class EventRun {
  /** Whoever holds the run: its maker until it lets go, and each batch part of it until that batch is done. */
  private holds = 1
  /**
   * Where the lines are: the slab's Buffer (from `offset`) or the run's own. Not a view of them: a Buffer object per
   * request, kept until its batch was written, was promoted and freed by full collections (a third of what a 1-entry
   * request left to the old generation).
   */
  private readonly memory: Buffer
  private readonly offset: number
  /** The slab's generation when the run was written into it. */
  private readonly generation: number
  readonly bytes: number

  constructor(
    chunk: Buffer,
    readonly count: number,
    /** Each line's id, or the built-in id number (see newEventId) of the first line when every line has the next. */
    private readonly keys: readonly (string | number)[] | number,
    /** The slab `chunk` is in, when it is in one (see slabs.ts). */
    private readonly slab?: Slab,
  ) {
    this.generation = slab?.generation ?? 0
    this.bytes = chunk.length
    if (slab !== undefined && chunk.buffer === slab.buffer.buffer) {
      this.memory = slab.buffer
      this.offset = chunk.byteOffset - slab.buffer.byteOffset
    } else {
      this.memory = chunk
      this.offset = 0
    }
  }

  /** The lines, each followed by its newline: a new view of them at each call. */
  get chunk(): Buffer {
    return this.memory.subarray(this.offset, this.offset + this.bytes)
  }

  /** Where the line that starts at byte `at` ends, its newline included. */
  lineEnd(at: number): number {
    return this.memory.indexOf(10, this.offset + at) + 1 - this.offset
  }

  /** One more holder (a batch's slice of the run): its slab is not reused until every holder let go. */
  hold(): void {
    this.holds++
  }

  /** A holder is done with the run's bytes; when the last is, its slab may be reused. */
  release(): void {
    // Once only: let go more often than held (a bug) must not let the slab go twice; the generation check catches
    // whoever reads the run afterwards.
    if (--this.holds === 0) this.slab?.letGo()
  }

  /** Throws if the slab was reused under the run: a hold was let go too early, and the bytes are another request's. */
  private check(): void {
    if (this.slab && this.slab.generation !== this.generation) throw new RunMemoryReusedError()
  }

  /** Copies bytes `start` to `start + bytes` of the run into `target` at `at`. */
  copy(target: Buffer, at: number, start: number, bytes: number): number {
    this.check()
    const from = this.offset + start
    return this.memory.copy(target, at, from, from + bytes)
  }

  /**
   * The events of `count` lines from line `from`, which starts at byte `start`. They may outlive every hold (a
   * BigQuery row, a spool record, a dead letter), so the run's slab is never reused after this.
   */
  events(from = 0, count = this.count, start = 0): ChunkEvent[] {
    this.check()
    if (this.slab) this.slab.pinned = true
    const { chunk, keys } = this
    const events: ChunkEvent[] = new Array(count)
    let at = start
    for (let i = 0; i < count; i++) {
      const end = chunk.indexOf(10, at) + 1
      const n = from + i
      events[i] = new ChunkEvent(
        typeof keys === 'number' ? keys + n : (keys[n] as string | number),
        chunk,
        at,
        end - at,
      )
      at = end
    }
    return events
  }
}

/** Lines `from` to `from + count` of a run, bytes `start` to `start + bytes` of its chunk: one batch's share of it. */
export class RunSlice {
  constructor(
    readonly run: EventRun,
    readonly from: number,
    readonly count: number,
    readonly start: number,
    readonly bytes: number,
  ) {}
}

/**
 * A batch the batcher formed: runs of requests (or their slices) and single events, in the order they were accepted.
 * Its count and bytes are known, its JSONL is copied from the runs' chunks (`copyTo`), and its events are made only
 * if asked for.
 */
export class FormedBatch implements Batch {
  private made: LogEvent[] | undefined
  constructor(
    readonly name: string,
    readonly openedAt: Date,
    /** Whole runs, the slices of runs that straddle batches, and single events. */
    readonly parts: readonly (LogEvent | EventRun | RunSlice)[],
    readonly count: number,
    readonly bytes: number,
  ) {}

  get events(): readonly LogEvent[] {
    if (this.made === undefined) {
      const events: LogEvent[] = []
      for (const part of this.parts) {
        if (part instanceof EventRun) {
          for (const event of part.events()) events.push(event)
        } else if (part instanceof RunSlice) {
          for (const event of part.run.events(part.from, part.count, part.start)) events.push(event)
        } else {
          events.push(part)
        }
      }
      this.made = events
    }
    return this.made
  }

  /**
   * The batch is done (delivered or dead-lettered): its slices let go of their runs. Only the batcher calls it, once,
   * after the last write of the batch settled; a batch whose events were taken out pinned their slabs first.
   */
  letGo(): void {
    for (const part of this.parts) {
      if (part instanceof EventRun) part.release()
      else if (part instanceof RunSlice) part.run.release()
    }
  }

  /** Writes the batch as JSONL into `target` from `at` and returns where it stopped (see copyLines). */
  copyTo(target: Buffer, at: number): number {
    const { parts } = this
    let i = 0
    while (i < parts.length) {
      const part = parts[i] as LogEvent | EventRun | RunSlice
      if (part instanceof EventRun) {
        at += part.copy(target, at, 0, part.bytes)
        i++
        continue
      }
      if (part instanceof RunSlice) {
        at += part.run.copy(target, at, part.start, part.bytes)
        i++
        continue
      }
      let j = i + 1
      while (j < parts.length && !(parts[j] instanceof RunSlice || parts[j] instanceof EventRun)) j++
      at = copyLines(parts.slice(i, j) as LogEvent[], target, at)
      i = j
    }
    return at
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
