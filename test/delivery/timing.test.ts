// The one timing module every sink, the retry layer, the drain and load mode use: driven by fake timers here.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  abortedFirst,
  deadlineSignal,
  fullJitter,
  retryAfterOf,
  sleep,
  timedOut,
  untilAborted,
  withTimeout,
} from '../../src/delivery/timing.js'

beforeEach(() => {
  vi.useFakeTimers()
})
afterEach(() => {
  vi.useRealTimers()
})

const never = new Promise<never>(() => {})

describe('sleep', () => {
  it('resolves true after its time, false at once when aborted', async () => {
    const slept = sleep(1000)
    await vi.advanceTimersByTimeAsync(1000)
    expect(await slept).toBe(true)
    const controller = new AbortController()
    const cut = sleep(1000, controller.signal)
    controller.abort()
    expect(await cut).toBe(false)
    expect(vi.getTimerCount()).toBe(0)
  })
})

describe('timedOut and withTimeout', () => {
  it('tell a promise that settles in time from one that does not, and leave no timer behind', async () => {
    const quick = timedOut(Promise.resolve(), 1000)
    expect(await quick).toBe(false)
    const slow = timedOut(never, 1000)
    await vi.advanceTimersByTimeAsync(1000)
    expect(await slow).toBe(true)
    const late = withTimeout(never, 500, 'no answer within 0.5 s')
    const caught = late.catch((err: Error) => err.message)
    await vi.advanceTimersByTimeAsync(500)
    expect(await caught).toBe('no answer within 0.5 s')
    expect(await withTimeout(Promise.resolve(7), 500, 'x')).toBe(7)
    expect(vi.getTimerCount()).toBe(0)
  })
})

describe('deadlineSignal', () => {
  it('aborts with its reason when the time is up', async () => {
    const deadline = deadlineSignal(200, new Error('time is up'))
    await vi.advanceTimersByTimeAsync(199)
    expect(deadline.signal.aborted).toBe(false)
    await vi.advanceTimersByTimeAsync(1)
    expect(deadline.signal.reason).toEqual(new Error('time is up'))
  })

  it("aborts with the parent's reason when the parent aborts first, even before it was made", () => {
    const parent = new AbortController()
    const deadline = deadlineSignal(10_000, new Error('time is up'), parent.signal)
    parent.abort(new Error('shutdown'))
    expect(deadline.signal.reason).toEqual(new Error('shutdown'))
    deadline.clear()
    expect(deadlineSignal(10, 'x', parent.signal).signal.reason).toEqual(new Error('shutdown'))
  })

  it('lets go of its timer on clear', () => {
    const deadline = deadlineSignal(10_000, 'x', new AbortController().signal)
    expect(vi.getTimerCount()).toBe(1)
    deadline.clear()
    expect(vi.getTimerCount()).toBe(0)
    expect(deadline.signal.aborted).toBe(false)
  })
})

describe('untilAborted and abortedFirst', () => {
  it('settle as the work does, or as the signal aborts, whichever is first', async () => {
    const controller = new AbortController()
    expect(await untilAborted(Promise.resolve('done'), controller.signal)).toBe('done')
    await expect(untilAborted(Promise.reject(new Error('failed')), controller.signal)).rejects.toThrow(
      'failed',
    )
    const waiting = untilAborted(never, controller.signal)
    const first = abortedFirst(never, controller.signal)
    controller.abort(new Error('budget over'))
    await expect(waiting).rejects.toThrow('budget over')
    expect(await first).toBe(true)
    expect(await abortedFirst(Promise.resolve(), new AbortController().signal)).toBe(false)
    await expect(untilAborted(Promise.resolve(1), controller.signal)).rejects.toThrow('budget over')
  })
})

describe('fullJitter', () => {
  it('stays below initial × 2^(attempt-1), capped at the maximum', () => {
    expect(fullJitter(1, 500, 30_000, () => 0.999)).toBe(499)
    expect(fullJitter(4, 500, 30_000, () => 0.5)).toBe(2000)
    expect(fullJitter(20, 500, 30_000, () => 0.999)).toBe(29_970)
    expect(fullJitter(3, 500, 30_000, () => 0)).toBe(0)
  })
})

describe('retryAfterOf', () => {
  const now = Date.parse('2026-11-22T10:00:00Z')
  it('reads seconds or an HTTP date from a response header, or retryAfterMs', () => {
    expect(retryAfterOf({ response: { headers: { 'retry-after': '3' } } }, now)).toBe(3000)
    expect(retryAfterOf({ response: { headers: new Headers({ 'Retry-After': '1.5' }) } }, now)).toBe(1500)
    expect(
      retryAfterOf({ response: { headers: { 'retry-after': 'Sun, 22 Nov 2026 10:00:05 GMT' } } }, now),
    ).toBe(5000)
    expect(retryAfterOf({ retryAfterMs: 250 }, now)).toBe(250)
  })

  it('ignores what is not a hint', () => {
    expect(retryAfterOf(new Error('plain'), now)).toBeUndefined()
    expect(retryAfterOf({ response: { headers: { 'retry-after': 'soon' } } }, now)).toBeUndefined()
    expect(retryAfterOf({ response: { headers: { 'retry-after': '' } } }, now)).toBeUndefined()
    expect(retryAfterOf(undefined, now)).toBeUndefined()
  })
})
