// One segment file of the spool's log: its name, how a new one is started (header first, synced), and how one is
// opened again after a restart: every record checked, damage set aside in a `.corrupt` copy and cut off where nothing
// after it is readable, a damaged header rebuilt from its records, a segment of the first format upgraded in place.
import { randomBytes } from 'node:crypto'
import { copyFile, type FileHandle, open, readFile, rename, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { fsyncDir, writeAll } from '../storage/fsync.js'
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

const NAME = /^(\d{16})\.seg$/

/** A segment is named by the first sequence number it holds, padded so that names sort in sequence order. */
const segmentName = (firstSeq: number) => `${String(firstSeq).padStart(16, '0')}.seg`

/** The first sequence number of the segment a file name names, or undefined for any other file. */
export function segmentFirstSeq(name: string): number | undefined {
  const digits = NAME.exec(name)?.[1]
  return digits === undefined ? undefined : Number(digits)
}

/** Creates the segment file whose first record will be `firstSeq`; when `durable`, its header and name are synced. */
export async function createSegment(
  dir: string,
  firstSeq: number,
  durable: boolean,
): Promise<{ handle: FileHandle; segment: Segment }> {
  const path = join(dir, segmentName(firstSeq))
  const marker = randomBytes(MARKER_BYTES)
  const handle = await open(path, 'w')
  try {
    await writeAll(handle, Buffer.concat([MAGIC, marker]))
    if (durable) {
      await handle.datasync()
      await fsyncDir(dir)
    }
    const { size } = await stat(path)
    return { handle, segment: { path, firstSeq, marker, lastSeq: firstSeq - 1, bytes: size } }
  } catch (err) {
    // No segment without its header: the next append starts one again.
    await handle.close().catch(() => {})
    await unlink(path).catch(() => {})
    throw err
  }
}

export interface OpenSegmentOptions {
  /** The directory the segment is in: synced after an upgrade renames a rewritten segment into it. */
  readonly dir: string
  readonly maxRecordBytes: number
  readonly logger: Logger
  readonly upgradePayload?: (payload: Buffer) => Buffer
}

/** What opening a segment found. */
export interface OpenedSegment {
  /** Undefined when the file held no record and is gone (deleted, or set aside as `.corrupt`). */
  readonly segment: Segment | undefined
  /** The log's next number is at least this: numbers the file held, or may have held, are never given out again. */
  readonly nextSeq: number
  /** Damaged records (or stretches) found. */
  readonly damaged: number
}

/** Opens a segment written by an earlier process, checking every record; never throws for damage. */
export async function openSegment(
  path: string,
  firstSeq: number,
  options: OpenSegmentOptions,
): Promise<OpenedSegment> {
  const { logger, maxRecordBytes } = options
  let data: Buffer = await readFile(path)
  const hasMagic = data.subarray(0, MAGIC.length).equals(MAGIC)
  // The first format only when its first record proves it (a checksum that passes): a damaged header is not one.
  if (!hasMagic && data.length >= FILE_HEADER_BYTES && decodeFirstFormat(data, maxRecordBytes).length > 0) {
    data = await upgrade(path, data, options)
  } else if (data.length < FILE_HEADER_BYTES) {
    // Created, and the process died before its header was durable: it holds no record.
    await unlink(path)
    return { segment: undefined, nextSeq: firstSeq, damaged: 0 }
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
      logger.error(
        { segment: path, bytes: data.length, possibly_lost_records: lost },
        'spool: segment unreadable (no header, no record); set aside as .corrupt',
      )
      return { segment: undefined, nextSeq: firstSeq + lost, damaged: 1 }
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
  return {
    segment: { path, firstSeq, marker, lastSeq, bytes },
    nextSeq: lastSeq + 1 + lost,
    damaged: damage.length,
  }
}

/** Rewrites a segment of the first format in today's, in place (atomically), and returns its new bytes. */
async function upgrade(path: string, data: Buffer, options: OpenSegmentOptions): Promise<Buffer> {
  const marker = randomBytes(MARKER_BYTES)
  const upgradePayload = options.upgradePayload ?? ((payload: Buffer) => payload)
  const records = decodeFirstFormat(data, options.maxRecordBytes)
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
  await fsyncDir(options.dir)
  options.logger.info(
    { segment: path, records: records.length },
    'spool: segment upgraded to the current format',
  )
  return upgraded
}
