// sidelog's own logs: Cloud Logging's structured format (severity, message, time, stack_trace, Error Reporting's
// @type) with LOG_FORMAT=gcp or where K_SERVICE says it runs on Cloud Run; pino's plain JSON elsewhere.
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.js'
import { createLogger, REPORTED_ERROR_EVENT, resolveLogFormat } from '../src/logger.js'

function capture(env: Record<string, string>) {
  const lines: Record<string, unknown>[] = []
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line))
      callback()
    },
  })
  const logger = createLogger(loadConfig({ LOG_LEVEL: 'debug', ...env }), destination)
  return { logger, lines }
}

describe('createLogger', () => {
  it('LOG_FORMAT=auto is gcp where K_SERVICE is set, json elsewhere', () => {
    expect(resolveLogFormat(loadConfig({}))).toBe('json')
    expect(resolveLogFormat(loadConfig({ K_SERVICE: 'checkout' }))).toBe('gcp')
    expect(resolveLogFormat(loadConfig({ K_SERVICE: 'checkout', LOG_FORMAT: 'json' }))).toBe('json')
    expect(resolveLogFormat(loadConfig({ LOG_FORMAT: 'gcp' }))).toBe('gcp')
  })

  it('gcp: severity, message and an ISO time, for every level', () => {
    const { logger, lines } = capture({ LOG_FORMAT: 'gcp' })
    logger.debug('d')
    logger.info({ sink: 'gcs' }, 'listening')
    logger.warn('w')
    logger.fatal('f')
    expect(lines.map((l) => l.severity)).toEqual(['DEBUG', 'INFO', 'WARNING', 'CRITICAL'])
    expect(lines[1]).toMatchObject({ message: 'listening', sink: 'gcs', service: 'sidelog', level: 30 })
    expect(lines[1]).not.toHaveProperty('msg')
    expect(new Date(lines[1]?.time as string).toISOString()).toBe(lines[1]?.time)
    // Below error, nothing is reported to Error Reporting.
    expect(lines[1]).not.toHaveProperty('@type')
  })

  it('gcp: an error line carries its stack in stack_trace and the @type Error Reporting reads', () => {
    const { logger, lines } = capture({ LOG_FORMAT: 'gcp' })
    const err = new Error('upload failed')
    logger.error({ err }, 'write failed')
    logger.error({ events: 3 }, 'entries not delivered; dead-lettered')
    expect(lines[0]).toMatchObject({
      severity: 'ERROR',
      message: 'write failed',
      stack_trace: expect.stringMatching(/^Error: upload failed\n\s+at /),
      '@type': REPORTED_ERROR_EVENT,
      serviceContext: { service: 'sidelog' },
      err: { message: 'upload failed', type: 'Error' },
    })
    // An error line without an Error object is still an error event, without a stack.
    expect(lines[1]).toMatchObject({ severity: 'ERROR', '@type': REPORTED_ERROR_EVENT, events: 3 })
    expect(lines[1]).not.toHaveProperty('stack_trace')
  })

  it('json: pino as before, numeric level and msg', () => {
    const { logger, lines } = capture({})
    logger.warn({ sink: 'file' }, 'plain')
    expect(lines[0]).toMatchObject({ level: 40, msg: 'plain', sink: 'file', service: 'sidelog' })
    expect(typeof lines[0]?.time).toBe('number')
    expect(lines[0]).not.toHaveProperty('severity')
  })
})
