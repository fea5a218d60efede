import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  type Batch,
  countOf,
  createLogEvent,
  EventRun,
  type FormedBatch,
  formatEventId,
  type LogEvent,
  RunSlice,
} from '../../src/event.js'
import { batchJsonl } from '../../src/jsonl.js'
import { Batcher, type BatcherOptions } from '../../src/pipeline/batcher.js'
import { SlabPool } from '../../src/slabs.js'
import { makeEvents } from '../helpers.js'

/** A deliver function whose calls stay pending until the test settles them. */
function manualDeliver() {
  const batches: Batch[] = []
  const pending: (() => void)[] = []
  const deliver = (batch: Batch) =>
    new Promise<void>((resolve) => {
      batches.push(batch)
      pending.push(resolve)
    })
  return { batches, pending, deliver }
}

/** A deliver function that takes each batch at once and keeps it. */
function collectingDeliver() {
  const delivered: Batch[] = []
  const deliver = async (batch: Batch) => {
    delivered.push(batch)
  }
  return { delivered, deliver }
}

/** Limits that never seal a batch by themselves nor refuse an offer: the test's own settings decide. */
const UNBOUNDED = { flushIntervalMs: 60_000, maxBufferedEvents: 1e6, maxBufferedBytes: 1e9, concurrency: 1 }

function createBatcher(overrides: Partial<BatcherOptions> & Pick<BatcherOptions, 'deliver'>) {
  return new Batcher({
    instanceId: 'inst',
    maxBatchEvents: 10,
    maxBatchBytes: 1_000_000,
    flushIntervalMs: 5000,
    maxBufferedEvents: 100,
    maxBufferedBytes: 10_000_000,
    concurrency: 2,
    ...overrides,
  })
}

