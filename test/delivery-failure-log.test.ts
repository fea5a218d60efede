// A sink outage is a few log lines, not one per retry: the first failure at once, then one summary per interval,
// then one line when the sink delivers again.
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { FailureLog } from '../src/delivery/failure-log.js'

afterEach(() => {
  vi.useRealTimers()
})

describe('FailureLog', () => {
  it('logs the first failure, one summary per interval with the count, and the recovery', () => {
    vi.useFakeTimers({ toFake: ['performance'] })
    const lines: Record<string, unknown>[] = []
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(JSON.parse(chunk.toString()))
          done()
        },
      }),
    )
    const log = new FailureLog(logger, 'gcs', 30_000)
    for (let i = 0; i < 100; i++) log.failed(new Error('503'), i + 1, 100)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ sink: 'gcs', msg: 'write failed; retrying', err: { message: '503' } })
    vi.advanceTimersByTime(30_000)
    log.failed(new Error('503 again'), 101, 100)
    expect(lines).toHaveLength(2)
    expect(lines[1]).toMatchObject({
      failed_attempts: 100,
      err: { message: '503 again', stack: expect.any(String) },
    })
    log.recovered()
    expect(lines[2]).toMatchObject({ msg: 'delivering again after failed attempts', failed_attempts: 101 })
    log.recovered()
    expect(lines).toHaveLength(3)
  })
})
