// A sink's spool journal: batches done out of order move `doneThrough` only over a contiguous prefix, and a restart
// reads back which sealed batches are still to be re-sent, past a torn last line.
import { appendFile, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { Batch, LogEvent } from '../../src/event.js'
import { Spool } from '../../src/spool/index.js'
import { SinkCursor } from '../../src/spool/sink-cursor.js'
import { silentLogger, tempDir } from '../helpers.js'
import { refuseSeals } from './journal-faults.js'

function batch(name: string, from: number, to: number): Batch {
  const events: LogEvent[] = []
  for (let seq = from; seq <= to; seq++) events.push({ id: `e${seq}`, line: '{}', bytes: 3, seq })
  return { name, openedAt: new Date('2026-11-22T04:00:00Z'), events, bytes: events.length * 3 }
}

afterEach(() => {
  vi.restoreAllMocks()
})

/** Whether a restart gets `seq` back: in a sealed batch it re-sends, or read again after the last sealed one. */
function restartHas(cursor: SinkCursor, seq: number): boolean {
  return cursor.pendingBatches().some((b) => b.from <= seq && seq <= b.to) || seq > cursor.lastSealed
}

describe('SinkCursor', () => {
  it('holds every later seal back while one could not be journaled, so that a restart never skips its entries', async () => {
    const path = join(await tempDir(), 'gcs.journal')
    const cursor = new SinkCursor(path, silentLogger)
    await cursor.recover()
    refuseSeals((name) => name === 'a')
    await expect(cursor.sealed(batch('a', 1, 10))).rejects.toThrow('no space left')
    // b comes after a: journaled before a, a restart would resume after b and never see a's entries.
    await cursor.sealed(batch('b', 11, 20)).catch(() => undefined)
    await cursor.close()

    const restarted = new SinkCursor(path, silentLogger)
    await restarted.recover()
    for (let seq = 1; seq <= 20; seq++) expect(restartHas(restarted, seq), `entry ${seq}`).toBe(true)
    await restarted.close()
  })

  it('journals the held seals in order once the first of them can be written', async () => {
    const path = join(await tempDir(), 'gcs.journal')
    const cursor = new SinkCursor(path, silentLogger)
    await cursor.recover()
    refuseSeals((name) => name === 'a')
    await expect(cursor.sealed(batch('a', 1, 10))).rejects.toThrow()
    await expect(cursor.sealed(batch('b', 11, 20))).rejects.toThrow(/batch a, before it, could not be/)
    vi.restoreAllMocks()
    await cursor.sealed(batch('a', 1, 10))
    await cursor.sealed(batch('b', 11, 20))
    await cursor.close()

    const restarted = new SinkCursor(path, silentLogger)
    await restarted.recover()
    expect(restarted.pendingBatches().map((b) => [b.name, b.from, b.to])).toEqual([
      ['a', 1, 10],
      ['b', 11, 20],
    ])
    await restarted.close()
  })

  it('moves doneThrough over batches done in any order, only as far as they are contiguous', async () => {
    const path = join(await tempDir(), 'gcs.journal')
    const cursor = new SinkCursor(path, silentLogger)
    await cursor.recover()
    const [a, b, c] = [batch('a', 1, 10), batch('b', 11, 20), batch('c', 21, 30)]
    for (const x of [a, b, c]) await cursor.sealed(x)
    await cursor.done(b)
    expect(cursor.doneThrough).toBe(0)
    await cursor.done(a)
    expect(cursor.doneThrough).toBe(20)
    expect(cursor.pendingBatches().map((p) => p.name)).toEqual(['c'])
    expect(cursor.lastSealed).toBe(30)
    await cursor.close()
  })

  it('gives a restart the sealed batches not done, with their names and times, past a torn line', async () => {
    const path = join(await tempDir(), 'gcs.journal')
    const first = new SinkCursor(path, silentLogger)
    await first.recover()
    await first.sealed(batch('a', 1, 5))
    await first.sealed(batch('b', 6, 9))
    await first.done(batch('a', 1, 5))
    await first.close()
    await appendFile(path, '{"d":"b"') // a crash mid-append: b is not done

    const second = new SinkCursor(path, silentLogger)
    await second.recover()
    expect(second.doneThrough).toBe(5)
    expect(second.pendingBatches()).toEqual([
      { name: 'b', at: '2026-11-22T04:00:00.000Z', from: 6, to: 9, done: false },
    ])
    // Recovery compacted the journal to its live state.
    expect((await readFile(path, 'utf8')).trim().split('\n')).toEqual([
      '{"t":5}',
      '{"s":"b","at":"2026-11-22T04:00:00.000Z","from":6,"to":9}',
    ])
    await second.close()
  })
})

describe('Spool.recover', () => {
  it('rebuilds an unfinished batch of 250,000 entries (more than a spread argument list can hold)', async () => {
    const dir = await tempDir()
    const options = {
      dir,
      fsync: 'never' as const,
      maxBytes: 1024 ** 3,
      maxEntryBytes: 1024,
      sinks: ['file'],
      logger: silentLogger,
    }
    const first = await Spool.open(options)
    const events: LogEvent[] = Array.from({ length: 250_000 }, (_, i) => ({
      id: `e${i}`,
      line: `{"n":${i}}`,
      bytes: 10,
    }))
    await first.append(events).written
    await first.cursor('file')?.sealed({ name: 'big', openedAt: new Date(0), events, bytes: 0 })
    await first.close()

    const second = await Spool.open(options)
    const recovered = (await second.recover()).get('file')
    expect(recovered?.batches.map((b) => [b.name, b.events.length])).toEqual([['big', 250_000]])
    expect(recovered?.batches[0]?.events.at(-1)).toMatchObject({ id: 'e249999', seq: 250_000 })
    expect(recovered?.resumeFrom).toBe(250_001)
    await second.close()
  })
})

describe('SinkCursor gaps', () => {
  it('counts numbers below the first sealed batch that no batch took as done, so segments can go', async () => {
    const cursor = new SinkCursor(join(await tempDir(), 'gcs.journal'), silentLogger)
    await cursor.recover()
    // 11–20 never reached this sink (an append that failed, a damaged segment): its next batch starts at 21.
    for (const b of [batch('a', 1, 10), batch('c', 21, 30)]) await cursor.sealed(b)
    await cursor.done(batch('c', 21, 30))
    expect(cursor.doneThrough).toBe(0) // a is not done yet
    await cursor.done(batch('a', 1, 10))
    expect(cursor.doneThrough).toBe(30)
    await cursor.close()
  })
})

// Found in review: a compaction computed while a seal was being appended erased that seal from the journal.
describe('SinkCursor compaction while a seal is being journaled', () => {
  it('keeps the seal of a batch being sent when a done() of another batch compacts the journal meanwhile', async () => {
    const path = join(await tempDir(), 'gcs.journal')
    const cursor = new SinkCursor(path, silentLogger)
    await cursor.recover()
    await cursor.sealed(batch('x', 1, 10))
    // The 5001st append since the last rewrite: the next done() compacts (as it does every 5000 records).
    ;(cursor as unknown as { file: { appendedSinceRewrite: number } }).file.appendedSinceRewrite = 5000
    const done = cursor.done(batch('x', 1, 10))
    const sealed = cursor.sealed(batch('a', 11, 20))
    await Promise.all([done, sealed])
    // sealed() resolved: the lane now sends a. The process dies before a is done.
    await cursor.close()

    const restarted = new SinkCursor(path, silentLogger)
    await restarted.recover()
    expect(restarted.pendingBatches().map((b) => b.name)).toEqual(['a'])
    await restarted.close()
  })
})

describe('SinkCursor compaction vs. a seal in flight, then a later batch', () => {
  it('a restart still gets the entries of the batch whose seal the compaction dropped', async () => {
    const path = join(await tempDir(), 'gcs.journal')
    const cursor = new SinkCursor(path, silentLogger)
    await cursor.recover()
    await cursor.sealed(batch('x', 1, 10))
    ;(cursor as unknown as { file: { appendedSinceRewrite: number } }).file.appendedSinceRewrite = 5000
    await Promise.all([cursor.done(batch('x', 1, 10)), cursor.sealed(batch('a', 11, 20))])
    // a is being sent; b, the next batch, is sealed; the process dies.
    await cursor.sealed(batch('b', 21, 30))
    await cursor.close()

    const restarted = new SinkCursor(path, silentLogger)
    await restarted.recover()
    const missing = []
    for (let seq = 11; seq <= 30; seq++) if (!restartHas(restarted, seq)) missing.push(seq)
    expect(missing).toEqual([])
    await restarted.close()
  })
})
