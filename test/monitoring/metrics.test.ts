// /metrics against the pipeline's own numbers: every counter /health shows reads the same, dead letters split by
// reason add up to /health's count, bytes sent are the delivered entries' bytes, and each write attempt is timed.
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.js'
import { createDeadLetterStore } from '../../src/delivery/dead-letter.js'
import { PartialWriteError, PermanentError } from '../../src/errors.js'
import type { Batch } from '../../src/event.js'
import { createMetrics } from '../../src/metrics/index.js'
import { Pipeline } from '../../src/pipeline/index.js'
import type { Sink, StartedSink } from '../../src/sinks/sink.js'
import { parseExposition, type Sample, sampleValue } from '../../src/top/exposition.js'
import {
  makeEvents,
  postAccepted,
  silentLogger,
  TEST_BATCHING,
  tempDir,
  testConfig,
  until,
} from '../helpers.js'

const settings = { BUFFER_MAX_EVENTS: 100, BUFFER_MAX_BYTES: 10_000_000, SPOOL_DIR: '', SPOOL_MAX_BYTES: 0 }
const sink = (id: string) => ({ component_kind: 'sink', component_id: id })

/** A sink whose every write runs `write`; it records the batches that succeeded. */
function scriptedSink(name: string, write: (batch: Batch, signal: AbortSignal) => Promise<void>) {
  const delivered: Batch[] = []
  const testSink: Sink = {
    name,
    async write(batch, { signal }) {
      await write(batch, signal)
      delivered.push(batch)
    },
    async close() {},
  }
  return { sink: testSink, delivered }
}

function sum(samples: readonly Sample[], name: string, labels: Record<string, string>): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((total, s) => total + s.value, 0)
}

describe('metrics from the pipeline', () => {
  it('agree with /health, split dead letters by reason, and count bytes and write attempts', async () => {
    const metrics = createMetrics(settings)
    const ok = scriptedSink('ok', async () => {})
    // Rejects every even-numbered entry for good: those are dead-lettered as "rejected", the rest delivered.
    const picky = scriptedSink('picky', async (batch) => {
      const rejected = batch.events.filter((_, i) => i % 2 === 0)
      throw new PartialWriteError(
        rejected.map((event) => ({ event, reason: 'invalid: bad row' })),
        [],
      )
    })
    const gone = scriptedSink('gone', async () => {
      throw new PermanentError('bucket is gone')
    })
    const failing = scriptedSink('failing', async () => {
      throw new Error('503 Service Unavailable')
    })
    // Never finishes on its own: the drain deadline aborts it, and its entries are dead-lettered as "shutdown".
    const hanging = scriptedSink(
      'hanging',
      (_batch, signal) =>
        new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
    )
    const all = [ok, picky, gone, failing, hanging]
    const pipeline = new Pipeline({
      sinks: all.map((s) => metrics.instrument(s.sink)),
      batching: TEST_BATCHING,
      retry: { initialBackoffMs: 1, maxBackoffMs: 2, maxElapsedMs: 30, attemptTimeoutMs: 60_000 },
      deadLetter: createDeadLetterStore(join(await tempDir(), 'dead-letter')),
      logger: silentLogger,
      retryAfterMs: 1000,
      observer: metrics.observer,
    })
    metrics.bind({ pipeline, refused: { BUFFER_FULL: 2, INVALID_JSON: 1 } })
    const events = makeEvents(20)
    pipeline.accept(events)
    const summary = await pipeline.drain(500)
    expect(summary.timed_out).toBe(true)

    const samples = parseExposition(await metrics.render())
    const stats = pipeline.stats()
    expect(sampleValue(samples, 'sidelog_component_received_events_total', { component_id: 'http' })).toBe(20)
    expect(
      sampleValue(samples, 'sidelog_component_refused_requests_total', { error_code: 'BUFFER_FULL' }),
    ).toBe(2)
    for (const {
      sink: { name },
    } of all) {
      const s = stats[name]
      const at = sink(name)
      expect(sampleValue(samples, 'sidelog_component_sent_events_total', at)).toBe(s?.delivered_events)
      expect(sampleValue(samples, 'sidelog_component_sent_batches_total', at)).toBe(s?.delivered_batches)
      expect(sampleValue(samples, 'sidelog_component_retries_total', at)).toBe(s?.retries)
      expect(sum(samples, 'sidelog_component_dead_lettered_events_total', at)).toBe(s?.dead_lettered_events)
      expect(sampleValue(samples, 'sidelog_component_healthy', at)).toBe(s?.healthy ? 1 : 0)
      expect(sampleValue(samples, 'sidelog_buffer_max_events', at)).toBe(100)
      // Each class starts at 0, so a first dead letter is a rise that rate() sees.
      for (const reason of ['permanent', 'budget-exhausted', 'shutdown', 'rejected', 'spool-write-failed']) {
        expect(
          sampleValue(samples, 'sidelog_component_dead_lettered_events_total', { ...at, reason }),
        ).toBeDefined()
      }
    }
    const deadLettered = (name: string, reason: string) =>
      sampleValue(samples, 'sidelog_component_dead_lettered_events_total', { ...sink(name), reason })
    expect(deadLettered('picky', 'rejected')).toBe(10)
    expect(stats.picky?.delivered_events).toBe(10)
    expect(deadLettered('gone', 'permanent')).toBe(20)
    expect(deadLettered('failing', 'budget-exhausted')).toBe(20)
    expect(deadLettered('hanging', 'shutdown')).toBe(20)
    expect(stats.ok?.delivered_events).toBe(20)

    // Bytes sent are the JSONL bytes of exactly the entries delivered.
    const bytesOf = (batches: Batch[]) =>
      batches.flatMap((b) => b.events).reduce((total, e) => total + e.bytes, 0)
    expect(sampleValue(samples, 'sidelog_component_sent_event_bytes_total', sink('ok'))).toBe(
      events.reduce((total, e) => total + e.bytes, 0),
    )
    expect(bytesOf(ok.delivered)).toBeGreaterThan(0)
    const pickyBytes = events.filter((_, i) => i % 2 === 1).reduce((total, e) => total + e.bytes, 0)
    expect(sampleValue(samples, 'sidelog_component_sent_event_bytes_total', sink('picky'))).toBe(pickyBytes)
    expect(sampleValue(samples, 'sidelog_component_sent_event_bytes_total', sink('gone'))).toBe(0)

    // One timed attempt per write: two successful for ok, one failed per retry (and the last) for failing.
    const attempts = (name: string, outcome: string) =>
      sampleValue(samples, 'sidelog_component_write_duration_seconds_count', { ...sink(name), outcome })
    expect(attempts('ok', 'ok')).toBe(2)
    expect(attempts('ok', 'error')).toBe(0)
    expect(attempts('gone', 'error')).toBe(2)
    expect(attempts('failing', 'error')).toBe((stats.failing?.retries ?? 0) + 2)
    expect(attempts('hanging', 'error')).toBe(2)
    // No spool, no spool metrics.
    expect(samples.some((s) => s.name.startsWith('sidelog_spool_'))).toBe(false)
    // The process's own metrics come with them.
    expect(samples.some((s) => s.name === 'process_cpu_user_seconds_total')).toBe(true)
    expect(samples.some((s) => s.name === 'nodejs_heap_size_used_bytes')).toBe(true)
  })

  it('instrumenting a sink keeps everything else it has', async () => {
    const metrics = createMetrics(settings)
    const startupError = new Error('unreachable at start-up')
    let flushed = 0
    class ClassSink implements StartedSink {
      readonly name = 'classy'
      readonly startupError = startupError
      private written = 0
      async write() {
        this.written++
      }
      async flush() {
        flushed++
      }
      stats() {
        return { written: this.written }
      }
      async close() {}
    }
    const instrumented = metrics.instrument<StartedSink>(new ClassSink())
    await instrumented.write(
      { name: 'b', openedAt: new Date(), events: [], bytes: 0 },
      { signal: new AbortController().signal },
    )
    await instrumented.flush?.()
    expect(instrumented.name).toBe('classy')
    expect(instrumented.startupError).toBe(startupError)
    expect(instrumented.stats?.()).toEqual({ written: 1 })
    expect(flushed).toBe(1)
  })
})

