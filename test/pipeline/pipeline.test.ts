import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type Logger, pino } from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createDeadLetterStore } from '../../src/delivery/dead-letter.js'
import {
  InputError,
  PartialWriteError,
  PermanentError,
  QueueFullError,
  ShuttingDownError,
} from '../../src/errors.js'
import { type Batch, EventRun, type LogEvent } from '../../src/event.js'
import { batchJsonl } from '../../src/jsonl.js'
import { Pipeline, type PipelineOptions } from '../../src/pipeline/index.js'
import type { Sink } from '../../src/sinks/sink.js'
import { SlabPool } from '../../src/slabs.js'
import { Spool } from '../../src/spool/index.js'
import {
  catchError,
  listFiles,
  makeEvents,
  readJsonlTree,
  silentLogger,
  TEST_BATCHING,
  tempDir,
} from '../helpers.js'
import { refuseSeals } from '../spool/journal-faults.js'

function recordingSink(name: string, write?: (batch: Batch) => Promise<void>) {
  const batches: Batch[] = []
  let closed = false
  const sink: Sink = {
    name,
    async write(batch, options) {
      await write?.(batch)
      options.signal.throwIfAborted()
      batches.push(batch)
    },
    async close() {
      closed = true
    },
  }
  return { sink, batches, isClosed: () => closed }
}

/** Quick retries: the tests' default (batching: TEST_BATCHING, test/helpers.ts). */
const RETRY: PipelineOptions['retry'] = {
  initialBackoffMs: 1,
  maxBackoffMs: 5,
  maxElapsedMs: 60_000,
  attemptTimeoutMs: 60_000,
}

async function createPipeline(
  sinks: Sink[],
  overrides: Partial<PipelineOptions['batching']> = {},
  options: { deadLetterDir?: string; logger?: Logger } = {},
) {
  const deadLetterDir = options.deadLetterDir ?? join(await tempDir(), 'dead-letter')
  const pipeline = new Pipeline({
    sinks,
    batching: { ...TEST_BATCHING, ...overrides },
    retry: RETRY,
    deadLetter: createDeadLetterStore(deadLetterDir),
    logger: options.logger ?? silentLogger,
    retryAfterMs: 1000,
  })
  return { pipeline, deadLetterDir }
}