describe('Batcher', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('flushes when a batch reaches BATCH_SIZE entries', async () => {
    const sink = manualDeliver()
    const batcher = createBatcher({ deliver: sink.deliver })
    batcher.offer(makeEvents(25))
    await vi.advanceTimersByTimeAsync(0)
    expect(sink.batches.map((b) => b.events.length)).toEqual([10, 10])
    expect(batcher.bufferedEvents).toBe(25)
  })

  it('flushes before a batch would pass BATCH_BYTES', async () => {
    const sink = manualDeliver()
    const events = makeEvents(6, 'e', 100)
    const perEvent = events[0]?.bytes as number
    const batcher = createBatcher({ deliver: sink.deliver, maxBatchBytes: perEvent * 2 + 1 })
    batcher.offer(events)
    await vi.advanceTimersByTimeAsync(0)
    expect(sink.batches.map((b) => b.events.length)).toEqual([2, 2])
    for (const batch of sink.batches) expect(batch.bytes).toBeLessThanOrEqual(perEvent * 2 + 1)
  })

  it('takes an empty run (a `[]` body) as nothing: no part held, no age timer started', async () => {
    const sink = manualDeliver()
    const batcher = createBatcher({ deliver: sink.deliver, flushIntervalMs: 300 })
    for (let i = 0; i < 3; i++) batcher.offer(new EventRun(Buffer.alloc(0), 0, []))
    await vi.advanceTimersByTimeAsync(200)
    batcher.offer(makeEvents(1))
    // Sealed 300 ms after the entry, not 300 ms after the empty requests.
    await vi.advanceTimersByTimeAsync(250)
    expect(sink.batches).toHaveLength(0)
    await vi.advanceTimersByTimeAsync(50)
    expect(sink.batches.map((batch) => countOf(batch))).toEqual([1])
    expect((sink.batches[0] as FormedBatch).parts).toHaveLength(1)
  })

  it('keeps a run that fits whole as its batch part, with no slice, and slices only a run cut between batches', async () => {
    const sink = manualDeliver()
    const batcher = createBatcher({ deliver: sink.deliver, maxBatchEvents: 3 })
    const run = (text: string, count: number) =>
      new EventRun(Buffer.from(`{"t":"${text}"}\n`.repeat(count)), count, 0)
    const a = run('a', 1)
    const b = run('b', 3)
    batcher.offer(a)
    batcher.offer(b)
    batcher.flush()
    await vi.advanceTimersByTimeAsync(0)
    const [first, second] = sink.batches as FormedBatch[]
    // a whole, then the two lines of b that fit; b's last line in the next batch.
    expect(first?.parts[0]).toBe(a)
    expect(first?.parts[1]).toBeInstanceOf(RunSlice)
    expect(second?.parts.map((part) => part instanceof RunSlice)).toEqual([true])
    expect(batchJsonl(first as FormedBatch).toString()).toBe('{"t":"a"}\n{"t":"b"}\n{"t":"b"}\n')
    expect(batchJsonl(second as FormedBatch).toString()).toBe('{"t":"b"}\n')
    expect(first?.events.map((event) => event.line)).toEqual(['{"t":"a"}', '{"t":"b"}', '{"t":"b"}'])
  })

  it('flushes FLUSH_INTERVAL after the first entry of a batch, not after the last', async () => {
    const sink = manualDeliver()
    const batcher = createBatcher({ deliver: sink.deliver })
    batcher.offer(makeEvents(1, 'a'))
    await vi.advanceTimersByTimeAsync(4000)
    batcher.offer(makeEvents(1, 'b'))
    await vi.advanceTimersByTimeAsync(999)
    expect(sink.batches).toHaveLength(0)
    await vi.advanceTimersByTimeAsync(1)
    expect(sink.batches).toHaveLength(1)
    expect(sink.batches[0]?.events.map((e) => e.id)).toEqual(['a0', 'b0'])
  })

  it('close() flushes the open batch and waits for delivery', async () => {
    const delivered: Batch[] = []
    const batcher = createBatcher({
      deliver: async (batch) => {
        delivered.push(batch)
      },
    })
    batcher.offer(makeEvents(3))
    await batcher.close()
    expect(delivered.map((b) => b.events.length)).toEqual([3])
    expect(batcher.bufferedEvents).toBe(0)
    expect(batcher.bufferedBytes).toBe(0)
  })

  it('counts queued and in-flight batches against the bounds until they are delivered', async () => {
    const sink = manualDeliver()
    const batcher = createBatcher({ deliver: sink.deliver, maxBufferedEvents: 30, concurrency: 1 })
    batcher.offer(makeEvents(30))
    await vi.advanceTimersByTimeAsync(0)
    // One batch in flight, two queued behind it: all 30 still held.
    expect(sink.batches).toHaveLength(1)
    expect(batcher.hasRoomFor(1, 1)).toBe(false)
    sink.pending[0]?.()
    await vi.advanceTimersByTimeAsync(0)
    expect(batcher.bufferedEvents).toBe(20)
    expect(batcher.hasRoomFor(10, 1)).toBe(true)
    expect(batcher.hasRoomFor(11, 1)).toBe(false)
  })

  it('counts as saturated above 90% of either bound, and not once it drains below', async () => {
    const sink = manualDeliver()
    const batcher = createBatcher({ deliver: sink.deliver, maxBufferedEvents: 100, concurrency: 10 })
    batcher.offer(makeEvents(90))
    expect(batcher.isSaturated).toBe(false)
    batcher.offer(makeEvents(1))
    expect(batcher.isSaturated).toBe(true)
    await vi.advanceTimersByTimeAsync(0)
    sink.pending[0]?.()
    await vi.advanceTimersByTimeAsync(0)
    expect(batcher.bufferedEvents).toBe(81)
    expect(batcher.isSaturated).toBe(false)
    const byBytes = createBatcher({ deliver: sink.deliver, maxBufferedBytes: 1000, maxBatchEvents: 1000 })
    byBytes.offer(makeEvents(1, 'big', 950))
    expect(byBytes.isSaturated).toBe(true)
  })

  it('bounds bytes as well as entries', () => {
    const batcher = createBatcher({ deliver: async () => {}, maxBufferedBytes: 1000 })
    expect(batcher.hasRoomFor(1, 1000)).toBe(true)
    expect(batcher.hasRoomFor(1, 1001)).toBe(false)
  })

  it('writes at most SINK_CONCURRENCY batches at once', async () => {
    const sink = manualDeliver()
    const batcher = createBatcher({ deliver: sink.deliver, concurrency: 2 })
    batcher.offer(makeEvents(50))
    await vi.advanceTimersByTimeAsync(0)
    expect(sink.batches).toHaveLength(2)
    sink.pending[0]?.()
    await vi.advanceTimersByTimeAsync(0)
    expect(sink.batches).toHaveLength(3)
  })

  it('names batches uniquely and keeps the first entry time', async () => {
    const sink = manualDeliver()
    vi.setSystemTime(new Date('2026-03-04T05:06:07Z'))
    const batcher = createBatcher({ deliver: sink.deliver, maxBatchEvents: 1 })
    batcher.offer(makeEvents(3))
    await vi.advanceTimersByTimeAsync(0)
    expect(sink.batches.map((b) => b.name)).toEqual(['inst-000001', 'inst-000002'])
    expect(sink.batches[0]?.openedAt.toISOString()).toBe('2026-03-04T05:06:07.000Z')
  })
})

