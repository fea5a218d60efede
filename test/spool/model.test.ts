// Property-based model tests of the spool, in the spirit of Vector's disk-buffer model tests: random sequences of
// operations run against the real log (tiny segments, so every run crosses many of them) and against a plain model,
// and must agree after every step.
//   - SegmentLog + LogReader: appends, reads of random sizes, restarts and segment deletion; the reader hands out
//     every appended record once, in order, with no gap, and numbers survive restarts.
//   - SinkCursor: batches sealed in order and done in any order, with restarts; doneThrough is the end of the longest
//     done prefix, and a restart gives back exactly the batches sealed and not done.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Batch, LogEvent } from '../../src/event.js'
import {
  type DamageReport,
  type LogReader,
  SegmentLog,
  type SegmentLogOptions,
} from '../../src/spool/segment-log.js'
import { SinkCursor } from '../../src/spool/sink-cursor.js'
import { silentLogger, tempDir } from '../helpers.js'

const SEED = Number(process.env.MODEL_SEED ?? 20261122)
const RUNS = Number(process.env.MODEL_RUNS ?? 40)

const options: SegmentLogOptions = {
  segmentBytes: 300,
  fsync: 'never',
  maxRecordBytes: 4096,
  logger: silentLogger,
}

type LogOp =
  | { kind: 'append'; sizes: number[] }
  | { kind: 'read'; max: number }
  | { kind: 'restart' }
  | { kind: 'release' }

const logOp: fc.Arbitrary<LogOp> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      sizes: fc.array(fc.nat(120), { minLength: 1, maxLength: 6 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('read' as const), max: fc.integer({ min: 1, max: 10 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('release' as const) }) },
)

describe('spool model', () => {
  it('the log and its reader agree with a list: every record once, in order, numbers never reused', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(logOp, { minLength: 1, maxLength: 40 }), async (ops) => {
        const dir = await tempDir()
        let log = await SegmentLog.open(dir, options)
        // The model: every appended payload, by its number; and how far the reader has read.
        const model = new Map<number, string>()
        let next = 1
        let read = 1
        // Nothing is damaged here: a reader that reports damage has lost a record.
        const damage: DamageReport[] = []
        let reader: LogReader = log.reader(read, (report) => damage.push(report))
        for (const op of ops) {
          if (op.kind === 'append') {
            const payloads = op.sizes.map((size, i) => `${next + i}:${'x'.repeat(size)}`)
            const appended = log.append(payloads.map((p) => Buffer.from(p)))
            expect(appended.firstSeq).toBe(next)
            await appended.written
            for (const [i, p] of payloads.entries()) model.set(next + i, p)
            next += payloads.length
          } else if (op.kind === 'read') {
            const records = await reader.read(op.max, 1 << 20)
            for (const record of records) {
              expect(record.seq).toBe(read)
              expect(record.payload.toString()).toBe(model.get(read))
              read++
            }
            expect(records.length).toBe(Math.min(op.max, next - read + records.length))
          } else if (op.kind === 'restart') {
            await log.close()
            log = await SegmentLog.open(dir, options)
            expect(log.next).toBe(next)
            reader = log.reader(read, (report) => damage.push(report))
          } else {
            await log.deleteThrough(read - 1)
          }
        }
        // Whatever is left is read to the end, once, in order.
        for (
          let records = await reader.read(1000, 1 << 20);
          records.length > 0;
          records = await reader.read(1000, 1 << 20)
        ) {
          for (const record of records) expect(record.seq).toBe(read++)
        }
        expect(read).toBe(next)
        expect(damage).toEqual([])
        await log.close()
      }),
      { seed: SEED, numRuns: RUNS },
    )
  })

  it('a sink cursor agrees with a list of batches: doneThrough, and what a restart re-sends', async () => {
    const batchOf = (name: string, from: number, to: number): Batch => {
      const events: LogEvent[] = []
      for (let seq = from; seq <= to; seq++) events.push({ id: `e${seq}`, line: '{}', bytes: 3, seq })
      return { name, openedAt: new Date(0), events, bytes: events.length * 3 }
    }
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.array(fc.boolean(), { maxLength: 20 }),
        async (sizes, doneOrder, restarts) => {
          const path = `${await tempDir()}/sink.journal`
          let cursor = new SinkCursor(path, silentLogger)
          await cursor.recover()
          const batches: { batch: Batch; done: boolean }[] = []
          let seq = 1
          for (const [i, size] of sizes.entries()) {
            const batch = batchOf(`b${i}`, seq, seq + size - 1)
            seq += size
            await cursor.sealed(batch)
            batches.push({ batch, done: false })
          }
          for (const [i, pick] of doneOrder.entries()) {
            const open = batches.filter((b) => !b.done)
            if (open.length === 0) break
            const chosen = open[pick % open.length] as { batch: Batch; done: boolean }
            await cursor.done(chosen.batch)
            chosen.done = true
            if (restarts[i]) {
              // Done records are not synced; a clean close writes them, as the OS does after a process crash.
              await cursor.close()
              cursor = new SinkCursor(path, silentLogger)
              await cursor.recover()
            }
            let through = 0
            for (const b of batches) {
              if (!b.done) break
              through = b.batch.events.at(-1)?.seq ?? through
            }
            expect(cursor.doneThrough).toBe(through)
          }
          await cursor.close()
          const restarted = new SinkCursor(path, silentLogger)
          await restarted.recover()
          expect(
            restarted
              .pendingBatches()
              .map((p) => p.name)
              .sort(),
          ).toEqual(
            batches
              .filter((b) => !b.done)
              .map((b) => b.batch.name)
              .sort(),
          )
          expect(restarted.lastSealed).toBe(seq - 1)
          await restarted.close()
        },
      ),
      { seed: SEED, numRuns: RUNS },
    )
  })
})
