// The disk spool's storage: an append-only log of records, each with a sequence number, in segment files named by
// the first sequence number they hold. A record is [u32 payload length][u32 crc32 of seq and payload][u64 seq]
// [payload]. Opening the log checks every record: a torn or corrupt record is logged with its byte offset, the
// segment is copied aside as `.corrupt` and truncated there, and start-up goes on; numbers the cut-off bytes could
// have used are skipped, never reused. The newest segment is never deleted, so the next sequence number survives a
// restart even when everything has been delivered.
import { copyFile, type FileHandle, mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import type { Logger } from 'pino'
import { fsyncDir } from '../sinks/atomic-file.js'

const HEADER_BYTES = 16
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
}

export interface SpoolRecord {
  readonly seq: number
  readonly payload: Buffer
}

interface Segment {
  readonly path: string
  readonly firstSeq: number
  /** firstSeq - 1 while empty. */
  lastSeq: number
  bytes: number
}

const segmentName = (firstSeq: number) => `${String(firstSeq).padStart(16, '0')}${SUFFIX}`

function checksum(seq: Buffer, payload: Buffer): number {
  return crc32(payload, crc32(seq))
}

function encode(seq: number, payload: Buffer): Buffer {
  const record = Buffer.allocUnsafe(HEADER_BYTES + payload.length)
  record.writeUInt32BE(payload.length, 0)
  record.writeBigUInt64BE(BigInt(seq), 8)
  record.writeUInt32BE(checksum(record.subarray(8, 16), payload), 4)
  payload.copy(record, HEADER_BYTES)
  return record
}

/**
 * The valid records of a segment's bytes, from the start up to the first record that is torn (cut short), corrupt
 * (checksum), implausible (length) or out of sequence; `validBytes` is where that record starts.
 */
export function decodeSegment(
  data: Buffer,
  firstSeq: number,
  maxRecordBytes: number,
): { records: SpoolRecord[]; validBytes: number; problem?: string } {
  const records: SpoolRecord[] = []
  let offset = 0
  let expected = firstSeq
  while (offset < data.length) {
    if (data.length - offset < HEADER_BYTES)
      return { records, validBytes: offset, problem: 'torn record header' }
    const length = data.readUInt32BE(offset)
    if (length > maxRecordBytes)
      return { records, validBytes: offset, problem: `implausible length ${length}` }
    if (data.length - offset - HEADER_BYTES < length)
      return { records, validBytes: offset, problem: 'torn record' }
    const seqBytes = data.subarray(offset + 8, offset + 16)
    const payload = data.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + length)
    if (checksum(seqBytes, payload) !== data.readUInt32BE(offset + 4)) {
      return { records, validBytes: offset, problem: 'checksum mismatch' }
    }
    const seq = Number(seqBytes.readBigUInt64BE(0))
    if (seq !== expected)
      return { records, validBytes: offset, problem: `sequence ${seq} where ${expected} was due` }
    records.push({ seq, payload })
    expected++
    offset += HEADER_BYTES + length
  }
  return { records, validBytes: offset }
}

export class SegmentLog {
  private readonly segments: Segment[] = []
  private handle: FileHandle | undefined
  private nextSeq = 1
  private tail: Promise<unknown> = Promise.resolve()
  private dirty = false
  private timer: NodeJS.Timeout | undefined

  private constructor(
    readonly dir: string,
    private readonly options: SegmentLogOptions,
  ) {}