describe('Batcher: a request offered as one run', () => {
  /** A request: its lines (JSON strings, some with multi-byte characters) and their ids. */
  const requestArb = fc.array(
    fc.record({
      text: fc.string({ unit: fc.constantFrom('a', 'é', '€', '"', '😀'), maxLength: 40 }),
      builtIn: fc.boolean(),
    }),
    { minLength: 1, maxLength: 12 },
  )
  let nextNumber = 0
  const build = (request: { text: string; builtIn: boolean }[]) => {
    const first = nextNumber
    nextNumber += request.length
    const builtIn = request.every((line) => line.builtIn)
    const keys = request.map((_line, i) => (builtIn ? first + i : `app-${first + i}`))
    // Each line carries the id its event must have.
    const lines = request.map((line, i) => {
      const key = keys[i] as string | number
      return JSON.stringify({ id: typeof key === 'number' ? formatEventId(key) : key, text: line.text })
    })
    const run = new EventRun(
      Buffer.from(lines.map((line) => `${line}\n`).join('')),
      lines.length,
      builtIn ? first : keys,
    )
    return { run, events: run.events(), lines }
  }
  const batchesOf = async (
    requests: ReturnType<typeof build>[],
    asRuns: boolean,
    events: number,
    bytes: number,
  ) => {
    const { delivered, deliver } = collectingDeliver()
    const batcher = createBatcher({ ...UNBOUNDED, maxBatchEvents: events, maxBatchBytes: bytes, deliver })
    let held = 0
    for (const request of requests) {
      batcher.offer(asRuns ? request.run : request.events)
      held += request.events.length
      expect(batcher.bufferedEvents).toBeLessThanOrEqual(held)
    }
    batcher.flush()
    await batcher.onIdle()
    expect(batcher.bufferedEvents).toBe(0)
    expect(batcher.bufferedBytes).toBe(0)
    return delivered.map((batch) => ({
      name: batch.name,
      count: countOf(batch),
      bytes: batch.bytes,
      jsonl: batchJsonl(batch).toString(),
      events: batch.events.map((event: LogEvent) => ({ id: event.id, line: event.line, bytes: event.bytes })),
    }))
  }

  it('is cut into the same batches, with the same lines, ids and sizes, as its events offered one by one', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(requestArb, { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 20, max: 600 }),
        async (requests, maxEvents, maxBytes) => {
          const built = requests.map(build)
          const asRuns = await batchesOf(built, true, maxEvents, maxBytes)
          const asEvents = await batchesOf(built, false, maxEvents, maxBytes)
          expect(asRuns).toEqual(asEvents)
          // Every line once, in order, and each event's id is the one its line carries.
          const lines = built.flatMap((request) => request.lines)
          expect(asRuns.map((batch) => batch.jsonl).join('')).toBe(lines.map((line) => `${line}\n`).join(''))
          for (const batch of asRuns) {
            expect(batch.count).toBe(batch.events.length)
            expect(Buffer.byteLength(batch.jsonl)).toBe(batch.bytes)
            for (const event of batch.events) expect(JSON.parse(event.line).id).toBe(event.id)
          }
        },
      ),
      { numRuns: 300 },
    )
  })

  it('mixes with single events in one batch, in the order they were offered', async () => {
    const { delivered, deliver } = collectingDeliver()
    const batcher = createBatcher({ ...UNBOUNDED, maxBatchEvents: 100, deliver })
    const run = new EventRun(Buffer.from('{"a":1}\n{"a":2}\n'), 2, ['r1', 'r2'])
    batcher.offer([createLogEvent('s1', '{"s":1}')])
    batcher.offer(run)
    batcher.offer([createLogEvent('s2', '{"s":2}')])
    batcher.flush()
    await batcher.onIdle()
    expect(delivered).toHaveLength(1)
    const batch = delivered[0] as Batch
    expect(countOf(batch)).toBe(4)
    expect(batchJsonl(batch).toString()).toBe('{"s":1}\n{"a":1}\n{"a":2}\n{"s":2}\n')
    expect(batch.events.map((event) => event.id)).toEqual(['s1', 'r1', 'r2', 's2'])
  })
})

