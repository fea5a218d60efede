// The spool's segment log on a real filesystem: order and sequence numbers across segments and restarts, and
// damage (a torn tail, a corrupt record) found, logged with its byte offset, cut off, and never fatal.
import { appendFile, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { crc32 } from 'node:zlib'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { SegmentLog, type SegmentLogOptions } from '../../src/spool/segment-log.js'
import { tempDir } from '../helpers.js'

function capturingLogger() {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()))
      done()
    },
  })
  return { logger: pino({ level: 'warn' }, stream), lines }
}

const options = (logger = pino({ level: 'silent' })): SegmentLogOptions => ({
  segmentBytes: 256,
  fsync: 'always',
  maxRecordBytes: 1024,
  logger,
})

const payloads = (from: number, count: number) =>
  Array.from({ length: count }, (_, i) => Buffer.from(JSON.stringify({ n: from + i })))

async function readAll(log: SegmentLog, fromSeq = 1) {
  const reader = log.reader(fromSeq)
  const records: { seq: number; n: number }[] = []
  for (;;) {
    const batch = await reader.read(1000, 1 << 20)
    if (batch.length === 0) return records
    for (const { seq, payload } of batch) records.push({ seq, n: JSON.parse(payload.toString()).n })
  }
}

/** Byte offsets of the records in a segment file: each starts with the segment's marker (bytes 8-16). */
function recordOffsets(data: Buffer): number[] {
  const marker = data.subarray(8, 16)
  const offsets: number[] = []
  for (let at = data.indexOf(marker, 16); at !== -1; at = data.indexOf(marker, at + 1)) offsets.push(at)
  return offsets
}

const segments = async (dir: string) => (await readdir(dir)).filter((n) => n.endsWith('.seg')).sort()

