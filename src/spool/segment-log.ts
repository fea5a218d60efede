// The disk spool's storage: an append-only log of records (record.ts), each with a sequence number, in segment files
// named by the first sequence number they hold. Opening it checks every record, sets damage aside and upgrades the
// first format; appends are durable per SPOOL_FSYNC before they resolve, and only then can a reader (log-reader.ts)
// see them; numbers are never given out twice, not even after damage cut the tail off a segment.
import { randomBytes } from 'node:crypto'
import {
  copyFile,
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
} from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { fsyncDir, writeAll } from '../storage/fsync.js'
import { type DamageReport, LogReader } from './log-reader.js'
import {
  type Damage,
  decodeFirstFormat,
  encode,
  FILE_HEADER_BYTES,
  HEADER_BYTES,
  MAGIC,
  MARKER_BYTES,
  scanRecords,
} from './record.js'

export type { DamageReport, LogReader } from './log-reader.js'
export { type Damage, type SpoolRecord, scanRecords } from './record.js'

const SUFFIX = '.seg'

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

/** One segment file, as the log knows it. */
export interface Segment {
  readonly path: string
  readonly firstSeq: number
  readonly marker: Buffer
  /** The last durable record's number; firstSeq - 1 while empty. */
  lastSeq: number
  /** Bytes up to the end of the last durable record: what readers may read, and what SPOOL_MAX_BYTES counts. */
  bytes: number
}

