// Issue 10, finding 6: the shutdown deadline fires while a write is past its point of no return (a file rename, the
// last byte of an upload). The batch lands; it must then count as delivered and must not also be dead-lettered, or
// the counters disagree with the destination and a replay of the dead letters duplicates it. In process: a sink that
// finishes its write a moment after the deadline, ignoring the abort, is the race made certain.
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createDeadLetterStore } from '../../src/delivery/dead-letter.js'
import type { Batch } from '../../src/event.js'
import { Pipeline } from '../../src/pipeline/index.js'
import type { Sink } from '../../src/sinks/sink.js'
import { listFiles, makeEvents, silentLogger, tempDir } from '../helpers.js'

function pipelineWith(sink: Sink, deadLetterDir: string, settleOnShutdownMs: number) {
  return new Pipeline({
    sinks: [sink],
    batching: {
      instanceId: 'race',
      maxBatchEvents: 10,
      maxBatchBytes: 1_000_000,
      flushIntervalMs: 60_000,
      maxBufferedEvents: 100,
      maxBufferedBytes: 10_000_000,
      concurrency: 1,
    },
    retry: {
      initialBackoffMs: 1,
      maxBackoffMs: 5,
      maxElapsedMs: 60_000,
      attemptTimeoutMs: 60_000,
      settleOnShutdownMs,
    },
    deadLetter: createDeadLetterStore(deadLetterDir),
    logger: silentLogger,
    retryAfterMs: 1000,
  })
}

describe('fault: the deadline races a write that is landing', () => {
  it('a batch that lands just after the deadline counts as delivered, and is not dead-lettered', async () => {
    const landed: Batch[] = []
    let release: () => void = () => {}
    const sink: Sink = {
      name: 'slow',
      // Past its point of no return: finishes when released, whatever the signal says.
      write: (batch) =>
        new Promise<void>((resolve) => {
          release = () => {
            landed.push(batch)
            resolve()
          }
        }),
      async close() {},
    }
    const deadLetterDir = join(await tempDir(), 'dead-letter')
    const pipeline = pipelineWith(sink, deadLetterDir, 5_000)
    pipeline.accept(makeEvents(10))
    // The drain's deadline (a 400 ms budget less its reserve) passes with the write still under way; it lands then.
    const drained = pipeline.drain(400)
    setTimeout(() => release(), 500)
    const summary = await drained
    expect(landed.flatMap((b) => b.events.map((e) => e.id))).toHaveLength(10)
    expect(summary).toMatchObject({ delivered: 10, dead_lettered: 0, timed_out: true })
    expect(await listFiles(deadLetterDir)).toEqual([])
  })

  it('a write still undecided when its moment is over is dead-lettered, once', async () => {
    const sink: Sink = { name: 'hung', write: () => new Promise<void>(() => {}), async close() {} }
    const deadLetterDir = join(await tempDir(), 'dead-letter')
    const pipeline = pipelineWith(sink, deadLetterDir, 50)
    pipeline.accept(makeEvents(10))
    const summary = await pipeline.drain(400)
    expect(summary).toMatchObject({ delivered: 0, dead_lettered: 10, timed_out: true })
    expect(await listFiles(deadLetterDir)).toHaveLength(1)
  })
})
