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
} from '../../src/event.js'
import { batchJsonl } from '../../src/jsonl.js'
import { Batcher, type BatcherOptions } from '../../src/pipeline/batcher.js'
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
    const delivered: Batch[] = []
    const batcher = new Batcher({
      instanceId: 'inst',
      maxBatchEvents: events,
      maxBatchBytes: bytes,
      flushIntervalMs: 60_000,
      maxBufferedEvents: 1e6,
      maxBufferedBytes: 1e9,
      concurrency: 1,
      deliver: async (batch) => {
        delivered.push(batch)
      },
    })
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
    const delivered: Batch[] = []
    const batcher = new Batcher({
      instanceId: 'inst',
      maxBatchEvents: 100,
      maxBatchBytes: 1e6,
      flushIntervalMs: 60_000,
      maxBufferedEvents: 1e6,
      maxBufferedBytes: 1e9,
      concurrency: 1,
      deliver: async (batch) => {
        delivered.push(batch)
      },
    })
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
