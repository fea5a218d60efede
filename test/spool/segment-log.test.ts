// The spool's segment log on a real filesystem: order and sequence numbers across segments and restarts, and
// damage (a torn tail, a corrupt record) found, logged with its byte offset, cut off, and never fatal.
import { appendFile, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
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
  const records: { seq: number; n: number }[] = []
  for await (const { seq, payload } of log.read(fromSeq))
    records.push({ seq, n: JSON.parse(payload.toString()).n })
  return records
}

const segments = async (dir: string) => (await readdir(dir)).filter((n) => n.endsWith('.seg')).sort()

describe('SegmentLog', () => {
  it('numbers records in order across segments, and reads from any sequence number', async () => {
    const dir = await tempDir()
    const log = await SegmentLog.open(dir, options())
    for (let i = 0; i < 10; i++) {
      const appended = log.append(payloads(i * 3, 3))
      await appended.written
      expect(appended).toMatchObject({ firstSeq: i * 3 + 1, lastSeq: i * 3 + 3 })
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
    expect(await first.deleteThrough(25)).toBeGreaterThan(0)
    // The newest segment stays, so the sequence survives.
    expect(await segments(dir)).toHaveLength(1)
    await first.close()
    const second = await SegmentLog.open(dir, options())
    expect(second.next).toBe(26)
    expect(second.append(payloads(25, 1))).toMatchObject({ firstSeq: 26, lastSeq: 26 })
    await second.close()
  })

  it('cuts a torn last record off at its byte offset, keeps a copy, and appends after it', async () => {
    const dir = await tempDir()
    const first = await SegmentLog.open(dir, { ...options(), segmentBytes: 1 << 20 })
    await first.append(payloads(0, 4)).written
    await first.close()
    const [name = ''] = await segments(dir)
    const sizeBefore = (await readFile(join(dir, name))).length
    // A crash mid-append: a header that promises more bytes than follow.
    await appendFile(join(dir, name), Buffer.from([0, 0, 0, 40, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 5, 123]))

    const { logger, lines } = capturingLogger()
    const second = await SegmentLog.open(dir, { ...options(logger), segmentBytes: 1 << 20 })
    expect(lines).toEqual([
      expect.objectContaining({ byte_offset: sizeBefore, problem: 'torn record', kept_records: 4 }),
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

  it('cuts a segment at a corrupt record and keeps reading the segments after it', async () => {
    const dir = await tempDir()
    const first = await SegmentLog.open(dir, options())
    for (let i = 0; i < 8; i++) await first.append(payloads(i * 3, 3)).written
    await first.close()
    const [oldest = ''] = await segments(dir)
    const data = await readFile(join(dir, oldest))
    // Flip a byte inside the second record's payload.
    const secondRecord = 16 + data.readUInt32BE(0)
    data[secondRecord + 16 + 2] = (data[secondRecord + 16 + 2] ?? 0) ^ 0xff
    await writeFile(join(dir, oldest), data)

    const { logger, lines } = capturingLogger()
    const second = await SegmentLog.open(dir, options(logger))
    expect(lines).toEqual([
      expect.objectContaining({ byte_offset: secondRecord, problem: 'checksum mismatch', kept_records: 1 }),
    ])
    const seqs = (await readAll(second)).map((r) => r.seq)
    expect(seqs[0]).toBe(1)
    expect(seqs).not.toContain(2)
    expect(seqs.at(-1)).toBe(24)
    await second.close()
  })

  it('refuses an implausible length as corruption rather than reading past it', async () => {
    const dir = await tempDir()
    const first = await SegmentLog.open(dir, { ...options(), segmentBytes: 1 << 20 })
    await first.append(payloads(0, 2)).written
    await first.close()
    const [name = ''] = await segments(dir)
    const data = await readFile(join(dir, name))
    data.writeUInt32BE(0xffffffff, 0)
    await writeFile(join(dir, name), data)
    const { logger, lines } = capturingLogger()
    const second = await SegmentLog.open(dir, { ...options(logger), segmentBytes: 1 << 20 })
    expect(lines[0]).toMatchObject({ byte_offset: 0, problem: 'implausible length 4294967295' })
    expect(await readAll(second)).toEqual([])
    // The two lost records' numbers are not given out again: a sink may have recorded them as delivered.
    expect(second.next).toBeGreaterThan(2)
    const appended = second.append(payloads(9, 1))
    await appended.written
    expect(appended.firstSeq).toBe(second.next - 1)
    expect((await readAll(second)).map((r) => r.n)).toEqual([9])
    await second.close()
  })
})