  /** Opens (or creates) the log in `dir`, checking every record; never throws for damaged segments. */
  static async open(dir: string, options: SegmentLogOptions): Promise<SegmentLog> {
    const log = new SegmentLog(dir, options)
    await mkdir(dir, { recursive: true })
    const names = (await readdir(dir)).filter((n) => /^\d{16}\.seg$/.test(n)).sort()
    for (const name of names) {
      const path = join(dir, name)
      const firstSeq = Number(name.slice(0, 16))
      // Sequence numbers only grow: a segment that starts before the end of the previous one is damage too.
      const data = await readFile(path)
      const { records, validBytes, problem } = decodeSegment(data, firstSeq, options.maxRecordBytes)
      if (problem) {
        options.logger.warn(
          { segment: path, byte_offset: validBytes, problem, kept_records: records.length },
          'spool: damaged segment truncated at the first bad record (a copy is kept as .corrupt)',
        )
        await copyFile(path, `${path}.corrupt`)
        const handle = await open(path, 'r+')
        await handle.truncate(validBytes)
        await handle.sync()
        await handle.close()
      }
      const lastSeq = firstSeq + records.length - 1
      log.segments.push({ path, firstSeq, lastSeq, bytes: validBytes })
      // The bytes cut off may have held records whose numbers a sink's journal already knows: never give those
      // numbers out again. Each record takes at least HEADER_BYTES, which bounds how many there could have been.
      const lost = Math.ceil((data.length - validBytes) / HEADER_BYTES)
      log.nextSeq = Math.max(log.nextSeq, lastSeq + 1 + lost)
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
   * Appends one record per payload. Their sequence numbers are given at once (callers number their entries before
   * they go on); `written` resolves once the records are written, and synced if the policy is `always`. Writes
   * happen in call order, so the file order is the sequence order.
   */
  append(payloads: readonly Buffer[]): { firstSeq: number; lastSeq: number; written: Promise<void> } {
    const firstSeq = this.nextSeq
    const lastSeq = firstSeq + payloads.length - 1
    this.nextSeq = lastSeq + 1
    const written = this.enqueue(async () => {
      const data = Buffer.concat(payloads.map((payload, i) => encode(firstSeq + i, payload)))
      let current = this.current()
      if (current.bytes > 0 && current.bytes + data.length > this.options.segmentBytes) {
        await this.startSegment(firstSeq)
        current = this.current()
      }
      try {
        await this.handle?.write(data)
      } catch (err) {
        // Part of it may be in the file: later records go to a new segment, and readers stop at the last good one.
        await this.startSegment(lastSeq + 1).catch(() => {})
        throw err
      }
      current.bytes += data.length
      current.lastSeq = lastSeq
      if (this.options.fsync === 'always') await this.handle?.datasync()
      else this.dirty = true
    })
    return { firstSeq, lastSeq, written }
  }

  /** Every record from `fromSeq` on, in order, as written so far (gaps left by damage are skipped). */
  async *read(fromSeq: number): AsyncGenerator<SpoolRecord> {
    for (const segment of [...this.segments]) {
      if (segment.lastSeq < fromSeq) continue
      const data = (await readFile(segment.path)).subarray(0, segment.bytes)
      const { records } = decodeSegment(data, segment.firstSeq, this.options.maxRecordBytes)
      for (const record of records) if (record.seq >= fromSeq) yield record
    }
  }

  /** Resolves once every append made so far is written. */
  settled(): Promise<void> {
    return this.enqueue(async () => {})
  }

  /** A reader of the records from `fromSeq` on, that keeps its place between calls. */
  reader(fromSeq: number): LogReader {
    return new LogReader(this, fromSeq, this.options.maxRecordBytes)
  }

  /** The segment holding written record `seq`, or else the first one after it (past a gap left by damage). */
  segmentAtOrAfter(seq: number): Readonly<Segment> | undefined {
    return this.segments.find((s) => s.lastSeq >= seq && s.lastSeq >= s.firstSeq)
  }

  /** Deletes the segments whose records are all at or below `seq`, except the newest one. */
  async deleteThrough(seq: number): Promise<number> {
    let deleted = 0
    while (this.segments.length > 1 && (this.segments[0]?.lastSeq ?? Number.POSITIVE_INFINITY) <= seq) {
      const segment = this.segments.shift() as Segment
      await unlink(segment.path)
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
      if (this.options.fsync !== 'never') await this.handle.datasync()
      await this.handle.close()
    }
    const path = join(this.dir, segmentName(firstSeq))
    this.handle = await open(path, 'a')
    if (this.options.fsync !== 'never') await fsyncDir(this.dir)
    const { size } = await stat(path)
    this.segments.push({ path, firstSeq, lastSeq: firstSeq - 1, bytes: size })
  }

  private enqueue<T>(step: () => Promise<T>): Promise<T> {
    const run = this.tail.then(step)
    this.tail = run.catch(() => {})
    return run
  }
}

/** One record at `offset` of `data`: undefined when it is not all there yet. */
function decodeRecord(
  data: Buffer,
  offset: number,
): { seq: number; payload: Buffer; size: number } | undefined {
  if (data.length - offset < HEADER_BYTES) return undefined
  const length = data.readUInt32BE(offset)
  if (data.length - offset - HEADER_BYTES < length) return undefined
  const seqBytes = data.subarray(offset + 8, offset + 16)
  const payload = data.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + length)
  if (checksum(seqBytes, payload) !== data.readUInt32BE(offset + 4)) {
    throw new Error(`spool record at byte ${offset} fails its checksum`)
  }
  return { seq: Number(seqBytes.readBigUInt64BE(0)), payload, size: HEADER_BYTES + length }
}

/**
 * Reads a log forward in chunks, remembering where it stopped (segment and byte offset), so a sink that fell
 * behind catches up from disk without rescanning. `skip` moves past records the caller took another way.
 */
export class LogReader {
  private segmentFirst = -1
  /** Byte offset, in segment `segmentFirst`, of record `offsetSeq`. */
  private offset = 0
  private offsetSeq = -1

  constructor(
    private readonly log: SegmentLog,
    /** The next record this reader hands out. */
    public next: number,
    private readonly maxRecordBytes: number,
  ) {}

  /** Records the caller took without reading them (handed over in memory as they were appended). */
  skip(count: number): void {
    this.next += count
  }

  /** Up to `maxRecords` records and about `maxBytes` of payload from `next` on, as written so far. */
  async read(maxRecords: number, maxBytes: number): Promise<SpoolRecord[]> {
    const records: SpoolRecord[] = []
    let bytes = 0
    while (records.length < maxRecords && bytes < maxBytes) {
      const segment = this.log.segmentAtOrAfter(this.next)
      if (!segment) break
      if (segment.firstSeq > this.next) this.next = segment.firstSeq
      if (segment.firstSeq !== this.segmentFirst || this.offsetSeq > this.next) {
        this.segmentFirst = segment.firstSeq
        this.offset = 0
        this.offsetSeq = segment.firstSeq
      }
      const chunk = Math.min(
        segment.bytes - this.offset,
        Math.max(1024 ** 2, this.maxRecordBytes + HEADER_BYTES),
      )
      if (chunk <= 0) break
      const data = Buffer.allocUnsafe(chunk)
      const handle = await open(segment.path, 'r')
      try {
        await handle.read(data, 0, chunk, this.offset)
      } finally {
        await handle.close()
      }
      let at = 0
      let progressed = false
      for (;;) {
        const record = decodeRecord(data, at)
        if (!record) break
        progressed = true
        if (record.seq >= this.next) {
          if (
            records.length >= maxRecords ||
            (records.length > 0 && bytes + record.payload.length > maxBytes)
          )
            break
          records.push({ seq: record.seq, payload: Buffer.from(record.payload) })
          bytes += record.payload.length
          this.next = record.seq + 1
        }
        at += record.size
        this.offset += record.size
        this.offsetSeq = record.seq + 1
      }
      if (!progressed) break
    }
    return records
  }
}
