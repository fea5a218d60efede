// A reader of the spool's log: it reads forward in chunks from a remembered segment and byte offset, so a sink that
// fell behind catches up from disk without rescanning, sees only records that are durable, and resyncs past damage at
// the next record marker, reporting what the damage cost.
import { open } from 'node:fs/promises'
import { type Damage, FILE_HEADER_BYTES, HEADER_BYTES, type SpoolRecord, scanRecords } from './record.js'
import type { Segment } from './segment-file.js'
import type { SegmentLog } from './segment-log.js'

/** Damage a reader met: where, and how many records it cost (the numbers skipped over it). */
export interface DamageReport {
  readonly segment: string
  readonly byteOffset: number
  readonly problem: string
  readonly lostRecords: number
}

/**
 * Reads a log forward in chunks, remembering where it stopped (segment and byte offset), so a sink that fell
 * behind catches up from disk without rescanning. Damage costs the damaged records only: the reader reports it and
 * goes on at the next good record. `skip` moves past records the caller took another way.
 */
export class LogReader {
  private segmentFirst = -1
  /** Byte offset, in segment `segmentFirst`, of the record after `offsetSeq - 1`. */
  private offset = 0
  private offsetSeq = -1

  constructor(
    private readonly log: SegmentLog,
    /** The next record this reader hands out. */
    public next: number,
    private readonly maxRecordBytes: number,
    private readonly onDamage?: (damage: DamageReport) => void,
  ) {}

  /** Records the caller took without reading them (handed over in memory as they were appended). */
  skip(count: number): void {
    this.next += count
  }

  /** Up to `maxRecords` records and about `maxBytes` of payload from `next` on, as made durable so far. */
  async read(maxRecords: number, maxBytes: number): Promise<SpoolRecord[]> {
    const records: SpoolRecord[] = []
    let bytes = 0
    while (records.length < maxRecords && bytes < maxBytes) {
      const segment = this.log.segmentAtOrAfter(this.next)
      if (!segment) break
      if (segment.firstSeq > this.next) this.next = segment.firstSeq
      if (segment.firstSeq !== this.segmentFirst || this.offsetSeq > this.next) {
        this.segmentFirst = segment.firstSeq
        this.offset = FILE_HEADER_BYTES
        this.offsetSeq = segment.firstSeq
      }
      const chunk = Math.min(
        segment.bytes - this.offset,
        Math.max(1024 ** 2, this.maxRecordBytes + HEADER_BYTES),
      )
      if (chunk <= 0) {
        // The rest of this segment was damage: its remaining numbers are lost; go on with the next segment.
        this.reportTail(segment)
        continue
      }
      const data = Buffer.allocUnsafe(chunk)
      const handle = await open(segment.path, 'r')
      try {
        await handle.read(data, 0, chunk, this.offset)
      } finally {
        await handle.close()
      }
      const final = this.offset + chunk >= segment.bytes
      const scan = scanRecords(data, 0, segment.marker, {
        maxRecordBytes: this.maxRecordBytes,
        afterSeq: this.offsetSeq - 1,
        final,
      })
      let consumed = 0
      let full = false
      for (const record of scan.records) {
        if (record.seq >= this.next) {
          if (
            records.length >= maxRecords ||
            (records.length > 0 && bytes + record.payload.length > maxBytes)
          ) {
            full = true
            break
          }
          // Records are numbered without gaps inside a segment: numbers skipped here were in damaged bytes.
          const gapFrom = Math.max(this.offsetSeq, this.next)
          if (record.seq > gapFrom) this.report(segment, scan.damage[0], record.seq - gapFrom)
          records.push({ seq: record.seq, payload: Buffer.from(record.payload) })
          bytes += record.payload.length
          this.next = record.seq + 1
        }
        consumed = record.offset + record.size
        this.offsetSeq = record.seq + 1
      }
      const before = this.offset
      if (full) {
        this.offset += consumed
        break
      }
      this.offset += scan.end
      if (final && scan.damage.at(-1)?.resumeAt === undefined && scan.damage.length > 0) {
        this.offset = segment.bytes
      }
      if (this.offset >= segment.bytes && segment.lastSeq >= this.offsetSeq)
        this.reportTail(segment, scan.damage[0])
      if (this.offset === before && scan.records.length === 0) break
    }
    return records
  }

  private report(segment: Readonly<Segment>, damage: Damage | undefined, lost: number): void {
    this.onDamage?.({
      segment: segment.path,
      byteOffset: damage ? this.offset + damage.offset : this.offset,
      problem: damage?.problem ?? 'damaged records',
      lostRecords: lost,
    })
  }

  /** The segment's last numbers were in damaged bytes: count them once and move past them. */
  private reportTail(segment: Readonly<Segment>, damage?: Damage): void {
    const lost = segment.lastSeq - Math.max(this.offsetSeq, this.next) + 1
    if (lost > 0) this.report(segment, damage, lost)
    this.next = Math.max(this.next, segment.lastSeq + 1)
    this.offsetSeq = Math.max(this.offsetSeq, segment.lastSeq + 1)
  }
}