const segmentName = (firstSeq: number) => `${String(firstSeq).padStart(16, '0')}${SUFFIX}`

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
    readonly dir: string,
    private readonly options: SegmentLogOptions,
  ) {}

  /** Opens (or creates) the log in `dir`, checking every record; never throws for damaged segments. */
  static async open(dir: string, options: SegmentLogOptions): Promise<SegmentLog> {
    const log = new SegmentLog(dir, options)
    await mkdir(dir, { recursive: true })
    const names = (await readdir(dir)).filter((n) => /^\d{16}\.seg$/.test(n)).sort()
    for (const name of names) await log.openSegment(join(dir, name), Number(name.slice(0, 16)))
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

  private async openSegment(path: string, firstSeq: number): Promise<void> {
    const { logger, maxRecordBytes } = this.options
    let data: Buffer = await readFile(path)
    const hasMagic = data.subarray(0, MAGIC.length).equals(MAGIC)
    // The first format only when its first record proves it (a checksum that passes): a damaged header is not one.
    if (!hasMagic && data.length >= FILE_HEADER_BYTES && decodeFirstFormat(data, maxRecordBytes).length > 0) {
      data = await this.upgrade(path, data)
    } else if (data.length < FILE_HEADER_BYTES) {
      // Created, and the process died before its header was durable: it holds no record.
      await unlink(path)
      this.nextSeq = Math.max(this.nextSeq, firstSeq)
      return
    }
    const scan = (marker: Buffer) => ({
      marker,
      ...scanRecords(data, FILE_HEADER_BYTES, marker, {
        maxRecordBytes,
        afterSeq: firstSeq - 1,
        final: true,
      }),
    })
    // A damaged header must not cost the segment: the first record's marker says what the header's should be.
    let best = scan(Buffer.from(data.subarray(MAGIC.length, FILE_HEADER_BYTES)))
    if (!hasMagic || best.records.length === 0) {
      const learned = scan(Buffer.from(data.subarray(FILE_HEADER_BYTES, FILE_HEADER_BYTES + MARKER_BYTES)))
      if (learned.records.length > best.records.length || (!hasMagic && learned.records.length > 0)) {
        await copyFile(path, `${path}.corrupt`)
        best = learned
        const handle = await open(path, 'r+')
        await handle.write(Buffer.concat([MAGIC, learned.marker]), 0, FILE_HEADER_BYTES, 0)
        await handle.sync()
        await handle.close()
        data.set(MAGIC, 0)
        data.set(learned.marker, MAGIC.length)
        logger.warn(
          { segment: path },
          'spool: damaged segment header rewritten from its records (a copy is kept as .corrupt)',
        )
      } else if (!hasMagic) {
        // Nothing in it can be read: set it aside whole, and never give its numbers out again.
        await rename(path, `${path}.corrupt`)
        const lost = Math.ceil((data.length - FILE_HEADER_BYTES) / HEADER_BYTES)
        this.damagedAtOpen += 1
        this.nextSeq = Math.max(this.nextSeq, firstSeq + lost)
        logger.error(
          { segment: path, bytes: data.length, possibly_lost_records: lost },
          'spool: segment unreadable (no header, no record); set aside as .corrupt',
        )
        return
      }
    }
    const { marker, records, damage } = best
    let bytes = data.length
    let lost = 0
    if (damage.length > 0) {
      await copyFile(path, `${path}.corrupt`)
      const last = damage.at(-1) as Damage
      if (last.resumeAt === undefined) {
        // Nothing readable after the last damage: cut it off, so appends go after the last good record. Numbers
        // the cut-off bytes could have held are never given out again (a sink's journal may know them).
        bytes = last.offset
        lost = Math.ceil((data.length - bytes) / HEADER_BYTES)
        const handle = await open(path, 'r+')
        await handle.truncate(bytes)
        await handle.sync()
        await handle.close()
      }
      this.damagedAtOpen += damage.length
      logger.warn(
        {
          segment: path,
          damage: damage.map((d) => ({ byte_offset: d.offset, problem: d.problem })),
          kept_records: records.length,
          ...(lost > 0 ? { possibly_lost_records: lost } : {}),
        },
        'spool: damaged records skipped; the records around them are kept (a copy of the segment is kept as .corrupt)',
      )
    }
    const lastSeq = records.at(-1)?.seq ?? firstSeq - 1
    this.segments.push({ path, firstSeq, marker, lastSeq, bytes })
    this.nextSeq = Math.max(this.nextSeq, lastSeq + 1 + lost)
  }

  /** Rewrites a segment of the first format in today's, in place (atomically), and returns its new bytes. */
  private async upgrade(path: string, data: Buffer): Promise<Buffer> {
    const marker = randomBytes(MARKER_BYTES)
    const upgradePayload = this.options.upgradePayload ?? ((payload: Buffer) => payload)
    const records = decodeFirstFormat(data, this.options.maxRecordBytes)
    const upgraded = Buffer.concat([
      MAGIC,
      marker,
      ...records.map((r) => encode(marker, r.seq, upgradePayload(r.payload))),
    ])
    const temp = `${path}.upgrade`
    const handle = await open(temp, 'w')
    try {
      await handle.writeFile(upgraded)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(temp, path)
    await fsyncDir(this.dir)
    this.options.logger.info(
      { segment: path, records: records.length },
      'spool: segment upgraded to the current format',
    )
    return upgraded
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
  append(payloads: readonly Buffer[]): { firstSeq: number; lastSeq: number; written: Promise<void> } {
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
    return { firstSeq, lastSeq, written }
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
  async deleteThrough(seq: number): Promise<number> {
    let deleted = 0
    while (this.segments.length > 1 && (this.segments[0]?.lastSeq ?? Number.POSITIVE_INFINITY) <= seq) {
      const segment = this.segments.shift() as Segment
      await unlink(segment.path)
      await unlink(`${segment.path}.corrupt`).catch(() => {})
      deleted++
    }
    return deleted
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
    const path = join(this.dir, segmentName(firstSeq))
    const marker = randomBytes(MARKER_BYTES)
    const handle = await open(path, 'w')
    try {
      await writeAll(handle, Buffer.concat([MAGIC, marker]))
      if (this.options.fsync !== 'never') {
        await handle.datasync()
        await fsyncDir(this.dir)
      }
    } catch (err) {
      // No segment without its header: the next append starts one again.
      await handle.close().catch(() => {})
      await unlink(path).catch(() => {})
      throw err
    }
    this.handle = handle
    const { size } = await stat(path)
    const last = this.segments.at(-1)
    if (last?.path === path) this.segments.pop()
    this.segments.push({ path, firstSeq, marker, lastSeq: firstSeq - 1, bytes: size })
  }

  private enqueue<T>(step: () => Promise<T>): Promise<T> {
    const run = this.tail.then(step)
    this.tail = run.catch(() => {})
    return run
  }
}
