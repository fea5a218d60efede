// The spool's record format. A segment file starts with a 16-byte header, `SLSPOOL2` and a random 8-byte marker of
// its own; every record is [marker][u32 length][u32 crc32 of length, seq and payload][u64 seq][payload]. The marker
// lets a reader find the next record after damage (a damaged record costs that record only), and an app cannot forge
// a record inside its own bytes, since it never sees the marker. Also the first format's decoder, kept only to
// upgrade a spool an earlier version wrote.
import { crc32 } from 'node:zlib'

export const MAGIC = Buffer.from('SLSPOOL2')
export const MARKER_BYTES = 8
export const FILE_HEADER_BYTES = MAGIC.length + MARKER_BYTES
export const HEADER_BYTES = MARKER_BYTES + 16

export interface SpoolRecord {
  readonly seq: number
  readonly payload: Buffer
}

/** A stretch of a segment that holds no readable record: where it starts, and where the next record starts. */
export interface Damage {
  readonly offset: number
  readonly problem: string
  /** The next good record's offset, or undefined when nothing after the damage is readable. */
  readonly resumeAt: number | undefined
}

function checksum(data: Buffer, at: number, length: number): number {
  let crc = crc32(data.subarray(at + MARKER_BYTES, at + MARKER_BYTES + 4))
  crc = crc32(data.subarray(at + MARKER_BYTES + 8, at + HEADER_BYTES), crc)
  return crc32(data.subarray(at + HEADER_BYTES, at + HEADER_BYTES + length), crc)
}

export function encode(marker: Buffer, seq: number, payload: Buffer): Buffer {
  const record = Buffer.allocUnsafe(HEADER_BYTES + payload.length)
  marker.copy(record, 0)
  record.writeUInt32BE(payload.length, MARKER_BYTES)
  record.writeBigUInt64BE(BigInt(seq), MARKER_BYTES + 8)
  payload.copy(record, HEADER_BYTES)
  record.writeUInt32BE(checksum(record, 0, payload.length), MARKER_BYTES + 4)
  return record
}

type Decoded =
  | { readonly kind: 'record'; readonly seq: number; readonly payload: Buffer; readonly size: number }
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'bad'; readonly problem: string }

function decodeAt(
  data: Buffer,
  at: number,
  marker: Buffer,
  maxRecordBytes: number,
  afterSeq: number,
): Decoded {
  if (data.length - at < HEADER_BYTES) return { kind: 'incomplete' }
  if (data.compare(marker, 0, MARKER_BYTES, at, at + MARKER_BYTES) !== 0)
    return { kind: 'bad', problem: 'no record marker' }
  const length = data.readUInt32BE(at + MARKER_BYTES)
  if (length > maxRecordBytes) return { kind: 'bad', problem: `implausible length ${length}` }
  if (data.length - at - HEADER_BYTES < length) return { kind: 'incomplete' }
  if (checksum(data, at, length) !== data.readUInt32BE(at + MARKER_BYTES + 4))
    return { kind: 'bad', problem: 'checksum mismatch' }
  const seq = Number(data.readBigUInt64BE(at + MARKER_BYTES + 8))
  if (seq <= afterSeq) return { kind: 'bad', problem: `sequence ${seq} after ${afterSeq}` }
  return {
    kind: 'record',
    seq,
    payload: data.subarray(at + HEADER_BYTES, at + HEADER_BYTES + length),
    size: HEADER_BYTES + length,
  }
}

/**
 * The records in `data` from `start` on, and the damaged stretches between them. With `final`, `data` ends where the
 * readable bytes end, so a record cut short there is damage (a torn tail); without it, scanning stops before such a
 * record and `end` says where the next read should begin.
 */
export function scanRecords(
  data: Buffer,
  start: number,
  marker: Buffer,
  options: { maxRecordBytes: number; afterSeq: number; final: boolean },
): { records: (SpoolRecord & { offset: number; size: number })[]; damage: Damage[]; end: number } {
  const records: (SpoolRecord & { offset: number; size: number })[] = []
  const damage: Damage[] = []
  let afterSeq = options.afterSeq
  let at = start
  while (at < data.length) {
    const decoded = decodeAt(data, at, marker, options.maxRecordBytes, afterSeq)
    if (decoded.kind === 'record') {
      records.push({ seq: decoded.seq, payload: decoded.payload, offset: at, size: decoded.size })
      afterSeq = decoded.seq
      at += decoded.size
      continue
    }
    if (decoded.kind === 'incomplete' && !options.final) break
    const problem = decoded.kind === 'bad' ? decoded.problem : 'torn record'
    const next = data.indexOf(marker, at + 1)
    if (next === -1) {
      if (options.final) {
        damage.push({ offset: at, problem, resumeAt: undefined })
        at = data.length
      } else {
        // The marker may straddle the end of this chunk: resume just before it.
        const resumeAt = Math.max(at + 1, data.length - MARKER_BYTES + 1)
        damage.push({ offset: at, problem, resumeAt })
        at = resumeAt
      }
      break
    }
    damage.push({ offset: at, problem, resumeAt: next })
    at = next
  }
  return { records, damage, end: at }
}

/** The first format (no segment header, no marker): records up to the first bad one. Read once, to upgrade. */
export function decodeFirstFormat(data: Buffer, maxRecordBytes: number): SpoolRecord[] {
  const records: SpoolRecord[] = []
  for (let at = 0; data.length - at >= 16; ) {
    const length = data.readUInt32BE(at)
    if (length > maxRecordBytes || data.length - at - 16 < length) break
    const payload = data.subarray(at + 16, at + 16 + length)
    if (crc32(payload, crc32(data.subarray(at + 8, at + 16))) !== data.readUInt32BE(at + 4)) break
    records.push({ seq: Number(data.readBigUInt64BE(at + 8)), payload })
    at += 16 + length
  }
  return records
}