describe('Batcher: runs in reused slabs', () => {
  it("never lets a batch see another request's bytes, whatever the order of offers, sinks and deliveries", async () => {
    const commands = fc.array(
      fc.oneof(
        {
          weight: 3,
          arbitrary: fc.record({
            offer: fc.array(fc.string({ unit: fc.constantFrom('a', 'é', '"'), maxLength: 6 }), {
              minLength: 1,
              maxLength: 4,
            }),
          }),
        },
        { weight: 2, arbitrary: fc.record({ settle: fc.nat(), lane: fc.integer({ min: 0, max: 1 }) }) },
        { weight: 1, arbitrary: fc.record({ flush: fc.integer({ min: 0, max: 1 }) }) },
      ),
      { minLength: 40, maxLength: 120 },
    )
    let reused = 0
    await fc.assert(
      fc.asyncProperty(commands, fc.integer({ min: 1, max: 6 }), async (steps, maxEvents) => {
        // Slabs of 400 bytes and runs of up to 4 lines of about 20: a slab is reused after a few requests.
        const pool = new SlabPool({ slabBytes: 400, maxFree: 2 })
        const expected: string[] = []
        const lanes = [0, 1].map(() => {
          const pending: { batch: Batch; jsonl: string; resolve: () => void }[] = []
          const seen: string[] = []
          const batcher = createBatcher({
            ...UNBOUNDED,
            maxBatchEvents: maxEvents,
            maxBatchBytes: 200,
            concurrency: 3,
            deliver: (batch) =>
              new Promise<void>((resolve) => {
                // What a sink copies when its write starts.
                pending.push({ batch, jsonl: batchJsonl(batch).toString(), resolve })
              }),
          })
          return { batcher, pending, seen }
        })
        const settle = async (lane: (typeof lanes)[number], index: number) => {
          await Promise.resolve()
          const [item] = lane.pending.splice(index % Math.max(1, lane.pending.length), 1)
          if (!item) return
          // Still the same bytes when the write finishes, however many requests came since.
          expect(batchJsonl(item.batch).toString()).toBe(item.jsonl)
          lane.seen.push(item.jsonl)
          item.resolve()
          await new Promise((r) => setImmediate(r))
        }
        for (const step of steps) {
          if ('offer' in step) {
            const lines = step.offer.map((t, i) => JSON.stringify({ n: expected.length + i, t }))
            const bytes = lines.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0)
            const taken = pool.take(bytes)
            const chunk = taken ? taken.chunk : Buffer.allocUnsafeSlow(bytes)
            chunk.write(lines.map((line) => `${line}\n`).join(''))
            const run = new EventRun(chunk, lines.length, 0, taken?.slab)
            for (const lane of lanes) lane.batcher.offer(run)
            run.release()
            expected.push(...lines)
          } else if ('settle' in step) {
            await settle(lanes[step.lane] as (typeof lanes)[number], step.settle)
          } else {
            lanes[step.flush]?.batcher.flush()
          }
        }
        for (const lane of lanes) {
          lane.batcher.flush()
          await Promise.resolve()
          while (lane.pending.length > 0 || lane.batcher.bufferedEvents > 0) await settle(lane, 0)
          // Each sink got every line once. Batches run three at a time, so they may finish out of order.
          const got = lane.seen
            .join('')
            .split('\n')
            .filter((line) => line !== '')
          expect(got.map((line) => JSON.parse(line).n).sort((a, b) => a - b)).toEqual(
            expected.map((_, n) => n),
          )
          for (const line of got) expect(line).toBe(expected[JSON.parse(line).n])
        }
        reused += pool.stats.reused
      }),
      { numRuns: 300 },
    )
    // The property is about reuse: slabs were reused, about a hundred times over the runs (30 is a safe floor).
    expect(reused).toBeGreaterThan(30)
  })

  it('keeps the bytes of batches taken back at a shutdown deadline: their events are written out afterwards', async () => {
    const pool = new SlabPool({ slabBytes: 256, maxFree: 2 })
    const batcher = createBatcher({
      ...UNBOUNDED,
      maxBatchEvents: 2,
      deliver: () => new Promise<void>(() => {}), // the sink hangs
    })
    const offer = (text: string) => {
      const line = `{"t":"${text}"}\n`
      const taken = pool.take(line.length)
      taken?.chunk.write(line)
      const run = new EventRun(taken?.chunk as Buffer, 1, ['x'], taken?.slab)
      batcher.offer(run)
      run.release()
    }
    for (let i = 0; i < 6; i++) offer(`first-${i}`)
    await Promise.resolve()
    const taken = batcher.abandonQueued()
    // Requests keep coming (to another batcher) and fill slabs before the dead letters are written.
    for (let i = 0; i < 40; i++) {
      const line = `{"t":"later-${i}"}\n`
      const t = pool.take(line.length)
      t?.chunk.write(line)
      new EventRun(t?.chunk as Buffer, 1, ['y'], t?.slab).release()
    }
    const lines = taken.flatMap((batch) => batch.events.map((event) => JSON.parse(event.line).t))
    expect(lines).toEqual(['first-2', 'first-3', 'first-4', 'first-5'])
  })
})