describe('Pipeline', () => {
  it('delivers every accepted event to every sink, and reports it', async () => {
    const a = recordingSink('a')
    const b = recordingSink('b')
    const { pipeline } = await createPipeline([a.sink, b.sink])
    pipeline.accept(makeEvents(25))
    const summary = await pipeline.drain(60_000)
    for (const sink of [a, b]) {
      expect(sink.batches.flatMap((batch) => batch.events.map((e) => e.id))).toEqual(
        makeEvents(25).map((e) => e.id),
      )
      expect(sink.isClosed()).toBe(true)
    }
    expect(summary).toEqual({ delivered: 50, dead_lettered: 0, dead_letter_failed: 0, timed_out: false })
    expect(pipeline.stats().a).toMatchObject({
      delivered_events: 25,
      delivered_batches: 3,
      buffered_events: 0,
    })
  })

  it('takes a request whole or not at all: one full sink refuses it for every sink', async () => {
    let release: () => void = () => {}
    const stalled = new Promise<void>((resolve) => {
      release = resolve
    })
    const slow = recordingSink('slow', () => stalled)
    const fast = recordingSink('fast')
    const { pipeline } = await createPipeline([fast.sink, slow.sink], { maxBufferedEvents: 30 })
    pipeline.accept(makeEvents(30, 'first'))
    await new Promise((resolve) => setImmediate(resolve))
    // The fast sink has drained; the slow one still holds 30, so 5 more cannot be taken anywhere.
    expect(pipeline.stats().fast?.buffered_events).toBe(0)
    const error = catchError(() => pipeline.accept(makeEvents(5, 'second')))
    expect(error).toBeInstanceOf(QueueFullError)
    expect(error.message).toMatch(/buffer of sink "slow" is full \(30 entries/)
    expect((error as QueueFullError).retryAfterMs).toBe(1000)
    expect(pipeline.acceptedEvents).toBe(30)
    release()
    await pipeline.drain(60_000)
    expect(fast.batches.flatMap((b) => b.events).some((e) => e.id.startsWith('second'))).toBe(false)
  })

  describe('whenNotSaturated: a full buffer that a delivering sink is emptying is waited on', () => {
    afterEach(() => {
      vi.useRealTimers()
    })

    /** A sink whose writes finish when the test says, one at a time. */
    function gatedSink(name: string) {
      const gates: (() => void)[] = []
      let open = false
      const sink = recordingSink(name, () =>
        open ? Promise.resolve() : new Promise<void>((resolve) => gates.push(resolve)),
      )
      /** Finishes every batch waiting, and lets every later one through at once. */
      const openAll = () => {
        open = true
        for (const finish of gates.splice(0)) finish()
      }
      return { ...sink, finishOne: () => gates.shift()?.(), pending: () => gates.length, openAll }
    }

    it('resolves as soon as a batch finishes and makes room, without waiting out its time', async () => {
      const gated = gatedSink('a')
      const { pipeline } = await createPipeline([gated.sink], { maxBufferedEvents: 20 })
      expect(pipeline.isSaturated()).toBe(false)
      pipeline.accept(makeEvents(10))
      // At the high-water mark (90%) and not past it: not saturated; past it, saturated, and the check agrees with
      // the refusal the sources make.
      pipeline.accept(makeEvents(8))
      expect(pipeline.isSaturated()).toBe(false)
      expect(() => pipeline.assertNotSaturated()).not.toThrow()
      pipeline.accept(makeEvents(2))
      expect(pipeline.isSaturated()).toBe(true)
      expect(() => pipeline.assertNotSaturated()).toThrow(QueueFullError)
      let settled: string | undefined
      const waiting = pipeline.whenNotSaturated(3_600_000).then(
        () => (settled = 'room'),
        (err: Error) => (settled = err.name),
      )
      await new Promise((resolve) => setImmediate(resolve))
      expect(settled).toBeUndefined()
      expect(gated.pending()).toBe(2)
      gated.finishOne()
      await waiting
      expect(settled).toBe('room')
      expect(pipeline.stats().a?.buffered_events).toBe(10)
      gated.finishOne()
      await pipeline.drain(60_000)
    })

    it('refuses with the full buffer once its time is out, and at once for a sink that is failing', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] })
      const gated = gatedSink('a')
      const { pipeline } = await createPipeline([gated.sink], { maxBufferedEvents: 20 })
      pipeline.accept(makeEvents(20))
      const waited = pipeline.whenNotSaturated(1000).catch((err: unknown) => err)
      await vi.advanceTimersByTimeAsync(999)
      let outcome: unknown
      void waited.then((err) => (outcome = err))
      await Promise.resolve()
      expect(outcome).toBeUndefined()
      await vi.advanceTimersByTimeAsync(1)
      expect(await waited).toBeInstanceOf(QueueFullError)

      // A sink whose last attempt failed is not emptying its buffer: no wait changes the answer.
      const failing = recordingSink('b', async () => {
        throw new Error('503 from the destination')
      })
      const second = await createPipeline([failing.sink], { maxBufferedEvents: 20 })
      second.pipeline.accept(makeEvents(20))
      await vi.advanceTimersByTimeAsync(0)
      expect(second.pipeline.stats().b?.healthy).toBe(false)
      const started = performance.now()
      expect(await second.pipeline.whenNotSaturated(1000).catch((err: unknown) => err)).toBeInstanceOf(
        QueueFullError,
      )
      expect(performance.now() - started).toBe(0)
    })

    it('wakes, in order, only as many waiting requests as the room can take, and more as they are taken', async () => {
      const gated = gatedSink('a')
      const { pipeline } = await createPipeline([gated.sink], { maxBufferedEvents: 20 })
      pipeline.accept(makeEvents(10, 'r1-'))
      pipeline.accept(makeEvents(10, 'r2-'))
      const woken: number[] = []
      const waiting = Array.from({ length: 5 }, (_, i) =>
        pipeline.whenNotSaturated(3_600_000).then(() => woken.push(i)),
      )
      const settle = () => new Promise((resolve) => setImmediate(resolve))
      await settle()
      expect(woken).toEqual([])
      // One batch of 10 written: room for one request of the size they have been (10), and the first waiter has it.
      gated.finishOne()
      await settle()
      expect(woken).toEqual([0])
      // It takes the room: the buffer is full again, and no one else is woken until the next batch is written.
      pipeline.accept(makeEvents(10, 'w0-'))
      await settle()
      expect(woken).toEqual([0])
      gated.finishOne()
      await settle()
      expect(woken).toEqual([0, 1])
      // A request smaller than the room leaves some: the next waiter goes in at once.
      pipeline.accept(makeEvents(2, 'w1-'))
      await settle()
      expect(woken).toEqual([0, 1, 2])
      pipeline.stopAccepting()
      await Promise.allSettled(waiting)
      // The last, 2-entry batch is sealed by the drain itself: with gates opened one by one it waited on one nobody
      // opened, and the drain sat out its whole 60 s deadline.
      gated.openAll()
      await pipeline.drain(60_000)
      expect(pipeline.stats().a?.delivered_events).toBe(32)
    })

    it('answers a waiting request 503 as soon as accepting stops', async () => {
      const gated = gatedSink('a')
      const { pipeline } = await createPipeline([gated.sink], { maxBufferedEvents: 20 })
      pipeline.accept(makeEvents(20))
      const waited = pipeline.whenNotSaturated(3_600_000).catch((err: unknown) => err)
      pipeline.stopAccepting()
      expect(await waited).toBeInstanceOf(ShuttingDownError)
      gated.finishOne()
      gated.finishOne()
      await pipeline.drain(60_000)
    })
  })

  it('refuses with 413 a request that could never fit the buffer', async () => {
    const { pipeline } = await createPipeline([recordingSink('a').sink], { maxBufferedEvents: 10 })
    const error = catchError(() => pipeline.accept(makeEvents(11)))
    expect(error).toBeInstanceOf(InputError)
    expect(error).toMatchObject({ statusCode: 413, code: 'REQUEST_TOO_LARGE' })
  })

  it('dead-letters a batch that fails permanently, with the reason, and keeps delivering the rest', async () => {
    let calls = 0
    const flaky = recordingSink('flaky', async () => {
      if (++calls === 1) throw new PermanentError('bucket is gone')
    })
    const { pipeline, deadLetterDir } = await createPipeline([flaky.sink])
    pipeline.accept(makeEvents(10, 'first'))
    pipeline.accept(makeEvents(10, 'second'))
    const summary = await pipeline.drain(60_000)
    expect(summary).toMatchObject({ delivered: 10, dead_lettered: 10 })
    const records = await readJsonlTree(deadLetterDir)
    expect(records).toHaveLength(10)
    expect(records[0]).toMatchObject({
      sink: 'flaky',
      reason: 'permanent after 1 attempt(s): bucket is gone',
      attempts: 1,
      entry: { event_id: 'first0' },
    })
    expect(pipeline.stats().flaky).toMatchObject({
      dead_lettered_events: 10,
      last_error: { message: 'bucket is gone' },
    })
    const [file] = await listFiles(deadLetterDir)
    expect(file).toMatch(/dead-letter\/flaky\/\d{4}\/\d{2}\/\d{2}\/\d{6}-inst-000001\.1\.jsonl$/)
  })

  it('dead-letters rows a sink rejected, each with its own reason, and delivers the rest', async () => {
    let calls = 0
    const picky = recordingSink('picky', async (batch) => {
      if (++calls > 1) return
      const [first, second, ...rest] = batch.events
      throw new PartialWriteError(
        [
          { event: first as LogEvent, reason: 'invalid: no such field: colour' },
          { event: second as LogEvent, reason: 'row larger than 1 MB' },
        ],
        rest,
        new Error('stopped'),
      )
    })
    const { pipeline, deadLetterDir } = await createPipeline([picky.sink])
    pipeline.accept(makeEvents(5))
    const summary = await pipeline.drain(60_000)
    expect(summary).toMatchObject({ delivered: 3, dead_lettered: 2 })
    expect(picky.batches[0]?.events.map((e) => e.id)).toEqual(['e2', 'e3', 'e4'])
    const records = await readJsonlTree(deadLetterDir)
    expect(records.map((r) => [(r.entry as { event_id: string }).event_id, r.reason])).toEqual([
      ['e0', 'invalid: no such field: colour'],
      ['e1', 'row larger than 1 MB'],
    ])
  })

  it('refuses new entries once draining', async () => {
    const { pipeline } = await createPipeline([recordingSink('a').sink])
    pipeline.stopAccepting()
    expect(() => pipeline.accept(makeEvents(1))).toThrow(ShuttingDownError)
  })

  it('at the drain deadline, dead-letters what is still undelivered and reports it', async () => {
    const down = recordingSink('down', async () => {
      throw new Error('503 service unavailable')
    })
    const { pipeline, deadLetterDir } = await createPipeline([down.sink])
    pipeline.accept(makeEvents(25))
    const summary = await pipeline.drain(200)
    expect(summary).toEqual({ delivered: 0, dead_lettered: 25, dead_letter_failed: 0, timed_out: true })
    const records = await readJsonlTree(deadLetterDir)
    expect(records.map((r) => (r.entry as { event_id: string }).event_id).sort()).toEqual(
      makeEvents(25)
        .map((e) => e.id)
        .sort(),
    )
    expect(String(records[0]?.reason)).toMatch(/^shutdown after \d+ attempt\(s\)/)
    expect(down.isClosed()).toBe(true)
  })

  it('logs the entries themselves when even the dead-letter store fails', async () => {
    const dir = await tempDir()
    const lines: string[] = []
    const logger = pino({ level: 'error' }, { write: (line: string) => lines.push(line) })
    // A dead-letter directory below a regular file cannot be created.
    const blocker = join(dir, 'file')
    await writeFile(blocker, 'x')
    const { pipeline } = await createPipeline(
      [recordingSink('bad', async () => Promise.reject(new PermanentError('no'))).sink],
      {},
      { deadLetterDir: join(blocker, 'dead-letter'), logger },
    )
    pipeline.accept(makeEvents(2, 'kept'))
    const summary = await pipeline.drain(60_000)
    expect(summary.dead_letter_failed).toBe(2)
    const fatal = lines.map((l) => JSON.parse(l)).find((l) => l.level === 60)
    expect(fatal.entries.map((e: string) => JSON.parse(e).event_id)).toEqual(['kept0', 'kept1'])
    await expect(readFile(blocker, 'utf8')).resolves.toBe('x')
  })

  it('counts and logs as lost a batch whose run was reused under it (a hold bug), instead of dropping it unseen', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'error' }, { write: (line: string) => lines.push(line) })
    const written: string[] = []
    const sink: Sink = {
      name: 'file-like',
      async write(batch) {
        written.push(batchJsonl(batch).toString())
      },
      async close() {},
    }
    const { pipeline } = await createPipeline([sink], {}, { logger })
    const pool = new SlabPool({ slabBytes: 256, maxFree: 1 })
    const runOf = (text: string) => {
      const line = `{"event_id":"${text}"}\n`
      const taken = pool.take(line.length)
      taken?.chunk.write(line)
      return new EventRun(taken?.chunk as Buffer, 1, [text], taken?.slab)
    }
    const run = runOf('victim')
    pipeline.accept(run)
    run.release()
    // The bug: one release too many, while the batch still holds the run. Its slab is reused by later requests.
    run.release()
    for (let i = 0; i < 12; i++) runOf(`later-${i}`).release()
    expect(pool.stats.reused).toBeGreaterThan(0)
    const summary = await pipeline.drain(60_000)
    expect(written).toEqual([])
    expect(summary.delivered).toBe(0)
    expect(pipeline.stats()['file-like']).toMatchObject({
      lost_events: 1,
      dead_lettered_events: 0,
      healthy: false,
    })
    const fatal = lines.map((l) => JSON.parse(l)).find((l) => l.level === 60)
    expect(fatal).toMatchObject({ sink: 'file-like', events: 1 })
    expect(fatal.msg).toMatch(/entries lost/)
    // Nothing of another request's bytes was written anywhere, not even as a dead letter.
    expect(summary.dead_lettered).toBe(0)
  })
})