describe('GET /metrics and /ready on the app', () => {
  it('serves the text format, agreeing with /health, with the spool metrics when there is a spool', async () => {
    const dir = await tempDir()
    const app = await createApp(
      testConfig(dir, { SPOOL_DIR: join(dir, 'spool'), FLUSH_INTERVAL: '3600', BATCH_SIZE: '5' }),
      { logger: silentLogger },
    )
    try {
      await postAccepted(
        app,
        Array.from({ length: 12 }, (_, i) => ({ message: `m${i}` })),
      )
      await app.server.inject({
        method: 'POST',
        url: '/logs',
        payload: '{',
        headers: { 'content-type': 'application/json' },
      })
      // The two full batches are written; the open one (2 entries) waits for its interval.
      await until(
        async () => (await app.server.inject('/health')).json(),
        (health) => health.sinks.file.delivered_events === 10,
        'two batches delivered',
      )
      const res = await app.server.inject('/metrics')
      expect(res.statusCode).toBe(200)
      expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
      const samples = parseExposition(res.body)
      const health = (await app.server.inject('/health')).json()
      expect(sampleValue(samples, 'sidelog_component_received_events_total')).toBe(health.lines_processed)
      expect(sampleValue(samples, 'sidelog_component_sent_events_total', sink('file'))).toBe(
        health.sinks.file.delivered_events,
      )
      expect(health.sinks.file.delivered_events).toBe(10)
      // Every request answered: no body in flight, in both.
      expect(health.inflight_bytes).toBe(0)
      expect(sampleValue(samples, 'sidelog_component_inflight_bytes', { component_id: 'http' })).toBe(0)
      expect(sampleValue(samples, 'sidelog_buffer_events', sink('file'))).toBe(2)
      expect(
        sampleValue(samples, 'sidelog_component_refused_requests_total', { error_code: 'INVALID_JSON' }),
      ).toBe(health.refused_requests.INVALID_JSON)
      expect(sampleValue(samples, 'sidelog_spool_byte_size')).toBeGreaterThan(0)
      expect(sampleValue(samples, 'sidelog_spool_max_byte_size')).toBe(256 * 1024 ** 2)
      expect(sampleValue(samples, 'sidelog_spool_lag_events', sink('file'))).toBe(0)
      expect(sampleValue(samples, 'sidelog_component_last_sent_timestamp_seconds', sink('file'))).toBeCloseTo(
        Date.parse(health.sinks.file.last_delivery_at) / 1000,
      )
      expect((await app.server.inject('/ready')).json()).toEqual({ ready: true, reasons: [] })
    } finally {
      await app.close()
    }
  })
})