describe('SegmentLog', () => {
  it('numbers records in order across segments, and reads from any sequence number', async () => {
    const dir = await tempDir()
    const log = await SegmentLog.open(dir, options())
    for (let i = 0; i < 10; i++) {
      const appended = log.append(payloads(i * 3, 3))
      await appended.written
      expect(appended.firstSeq).toBe(i * 3 + 1)
    }
    expect((await segments(dir)).length).toBeGreaterThan(2)
    const all = await readAll(log)
    expect(all.map((r) => r.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))
    expect(all.map((r) => r.n)).toEqual(Array.from({ length: 30 }, (_, i) => i))
    expect((await readAll(log, 15)).map((r) => r.seq)[0]).toBe(15)
    await log.close()
  })

  it('goes on from the last sequence number after a restart, even once every segment was deleted', async () => {
    const dir = await tempDir()
    const first = await SegmentLog.open(dir, options())
    await first.append(payloads(0, 20)).written
    await first.append(payloads(20, 5)).written
    expect((await segments(dir)).length).toBeGreaterThan(1)
    await first.deleteThrough(25)
    // The newest segment stays, so the sequence survives.
    expect(await segments(dir)).toHaveLength(1)
    await first.close()
    const second = await SegmentLog.open(dir, options())
    expect(second.next).toBe(26)
    expect(second.append(payloads(25, 1)).firstSeq).toBe(26)
    await second.close()
  })

  it('cuts a torn last record off at its byte offset, keeps a copy, and appends after it', async () => {
    const dir = await tempDir()
    const first = await SegmentLog.open(dir, { ...options(), segmentBytes: 1 << 20 })
    await first.append(payloads(0, 4)).written
    await first.close()
    const [name = ''] = await segments(dir)
    const data = await readFile(join(dir, name))
    const sizeBefore = data.length
    // A crash mid-append: the marker and a header that promises more bytes than follow.
    await appendFile(
      join(dir, name),
      Buffer.concat([data.subarray(8, 16), Buffer.from([0, 0, 0, 40, 1, 2, 3])]),
    )

    const { logger, lines } = capturingLogger()
    const second = await SegmentLog.open(dir, { ...options(logger), segmentBytes: 1 << 20 })
    expect(lines).toEqual([
      expect.objectContaining({
        damage: [{ byte_offset: sizeBefore, problem: 'torn record' }],
        kept_records: 4,
      }),
    ])
    expect((await readdir(dir)).filter((n) => n.endsWith('.corrupt'))).toEqual([`${name}.corrupt`])
    const appended = second.append(payloads(4, 2))
    await appended.written
    expect(appended.firstSeq).toBeGreaterThan(5) // the torn record's number is skipped
    expect((await readAll(second)).map((r) => r.n)).toEqual([0, 1, 2, 3, 4, 5])
    await second.close()
    // And the segment started after the damage reads back on the next start too.
    const third = await SegmentLog.open(dir, { ...options(), segmentBytes: 1 << 20 })
    expect((await readAll(third)).map((r) => r.n)).toEqual([0, 1, 2, 3, 4, 5])
    await third.close()
  })

  it('a corrupt record costs that record only: the records after it in the segment are kept', async () => {
    const dir = await tempDir()
    const first = await SegmentLog.open(dir, { ...options(), segmentBytes: 1 << 20 })
    await first.append(payloads(0, 1000)).written
    await first.close()
    const [name = ''] = await segments(dir)
    const data = await readFile(join(dir, name))
    const offsets = recordOffsets(data)
    expect(offsets).toHaveLength(1000)
    // One flipped bit inside the tenth record's payload.
    const at = (offsets[9] ?? 0) + 24 + 2
    data[at] = (data[at] ?? 0) ^ 0x01
    await writeFile(join(dir, name), data)

    const { logger, lines } = capturingLogger()
    const second = await SegmentLog.open(dir, { ...options(logger), segmentBytes: 1 << 20 })
    expect(lines).toEqual([
      expect.objectContaining({
        damage: [{ byte_offset: offsets[9], problem: 'checksum mismatch' }],
        kept_records: 999,
      }),
    ])
    const reports: unknown[] = []
    const reader = second.reader(1, (damage) => reports.push(damage))
    const seqs: number[] = []
    for (
      let batch = await reader.read(100, 1 << 20);
      batch.length > 0;
      batch = await reader.read(100, 1 << 20)
    )
      seqs.push(...batch.map((r) => r.seq))
    expect(seqs).toHaveLength(999)
    expect(seqs).not.toContain(10)
    expect(seqs.at(-1)).toBe(1000)
    expect(reports).toEqual([expect.objectContaining({ lostRecords: 1, problem: 'checksum mismatch' })])
    // Appends go on after the last good record, numbered after it.
    expect(second.next).toBe(1001)
    await second.close()
  })

  it('a damaged length field costs one record: the reader finds the next one by its marker', async () => {
    const dir = await tempDir()
    const first = await SegmentLog.open(dir, { ...options(), segmentBytes: 1 << 20 })
    await first.append(payloads(0, 5)).written
    const [name = ''] = await segments(dir)
    const data = await readFile(join(dir, name))
    const offsets = recordOffsets(data)
    data.writeUInt32BE(0xffffffff, (offsets[1] ?? 0) + 8)
    await writeFile(join(dir, name), data)
    // Damage found at run time, by a reader of the live log.
    const reports: { lostRecords: number; problem: string }[] = []
    const reader = first.reader(1, (damage) => reports.push(damage))
    const batch = await reader.read(100, 1 << 20)
    expect(batch.map((r) => r.seq)).toEqual([1, 3, 4, 5])
    expect(reports).toEqual([
      expect.objectContaining({ lostRecords: 1, problem: 'implausible length 4294967295' }),
    ])
    await first.close()
  })

  it('an app cannot forge a record: bytes shaped like a record inside a payload are read as payload', async () => {
    const dir = await tempDir()
    const log = await SegmentLog.open(dir, { ...options(), segmentBytes: 1 << 20 })
    await log.append([Buffer.from('{"n":0}')]).written
    const [name = ''] = await segments(dir)
    // A payload that holds a copy of a whole record of this very segment, marker and checksum included.
    const record = (await readFile(join(dir, name))).subarray(16)
    await log.append([Buffer.concat([Buffer.from('{"n":1,"x":"'), record, Buffer.from('"}')])]).written
    const batch = await log.reader(1).read(100, 1 << 20)
    expect(batch.map((r) => r.seq)).toEqual([1, 2])
    await log.close()
  })

  it('never gives out a number a journal already knows (reserveThrough)', async () => {
    const dir = await tempDir()
    const log = await SegmentLog.open(dir, options())
    await log.append(payloads(0, 3)).written
    await log.reserveThrough(10)
    const appended = log.append(payloads(3, 1))
    await appended.written
    expect(appended.firstSeq).toBe(11)
    expect((await readAll(log)).map((r) => r.seq)).toEqual([1, 2, 3, 11])
    await log.close()
    const again = await SegmentLog.open(dir, options())
    expect(again.next).toBe(12)
    await again.close()
  })

  it('upgrades a segment of the first format in place', async () => {
    const dir = await tempDir()
    // The first format: [u32 length][u32 crc32(seq, payload)][u64 seq][payload], no header.
    const old = [1, 2].map((seq) => {
      const payload = Buffer.from(`id${seq}\n{"n":${seq}}`)
      const record = Buffer.alloc(16 + payload.length)
      record.writeUInt32BE(payload.length, 0)
      record.writeBigUInt64BE(BigInt(seq), 8)
      payload.copy(record, 16)
      record.writeUInt32BE(crc32(payload, crc32(record.subarray(8, 16))), 4)
      return record
    })
    await writeFile(join(dir, '0000000000000001.seg'), Buffer.concat(old))
    const log = await SegmentLog.open(dir, {
      ...options(),
      upgradePayload: (p) => Buffer.from(p.toString().split('\n')[1] ?? ''),
    })
    expect(await readAll(log)).toEqual([
      { seq: 1, n: 1 },
      { seq: 2, n: 2 },
    ])
    expect(log.next).toBe(3)
    await log.close()
  })
})
