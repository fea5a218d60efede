// The disk spool (SPOOL_DIR): with it, a 202 means the request's entries are in the segment log on disk
// (segment-log.ts), and the backlog waits there: each sink reads the log as its batcher has room and journals its
// batches (sink-cursor.ts). After a crash, a restart re-sends each sealed batch that is not done under its original
// name, so a write that had landed meets itself (412, the same file name, the same insertIds) instead of a duplicate,
// and the sink reads on from the first entry no batch of its had taken. A segment is deleted once every sink is done
// with all of its entries. This module is the spool's face to the rest of sidelog.
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Batch, LogEvent } from '../event.js'
import { eventToRecord, recordEventId, recordToEvent, upgradePayload } from './entry-payload.js'
import { type DamageReport, type FsyncPolicy, type LogReader, SegmentLog } from './segment-log.js'
import { SinkCursor } from './sink-cursor.js'

export { recordEventId, recordToEvent } from './entry-payload.js'

const SEGMENT_BYTES = 16 * 1024 ** 2
const FSYNC_INTERVAL_MS = 1000

export interface SpoolOptions {
  readonly dir: string
  readonly fsync: FsyncPolicy
  readonly maxBytes: number
  readonly maxEntryBytes: number
  readonly sinks: readonly string[]
  readonly logger: Logger
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
      const cursor = new SinkCursor(join(options.dir, 'sinks', `${sink}.journal`), options.logger)
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
  /** How many entries of each event id the log holds from `seq` on (the tail input's check after a crash). */
  async idsFrom(seq: number): Promise<Map<string, number>> {
    const counts = new Map<string, number>()
    const reader = this.log.reader(seq)
    for (let records = await reader.read(10_000, 16 * 1024 ** 2); records.length > 0; ) {
      for (const record of records) {
        const id = recordEventId(record.payload)
        counts.set(id, (counts.get(id) ?? 0) + 1)
      }
      records = await reader.read(10_000, 16 * 1024 ** 2)
    }
    return counts
  }

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
