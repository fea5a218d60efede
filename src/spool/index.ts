// The disk spool (SPOOL_DIR): with it, a 202 means the request's entries are in the segment log on disk, and the
// backlog waits there: each sink reads the log as its batcher has room. Each sink keeps a journal of its batches: a
// batch is recorded as sealed (name, time, first and last sequence number) before its first write, and as done once
// delivered or dead-lettered. After a crash, a restart re-sends each sealed batch that is not done under its
// original name, so a write that had landed meets itself (412, the same file name, the same insertIds) instead of
// a duplicate, and the sink reads on from the first entry no batch of its had taken. A segment is deleted once
// every sink is done with all of its entries.
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Batch, LogEvent } from '../event.js'
import { JournalFile } from '../storage/journal-file.js'
import { type DamageReport, type FsyncPolicy, type LogReader, SegmentLog } from './segment-log.js'

const SEGMENT_BYTES = 16 * 1024 ** 2
const FSYNC_INTERVAL_MS = 1000
/** A journal is rewritten down to its live state after this many appended lines. */
const COMPACT_EVERY = 5000

export interface SpoolOptions {
  readonly dir: string
  readonly fsync: FsyncPolicy
  readonly maxBytes: number
  readonly maxEntryBytes: number
  readonly sinks: readonly string[]
  readonly logger: Logger
}

interface SealedBatch {
  readonly name: string
  readonly at: string
  readonly from: number
  readonly to: number
  done: boolean
}

type JournalLine =
  | { readonly t: number }
  | { readonly s: string; readonly at: string; readonly from: number; readonly to: number }
  | { readonly d: string }

/** One sink's progress through the log. */
export class SinkCursor {
  /** Every entry up to here is done. */
  private through = 0
  /** Sealed batches above `through`, in sequence order. */
  private readonly sealedBatches = new Map<string, SealedBatch>()
  private readonly file: JournalFile<JournalLine>

  constructor(
    readonly sink: string,
    path: string,
    logger: Logger,
  ) {
    this.file = new JournalFile(path, logger)
  }

  get doneThrough(): number {
    return this.through
  }

  /** Reads the journal an earlier process left (a torn last line is skipped) and compacts it. */
  async recover(): Promise<void> {
    for (const record of await this.file.read()) {
      if ('t' in record) this.through = Math.max(this.through, record.t)
      else if ('s' in record) {
        this.sealedBatches.set(record.s, {
          name: record.s,
          at: record.at,
          from: record.from,
          to: record.to,
          done: false,
        })
      } else {
        const batch = this.sealedBatches.get(record.d)
        if (batch) batch.done = true
      }
    }
    this.advance()
    await this.file.rewrite(this.liveRecords())
  }

  /** Sealed batches not done: to be re-sent as they were. */
  pendingBatches(): readonly SealedBatch[] {
    return [...this.sealedBatches.values()].filter((b) => !b.done)
  }

  /** The last sequence number any batch of this sink holds: later entries were never in a batch. */
  get lastSealed(): number {
    let last = this.through
    for (const batch of this.sealedBatches.values()) last = Math.max(last, batch.to)
    return last
  }

  /** Records the batch before its first write (synced): a restart re-sends it under the same name. */
  async sealed(batch: Batch): Promise<void> {
    if (this.sealedBatches.has(batch.name)) return
    const range = seqRange(batch)
    if (!range) return
    const record = { name: batch.name, at: batch.openedAt.toISOString(), ...range, done: false }
    this.sealedBatches.set(batch.name, record)
    await this.file.append({ s: record.name, at: record.at, from: record.from, to: record.to }, true)
  }

  /** Records the batch as delivered or dead-lettered (not synced: losing it re-sends a batch that dedupes). */
  async done(batch: Batch): Promise<void> {
    const record = this.sealedBatches.get(batch.name)
    if (!record) return
    record.done = true
    this.advance()
    await this.file.append({ d: batch.name }, false)
    if (this.file.appendedSinceRewrite > COMPACT_EVERY) await this.file.rewrite(this.liveRecords())
  }

  close(): Promise<void> {
    return this.file.close()
  }

