// The disk spool's storage: an append-only log of records (record.ts), each with a sequence number, in segment files
// (segment-file.ts) named by the first sequence number they hold. Opening it checks every segment; appends are
// durable per SPOOL_FSYNC before they resolve, and only then can a reader (log-reader.ts) see them; numbers are never
// given out twice, not even after damage cut the tail off a segment.
import { type FileHandle, mkdir, open, readdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { writeAll } from '../storage/fsync.js'
import { type DamageReport, LogReader } from './log-reader.js'
import { encode, FILE_HEADER_BYTES, HEADER_BYTES } from './record.js'
import { createSegment, openSegment, type Segment, segmentFirstSeq } from './segment-file.js'

export type { DamageReport, LogReader } from './log-reader.js'

export type FsyncPolicy = 'always' | 'interval' | 'never'

export interface SegmentLogOptions {
  /** A segment is closed and a new one started once it holds this many bytes. */
  readonly segmentBytes: number
  /** always: every append is synced before it resolves; interval: synced every `fsyncIntervalMs`; never: left to the OS. */
  readonly fsync: FsyncPolicy
  readonly fsyncIntervalMs?: number
  /** The largest payload a record may hold; a longer length field can only be corruption. */
  readonly maxRecordBytes: number
  readonly logger: Logger
  /** Turns a payload of the first format (before segment headers) into today's, for a spool written by an older version. */
  readonly upgradePayload?: (payload: Buffer) => Buffer
}

export class SegmentLog {
  private readonly segments: Segment[] = []
  private handle: FileHandle | undefined
  private nextSeq = 1
  private tail: Promise<unknown> = Promise.resolve()
  private dirty = false
  private timer: NodeJS.Timeout | undefined
  /** Records found damaged at open: reported, skipped by readers. */
  damagedAtOpen = 0

  private constructor(
    private readonly dir: string,
    private readonly options: SegmentLogOptions,
  ) {}

  /** Opens (or creates) the log in `dir`, checking every record; never throws for damaged segments. */
  static async open(dir: string, options: SegmentLogOptions): Promise<SegmentLog> {
    const log = new SegmentLog(dir, options)
    await mkdir(dir, { recursive: true })
    const { maxRecordBytes, logger, upgradePayload } = options
    for (const name of (await readdir(dir)).sort()) {
      const firstSeq = segmentFirstSeq(name)
      if (firstSeq === undefined) continue
      const opened = await openSegment(join(dir, name), firstSeq, {
        dir,
        maxRecordBytes,
        logger,
        upgradePayload,
      })
      if (opened.segment) log.segments.push(opened.segment)
      log.nextSeq = Math.max(log.nextSeq, opened.nextSeq)
      log.damagedAtOpen += opened.damaged
    }
    const last = log.segments.at(-1)
    if (last && last.lastSeq + 1 === log.nextSeq) {
      log.handle = await open(last.path, 'a')
    } else {
      await log.startSegment(log.nextSeq)
    }
    if (options.fsync === 'interval') {
      log.timer = setInterval(() => void log.sync(), options.fsyncIntervalMs ?? 1000)
      log.timer.unref()
    }
    return log
  }

  /** Bytes on disk, across segments: what SPOOL_MAX_BYTES bounds. */
  get bytes(): number {
    return this.segments.reduce((sum, s) => sum + s.bytes, 0)
  }

  /** The sequence number the next record will get. */
  get next(): number {
    return this.nextSeq
  }

  /**
   * The number of the last record written (durable, with SPOOL_FSYNC=always). Below `next` by the appends under way,
   * and by numbers that will never be written (an append that failed, a damaged tail): what readers can still get.
   */
  get lastWritten(): number {
    let last = 0
    // An empty segment's lastSeq is its firstSeq - 1, which may be past numbers never written.
    for (const segment of this.segments)
      if (segment.lastSeq >= segment.firstSeq) last = Math.max(last, segment.lastSeq)
    return last
  }

  /**
   * Appends one record per payload. Their sequence numbers are given at once (callers number their entries before
   * they go on); `written` resolves once the records are durable per the policy (synced, with `always`), and only
   * then can a reader see them. Writes happen in call order, so the file order is the sequence order.
   */
  append(payloads: readonly Buffer[]): { firstSeq: number; written: Promise<void> } {
    const firstSeq = this.nextSeq
    const lastSeq = firstSeq + payloads.length - 1
    this.nextSeq = lastSeq + 1
    const written = this.enqueue(async () => {
      // No open segment: an earlier failure could not start a new one (a full disk). Try again now; if that fails
      // too, this append fails, rather than being acknowledged unwritten.
      if (!this.handle) await this.startSegment(firstSeq)
      let current = this.current()
      if (
        current.bytes > FILE_HEADER_BYTES &&
        current.bytes + this.estimate(payloads) > this.options.segmentBytes
      ) {
        await this.startSegment(firstSeq)
        current = this.current()
      }
      const handle = this.handle as FileHandle | undefined
      if (!handle) throw new Error('spool: no segment open for writing')
      const data = Buffer.concat(payloads.map((payload, i) => encode(current.marker, firstSeq + i, payload)))
      try {
        await writeAll(handle, data)
        if (this.options.fsync === 'always') await handle.datasync()
      } catch (err) {
        // Part of it may be in the file: cut it back to the last durable record, so a restart cannot read back what
        // the client was told failed; later records go to a new segment (or, if none can be started now, the next
        // append tries again).
        await handle.truncate(current.bytes).catch(() => {})
        await this.startSegment(lastSeq + 1).catch(() => {})
        throw err
      }
      current.bytes += data.length
      current.lastSeq = lastSeq
      if (this.options.fsync !== 'always') this.dirty = true
    })
    return { firstSeq, written }
  }

  private estimate(payloads: readonly Buffer[]): number {
    let bytes = 0
    for (const payload of payloads) bytes += HEADER_BYTES + payload.length
    return bytes
  }

  /**
   * Makes sure no number up to `seq` is given out again: a restart whose journals know numbers the log lost (a power
   * loss with SPOOL_FSYNC=interval or never) goes on after them.
   */
  async reserveThrough(seq: number): Promise<void> {
    if (seq < this.nextSeq) return
    this.nextSeq = seq + 1
    await this.enqueue(() => this.startSegment(seq + 1))
  }

  /** Resolves once every append made so far is written. */
  settled(): Promise<void> {
    return this.enqueue(async () => {})
  }

  /** A reader of the records from `fromSeq` on, that keeps its place between calls. */
  reader(fromSeq: number, onDamage?: (damage: DamageReport) => void): LogReader {
    return new LogReader(this, fromSeq, this.options.maxRecordBytes, onDamage)
  }

  /** The segment holding durable record `seq`, or else the first one after it (past a gap). */
  segmentAtOrAfter(seq: number): Readonly<Segment> | undefined {
    return this.segments.find((s) => s.lastSeq >= seq && s.lastSeq >= s.firstSeq)
  }

  /** Deletes the segments whose records are all at or below `seq`, except the newest one. */
  async deleteThrough(seq: number): Promise<void> {
    while (this.segments.length > 1 && (this.segments[0]?.lastSeq ?? Number.POSITIVE_INFINITY) <= seq) {
      const segment = this.segments.shift() as Segment
      await unlink(segment.path)
      await unlink(`${segment.path}.corrupt`).catch(() => {})
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    await this.enqueue(async () => {
      if (this.options.fsync !== 'never') await this.handle?.datasync()
      await this.handle?.close()
      this.handle = undefined
    })
  }

  private async sync(): Promise<void> {
    await this.enqueue(async () => {
      if (!this.dirty) return
      this.dirty = false
      await this.handle?.datasync()
    })
  }

  private current(): Segment {
    return this.segments.at(-1) as Segment
  }

  /** Closes the current segment and starts one whose first record will be `firstSeq`. */
  private async startSegment(firstSeq: number): Promise<void> {
    if (this.handle) {
      const handle = this.handle
      this.handle = undefined
      if (this.options.fsync !== 'never') await handle.datasync().catch(() => {})
      await handle.close().catch(() => {})
    }
    const { handle, segment } = await createSegment(this.dir, firstSeq, this.options.fsync !== 'never')
    this.handle = handle
    const last = this.segments.at(-1)
    if (last?.path === segment.path) this.segments.pop()
    this.segments.push(segment)
  }

  private enqueue<T>(step: () => Promise<T>): Promise<T> {
    const run = this.tail.then(step)
    this.tail = run.catch(() => {})
    return run
  }
}