describe('pipeline with a spool whose append fails', () => {
  it('answers SPOOL_WRITE_FAILED, and dead-letters the entries for a sink that would have read them from disk', async () => {
    const dir = await tempDir()
    const spool = await Spool.open({
      dir: join(dir, 'spool'),
      fsync: 'never',
      maxBytes: 1024 ** 2,
      maxEntryBytes: 1024,
      sinks: ['fast', 'slow'],
      logger: silentLogger,
    })
    let release: () => void = () => {}
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const fast = recordingSink('fast')
    const slow = recordingSink('slow', () => held)
    const deadLetterDir = join(dir, 'dead-letter')
    const pipeline = new Pipeline({
      sinks: [fast.sink, slow.sink],
      spool,
      batching: {
        instanceId: 'inst',
        maxBatchEvents: 10,
        maxBatchBytes: 1_000_000,
        flushIntervalMs: 60_000,
        maxBufferedEvents: 10,
        maxBufferedBytes: 10_000_000,
        concurrency: 1,
      },
      retry: { initialBackoffMs: 1, maxBackoffMs: 5, maxElapsedMs: 60_000, attemptTimeoutMs: 60_000 },
      deadLetter: createDeadLetterStore(deadLetterDir),
      logger: silentLogger,
      retryAfterMs: 1000,
    })
    // Ten entries fill a batch for each sink; the slow sink holds its batch, so it has no room for more.
    await pipeline.accept(makeEvents(10, 'first'))
    await vi.waitFor(() => expect(pipeline.stats().fast?.buffered_events).toBe(0))
    expect(pipeline.stats().slow?.buffered_events).toBe(10)
    const append = spool.append.bind(spool)
    spool.append = (events) => {
      const result = append(events)
      return { ...result, written: result.written.then(() => Promise.reject(new Error('disk gone'))) }
    }
    const error = await pipeline.accept(makeEvents(5, 'second'))?.catch((err: unknown) => err)
    expect(error).toMatchObject({ code: 'SPOOL_WRITE_FAILED', message: expect.stringContaining('disk gone') })

    const deadLettered = await readJsonlTree(join(deadLetterDir, 'slow'))
    expect(deadLettered.map((r) => (r.entry as { event_id: string }).event_id)).toEqual(
      makeEvents(5, 'second').map((e) => e.id),
    )
    expect(await listFiles(join(deadLetterDir, 'fast'))).toEqual([])
    release()
    await pipeline.drain(10_000)
    // The fast sink took the five in memory; the slow one never sees them: each accounts for them once.
    expect(fast.batches.flatMap((b) => b.events.map((e) => e.id))).toHaveLength(15)
    expect(slow.batches.flatMap((b) => b.events.map((e) => e.id))).toEqual(
      makeEvents(10, 'first').map((e) => e.id),
    )
    await spool.close()
  })
})