  /**
   * Moves `through` past the done batches at the front. A sink seals its batches in sequence order, so numbers
   * below the first sealed batch that no batch holds will never be in one (a failed append, a damaged segment):
   * they count as done, or the spool could never delete their segment again.
   */
  private advance(): void {
    for (const batch of [...this.sealedBatches.values()].sort((a, b) => a.from - b.from)) {
      if (batch.to > this.through) {
        if (!batch.done) break
        this.through = batch.to
      }
      this.sealedBatches.delete(batch.name)
    }
  }

  private liveRecords(): JournalLine[] {
    const records: JournalLine[] = [{ t: this.through }]
    for (const b of this.sealedBatches.values()) {
      records.push({ s: b.name, at: b.at, from: b.from, to: b.to })
      if (b.done) records.push({ d: b.name })
    }
    return records
  }
}

function seqRange(batch: Batch): { from: number; to: number } | undefined {
  const from = batch.events[0]?.seq
  const to = batch.events.at(-1)?.seq
  return from === undefined || to === undefined ? undefined : { from, to }
}

/** What a restart hands back to one sink. */
export interface Recovered {
  /** Sealed batches that were not done, rebuilt with their names, times and entries. */
  readonly batches: Batch[]
  /** The first entry no batch had taken: the sink's reader starts here. */
  readonly resumeFrom: number
  /** Entries of unfinished batches the log no longer has: reported, counted as lost. */
  readonly missing: number
}

/**
 * An entry as a spool record: [u32 byte length of the event id][event id][line]. The id's length is explicit, so no
 * byte an app puts in its event_id can move where the line starts.
 */
export function eventToRecord(event: LogEvent): Buffer {
  const idBytes = Buffer.byteLength(event.id)
  const record = Buffer.allocUnsafe(4 + idBytes + Buffer.byteLength(event.line))
  record.writeUInt32BE(idBytes, 0)
  record.write(event.id, 4)
  record.write(event.line, 4 + idBytes)
  return record
}

/** Only the event id of a spool record, without decoding its line. */
export function recordEventId(payload: Buffer): string {
  return payload.toString('utf8', 4, 4 + payload.readUInt32BE(0))
}

/** A spool record back as the entry it was. */
export function recordToEvent({ seq, payload }: { seq: number; payload: Buffer }): LogEvent {
  const idBytes = payload.readUInt32BE(0)
  const line = payload.toString('utf8', 4 + idBytes)
  return { id: payload.toString('utf8', 4, 4 + idBytes), line, bytes: Buffer.byteLength(line) + 1, seq }
}

/** The first format's payload, `<event_id>\n<line>`, in today's (for a spool written by an earlier version). */
function upgradePayload(payload: Buffer): Buffer {
  const newline = payload.indexOf(10)
  const id = payload.toString('utf8', 0, newline)
  const line = payload.toString('utf8', newline + 1)
  return eventToRecord({ id, line, bytes: 0 })
}

export class Spool {
  private constructor(
    private readonly log: SegmentLog,
    private readonly cursors: Map<string, SinkCursor>,
    private readonly options: SpoolOptions,
  ) {}

  static async open(options: SpoolOptions): Promise<Spool> {
    const log = await SegmentLog.open(join(options.dir, 'log'), {
      segmentBytes: Math.min(SEGMENT_BYTES, Math.max(1024 ** 2, Math.floor(options.maxBytes / 4))),
      fsync: options.fsync,
      fsyncIntervalMs: FSYNC_INTERVAL_MS,
      // The entry, its id and the record's own framing.
      maxRecordBytes: options.maxEntryBytes * 2 + 1024,
      logger: options.logger,
      upgradePayload,
    })
    await mkdir(join(options.dir, 'sinks'), { recursive: true })
    const cursors = new Map<string, SinkCursor>()
    for (const sink of options.sinks) {
      const cursor = new SinkCursor(sink, join(options.dir, 'sinks', `${sink}.journal`), options.logger)
      await cursor.recover()
      cursors.set(sink, cursor)
      // Numbers a journal knows are never given out again, even if the log lost them (a power loss with
      // SPOOL_FSYNC=interval or never): a reader would otherwise skip the new entries that reuse them.
      await log.reserveThrough(cursor.lastSealed)
    }
    return new Spool(log, cursors, options)
  }

  cursor(sink: string): SinkCursor | undefined {
    return this.cursors.get(sink)
  }

  get bytes(): number {
    return this.log.bytes
  }

