// The batcher must let go of a batch once it is delivered, even while its queue stays busy: p-queue keeps the tasks
// it has started in its array until it compacts them, and a task holding its batch kept up to 100 delivered
// batches alive (100 MiB at the file sink's 1 MiB batches, and an out-of-memory crash under a 128 MiB heap).
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import type { Batch } from '../../src/event.js'
import { Batcher } from '../../src/pipeline/batcher.js'
import { makeEvents } from '../helpers.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

describe('Batcher memory', () => {
  it('holds no delivered batch while later batches are still queued', async () => {
    const delivered: WeakRef<Batch>[] = []
    let release: (() => void) | undefined
    const blocked = new Promise<void>((resolve) => {
      release = resolve
    })
    const batcher = new Batcher({
      instanceId: 'mem',
      maxBatchEvents: 10,
      maxBatchBytes: 1_000_000,
      flushIntervalMs: 60_000,
      maxBufferedEvents: 10_000,
      maxBufferedBytes: 100_000_000,
      concurrency: 1,
      // Batch 20 stays in delivery, so that batch 21 is still queued: the queue never drains meanwhile.
      deliver: async (batch) => {
        delivered.push(new WeakRef(batch))
        if (delivered.length === 20) await blocked
      },
    })
    batcher.offer(makeEvents(210))
    for (let i = 0; i < 100 && delivered.length < 20; i++)
      await new Promise((resolve) => setImmediate(resolve))
    expect(delivered).toHaveLength(20)
    gc()
    await new Promise((resolve) => setImmediate(resolve))
    gc()
    // The first 19 are delivered and released; only the one in delivery (and the queued one) may be held.
    expect(delivered.slice(0, 19).filter((ref) => ref.deref() !== undefined)).toHaveLength(0)
    release?.()
    await batcher.close()
  })
})