/** A pipeline with one recording sink and a spool under `dir` (its batches of 10 are journaled per sink). */
async function spooledPipeline(dir: string) {
  const open = () =>
    Spool.open({
      dir: join(dir, 'spool'),
      fsync: 'always',
      maxBytes: 1024 ** 2,
      maxEntryBytes: 1024,
      sinks: ['file'],
      logger: silentLogger,
    })
  const spool = await open()
  const sink = recordingSink('file')
  const pipeline = new Pipeline({
    sinks: [sink.sink],
    spool,
    batching: TEST_BATCHING,
    retry: RETRY,
    deadLetter: createDeadLetterStore(join(dir, 'dead-letter')),
    logger: silentLogger,
    retryAfterMs: 1000,
  })
  /** What a restart on the same spool would hand the sink. */
  const afterRestart = async () => {
    const restarted = await open()
    const recovered = (await restarted.recover()).get('file')
    await restarted.close()
    return recovered
  }
  return { spool, sink, pipeline, afterRestart }
}

describe('pipeline with a spool whose sink journal cannot be written', () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it('sends no batch before its seal is journaled, then sends each once, and a restart re-sends none', async () => {
    const { spool, sink, pipeline, afterRestart } = await spooledPipeline(await tempDir())
    // The seals fail (a full disk) until `healed`: the spool's log itself is fine.
    let healed = false
    const seals = refuseSeals(() => !healed)
    await pipeline.accept(makeEvents(30, 'held'))
    await vi.waitFor(() => expect(seals.refused).toBeGreaterThanOrEqual(6))
    expect(sink.batches).toEqual([])
    expect(pipeline.stats().file).toMatchObject({
      healthy: false,
      last_error: { message: expect.stringContaining('no space left on device') },
    })

    healed = true
    await vi.waitFor(() => expect(sink.batches.flatMap((b) => b.events)).toHaveLength(30))
    expect(sink.batches.flatMap((b) => b.events.map((e) => e.id)).sort()).toEqual(
      makeEvents(30, 'held')
        .map((e) => e.id)
        .sort(),
    )
    await pipeline.drain(10_000)
    await spool.close()
    vi.restoreAllMocks()
    // Every batch was journaled before it was sent, and done after: a restart has nothing to re-send.
    expect((await afterRestart())?.batches).toEqual([])
  })

  it('keeps the batches still unsealed at the shutdown deadline in the spool, says so, and a restart reads them', async () => {
    const { spool, sink, pipeline, afterRestart } = await spooledPipeline(await tempDir())
    refuseSeals(() => true)
    await pipeline.accept(makeEvents(30, 'held'))
    const summary = await pipeline.drain(400)
    expect(sink.batches).toEqual([])
    expect(summary).toMatchObject({ delivered: 0, dead_lettered: 0, timed_out: true, left_in_spool: 30 })
    await spool.close()
    vi.restoreAllMocks()
    expect(await afterRestart()).toMatchObject({ batches: [], resumeFrom: 1 })
  })
})

describe('pipeline with a spool, drained while an append is under way', () => {
  it('delivers the entries still being appended when the drain starts, instead of leaving them for the next start', async () => {
    const { spool, sink, pipeline, afterRestart } = await spooledPipeline(await tempDir())
    // Not awaited: the request still waits for its entries to be on disk when the drain (SIGTERM) begins.
    const taken = pipeline.accept(makeEvents(5, 'late'))
    const summary = await pipeline.drain(10_000)
    await taken
    expect(sink.batches.flatMap((b) => b.events.map((e) => e.id))).toEqual(
      makeEvents(5, 'late').map((e) => e.id),
    )
    expect(summary.delivered).toBe(5)
    await spool.close()
    expect((await afterRestart())?.batches ?? []).toEqual([])
  })
})