  /** Whether `bytes` more of entries fit under SPOOL_MAX_BYTES (with room for the framing). */
  hasRoomFor(bytes: number, entries: number): boolean {
    return this.log.bytes + bytes + entries * 64 <= this.options.maxBytes
  }

  /** Numbers the entries (sets `seq`) at once; `written` resolves when they are in the log, synced per SPOOL_FSYNC. */
  append(events: readonly LogEvent[]): { firstSeq: number; written: Promise<void> } {
    const { firstSeq, written } = this.log.append(events.map(eventToRecord))
    events.forEach((event, i) => {
      event.seq = firstSeq + i
    })
    return { firstSeq, written }
  }

  /** The sequence number the next accepted entry will get. */
  get next(): number {
    return this.log.next
  }

  /** The last entry written to the log: readers can get up to here. */
  get lastWritten(): number {
    return this.log.lastWritten
  }

  /** Above 90% of SPOOL_MAX_BYTES: new requests are refused before their body is read. */
  get isSaturated(): boolean {
    return this.log.bytes > this.options.maxBytes * 0.9
  }

  /** Resolves once every entry appended so far is written. */
  settled(): Promise<void> {
    return this.log.settled()
  }

  /** A reader of the log for one sink, from `fromSeq` on; `onDamage` hears of every damaged stretch it skips. */
  reader(fromSeq: number, onDamage?: (damage: DamageReport) => void): LogReader {
    return this.log.reader(fromSeq, onDamage)
  }

  /** Damaged records found when the log was opened (each also reported by the readers that meet it). */
  get damagedAtOpen(): number {
    return this.log.damagedAtOpen
  }

  /** Deletes the segments every sink is done with. */
  async release(): Promise<void> {
    let through = Number.POSITIVE_INFINITY
    for (const cursor of this.cursors.values()) through = Math.min(through, cursor.doneThrough)
    if (Number.isFinite(through)) await this.log.deleteThrough(through)
  }

  /**
   * What each sink still has to do: its sealed batches that were not done, read back from the log (they were in
   * memory before, so they fit again), and where its reader resumes. Later entries stay on disk until read.
   */
  async recover(): Promise<Map<string, Recovered>> {
    const wanted = new Map<number, LogEvent | undefined>()
    // Bounds kept by hand: spreading a buffer's worth of keys into Math.min overflows the stack past ~150,000.
    let first = Number.POSITIVE_INFINITY
    let last = 0
    for (const cursor of this.cursors.values()) {
      for (const sealed of cursor.pendingBatches()) {
        for (let seq = sealed.from; seq <= sealed.to; seq++) wanted.set(seq, undefined)
        first = Math.min(first, sealed.from)
        last = Math.max(last, sealed.to)
      }
    }
    if (wanted.size > 0) {
      const reader = this.log.reader(first)
      for (;;) {
        const records = await reader.read(10_000, 16 * 1024 ** 2)
        for (const record of records)
          if (wanted.has(record.seq)) wanted.set(record.seq, recordToEvent(record))
        if (records.length === 0 || reader.next > last) break
      }
    }
    const result = new Map<string, Recovered>()
    for (const [sink, cursor] of this.cursors) {
      const batches: Batch[] = []
      let missing = 0
      for (const sealed of cursor.pendingBatches()) {
        const events: LogEvent[] = []
        for (let seq = sealed.from; seq <= sealed.to; seq++) {
          const event = wanted.get(seq)
          if (event) events.push(event)
          else missing++
        }
        if (events.length === 0) {
          // Nothing of it is left to send: done, or its numbers would hold the sink's journal back for good.
          await cursor.done({ name: sealed.name, openedAt: new Date(sealed.at), events: [], bytes: 0 })
          continue
        }
        batches.push({
          name: sealed.name,
          openedAt: new Date(sealed.at),
          events,
          bytes: events.reduce((sum, e) => sum + e.bytes, 0),
        })
      }
      if (missing > 0) {
        this.options.logger.error(
          { sink, lost_events: missing },
          'spool: entries of unfinished batches are missing from the log (damaged or lost with the disk); the rest is re-sent',
        )
      }
      result.set(sink, { batches, resumeFrom: cursor.lastSealed + 1, missing })
    }
    return result
  }

  async close(): Promise<void> {
    for (const cursor of this.cursors.values()) await cursor.close()
    await this.log.close()
  }
}
