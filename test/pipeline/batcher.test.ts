import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Batch } from '../../src/event.js'
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
