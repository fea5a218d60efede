import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  AttemptTimeoutError,
  DeliveryFailedError,
  type RetryPolicy,
  withRetry,
} from '../../src/delivery/retry.js'
import { PartialWriteError, PermanentError } from '../../src/errors.js'
import type { Batch, LogEvent } from '../../src/event.js'
import type { Sink } from '../../src/sinks/sink.js'
import { makeEvents } from '../helpers.js'

const batch: Batch = { name: 'inst-000001', openedAt: new Date(0), events: makeEvents(3), bytes: 100 }
const policy: RetryPolicy = {
  initialBackoffMs: 100,
  maxBackoffMs: 1000,
  maxElapsedMs: 10_000,
  attemptTimeoutMs: 2000,
  random: () => 0.5,
}

/** A sink that fails with the given errors, in order, then succeeds; it records every batch it is handed. */
function scriptedSink(failures: unknown[]) {
  const seen: Batch[] = []
  const sink: Sink = {
    name: 'scripted',
    async write(b) {
      seen.push(b)
      const failure = failures.shift()
      if (failure !== undefined) throw failure
    },
    async close() {},
  }
  return { sink, seen }
}

async function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error) => ({ error }),
  )
}

describe('withRetry', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('retries transient errors with the same batch, backing off with jitter, until it succeeds', async () => {
    const { sink, seen } = scriptedSink([new Error('503'), new Error('reset'), new Error('503')])
    const retries: number[] = []
    const retrying = withRetry(sink, policy, { onRetry: (_err, _attempt, delay) => retries.push(delay) })
    const result = settle(retrying.write(batch, { signal: new AbortController().signal }))
    await vi.runAllTimersAsync()
    expect(await result).toEqual({ value: { attempts: 4, rejected: [] } })
    expect(seen).toHaveLength(4)
    for (const b of seen) expect(b).toBe(batch)
    // Full jitter at 0.5 of a ceiling that doubles: 100, 200, 400 ms ceilings.
    expect(retries).toEqual([50, 100, 200])
  })

  it("honours a server's Retry-After (seconds, or an HTTP date) over a shorter backoff", async () => {
    const throttled = (value: string) =>
      Object.assign(new Error('429 rateLimitExceeded'), {
        code: 429,
        response: { headers: { 'retry-after': value } },
      })
    const { sink, seen } = scriptedSink([
      throttled('3'),
      throttled(new Date(Date.now() + 10_000).toUTCString()),
    ])
    const retries: number[] = []
    const retrying = withRetry(sink, policy, { onRetry: (_err, _attempt, delay) => retries.push(delay) })
    const result = settle(retrying.write(batch, { signal: new AbortController().signal }))
    await vi.runAllTimersAsync()
    expect(await result).toEqual({ value: { attempts: 3, rejected: [] } })
    expect(seen).toHaveLength(3)
    expect(retries[0]).toBe(3000)
    // An HTTP date, whole seconds, ten from the start: about seven are left after the first wait of three.
    expect(retries[1]).toBeGreaterThan(5000)
    expect(retries[1]).toBeLessThanOrEqual(7000)
  })

  it('caps the backoff ceiling at maxBackoffMs', async () => {
    const { sink } = scriptedSink(Array.from({ length: 8 }, () => new Error('busy')))
    const retries: number[] = []
    const retrying = withRetry(
      sink,
      { ...policy, random: () => 0.999 },
      { onRetry: (_e, _a, d) => retries.push(d) },
    )
    const result = settle(retrying.write(batch, { signal: new AbortController().signal }))
    await vi.runAllTimersAsync()
    expect((await result).value?.attempts).toBe(9)
    expect(Math.max(...retries)).toBe(999)
  })

  it('gives up at once on a permanent error', async () => {
    const { sink, seen } = scriptedSink([new PermanentError('403 forbidden')])
    const result = await settle(
      withRetry(sink, policy).write(batch, { signal: new AbortController().signal }),
    )
    expect(result.error).toBeInstanceOf(DeliveryFailedError)
    expect(result.error).toMatchObject({ reason: 'permanent', attempts: 1 })
    expect((result.error as Error).message).toBe('permanent after 1 attempt(s): 403 forbidden')
    expect(seen).toHaveLength(1)
  })

  it('gives up when the next delay would pass the total budget', async () => {
    const { sink, seen } = scriptedSink(Array.from({ length: 100 }, () => new Error('down')))
    const startedAt = Date.now()
    const result = settle(
      withRetry(sink, { ...policy, maxElapsedMs: 1000 }).write(batch, {
        signal: new AbortController().signal,
      }),
    )
    await vi.runAllTimersAsync()
    const { error } = await result
    expect(error).toMatchObject({ reason: 'budget-exhausted' })
    // Delays 50, 100, 200, 400 fit in 1000 ms; the fifth (500) would not.
    expect(seen).toHaveLength(5)
    expect(Date.now() - startedAt).toBe(750)
  })

  it('times out a hung attempt, aborts its signal, and retries', async () => {
    const signals: AbortSignal[] = []
    let calls = 0
    const sink: Sink = {
      name: 'hangs-once',
      write(_b, { signal }) {
        signals.push(signal)
        return ++calls === 1 ? new Promise(() => {}) : Promise.resolve()
      },
      async close() {},
    }
    const errors: unknown[] = []
    const result = settle(
      withRetry(sink, policy, { onRetry: (err) => errors.push(err) }).write(batch, {
        signal: new AbortController().signal,
      }),
    )
    await vi.advanceTimersByTimeAsync(1999)
    expect(calls).toBe(1)
    await vi.runAllTimersAsync()
    expect(await result).toEqual({ value: { attempts: 2, rejected: [] } })
    expect(signals[0]?.aborted).toBe(true)
    expect(errors[0]).toBeInstanceOf(AttemptTimeoutError)
  })

  it('stops waiting and reports shutdown when the outer signal aborts during a backoff', async () => {
    const { sink, seen } = scriptedSink(Array.from({ length: 100 }, () => new Error('down')))
    const shutdown = new AbortController()
    const result = settle(withRetry(sink, policy).write(batch, { signal: shutdown.signal }))
    await vi.advanceTimersByTimeAsync(10)
    shutdown.abort(new Error('deadline'))
    const { error } = await result
    expect(error).toMatchObject({ reason: 'shutdown', attempts: 1 })
    expect(seen).toHaveLength(1)
  })

  it('does not start an attempt once shut down', async () => {
    const { sink, seen } = scriptedSink([])
    const shutdown = new AbortController()
    shutdown.abort(new Error('deadline'))
    const { error } = await settle(withRetry(sink, policy).write(batch, { signal: shutdown.signal }))
    expect(error).toMatchObject({ reason: 'shutdown', attempts: 0 })
    expect(seen).toHaveLength(0)
  })

  it('after a partial write, keeps what was rejected and re-sends only what is pending, same name and ids', async () => {
    const [a, , c] = batch.events as [LogEvent, LogEvent, LogEvent]
    const { sink, seen } = scriptedSink([
      new PartialWriteError([{ event: a, reason: 'invalid: no such field' }], [c], new Error('stopped')),
    ])
    const result = settle(withRetry(sink, policy).write(batch, { signal: new AbortController().signal }))
    await vi.runAllTimersAsync()
    expect(await result).toEqual({
      value: { attempts: 2, rejected: [{ event: a, reason: 'invalid: no such field' }] },
    })
    expect(seen[1]?.events).toEqual([c])
    expect(seen[1]?.name).toBe(batch.name)
    expect(seen[1]?.bytes).toBe(c.bytes)
  })

  it('a partial write with nothing pending is done at once', async () => {
    const [a] = batch.events as [LogEvent]
    const { sink, seen } = scriptedSink([new PartialWriteError([{ event: a, reason: 'too big' }], [])])
    const { value } = await settle(
      withRetry(sink, policy).write(batch, { signal: new AbortController().signal }),
    )
    expect(value).toEqual({ attempts: 1, rejected: [{ event: a, reason: 'too big' }] })
    expect(seen).toHaveLength(1)
  })

  it('a permanent cause ends it: what was pending is reported with what was rejected', async () => {
    const [a, b] = batch.events as [LogEvent, LogEvent]
    const { sink } = scriptedSink([
      new PartialWriteError([{ event: a, reason: 'invalid' }], [b], new PermanentError('403 access denied')),
    ])
    const { error } = await settle(
      withRetry(sink, policy).write(batch, { signal: new AbortController().signal }),
    )
    expect(error).toMatchObject({ reason: 'permanent', attempts: 1, pending: [b], rejected: [{ event: a }] })
  })
})
