// Shared test helpers: configuration, a silent logger, temporary directories, and readers for JSONL trees.
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, type Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, expect } from 'vitest'
import type { App } from '../src/app.js'
import { type Config, loadConfig, type SinkKind } from '../src/config.js'
import { createLogEvent, type LogEvent } from '../src/event.js'
import type { PipelineOptions } from '../src/pipeline/index.js'
import { startSinks } from '../src/sinks/index.js'
import type { StartedSink } from '../src/sinks/sink.js'

export { listFiles, readJsonlTree } from './jsonl-files.js'

export const silentLogger = pino({ level: 'silent' })

/** A pipeline's batching in tests: batches of 10 that flush only when full or asked, 100 entries buffered. */
export const TEST_BATCHING: PipelineOptions['batching'] = {
  instanceId: 'inst',
  maxBatchEvents: 10,
  maxBatchBytes: 1_000_000,
  flushIntervalMs: 60_000,
  maxBufferedEvents: 100,
  maxBufferedBytes: 10_000_000,
  concurrency: 2,
}

const tempDirs: string[] = []
afterEach(async () => {
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })))
})

/** A fresh directory removed after the current test. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sidelog-test-'))
  tempDirs.push(dir)
  return dir
}

/** Settings for sink tests: retries in milliseconds, and batches that flush only when a test or close says so. */
export const QUICK_RETRIES_MANUAL_FLUSH = {
  RETRY_INITIAL_BACKOFF: '0.01',
  RETRY_MAX_BACKOFF: '0.05',
  FLUSH_INTERVAL: '3600',
} as const

/**
 * A validated configuration: the defaults, with data under `dir`, and the given settings as env strings. In-process
 * apps refuse at once on close (SHUTDOWN_ACCEPT=0) unless a test says otherwise: no test waits out a quiet spell.
 */
export function testConfig(dir: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    DATA_DIR: join(dir, 'data'),
    DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    SHUTDOWN_ACCEPT: '0',
    ...env,
  })
}

export function makeEvents(count: number, prefix = 'e', payloadBytes = 10): LogEvent[] {
  return Array.from({ length: count }, (_, i) => {
    const id = `${prefix}${i}`
    return createLogEvent(id, JSON.stringify({ event_id: id, pad: 'x'.repeat(payloadBytes) }))
  })
}

/** The error `fn` throws; fails the test if it throws none. */
export function catchError(fn: () => unknown): Error {
  try {
    fn()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected an error')
}

/** POSTs `entries` to an in-process app as one NDJSON body and expects them accepted (202). */
export async function postAccepted(app: App, entries: readonly object[]): Promise<void> {
  const res = await app.server.inject({
    method: 'POST',
    url: '/logs',
    payload: entries.map((e) => JSON.stringify(e)).join('\n'),
    headers: { 'content-type': 'application/x-ndjson' },
  })
  expect(res.statusCode).toBe(202)
}

/** An AbortSignal that never aborts: a sink closed with it finishes what it holds. */
export const neverAborted = new AbortController().signal

/**
 * Starts the one sink `kind` as sidelog does (sinks/index.ts: built from its own settings, then its start-up check
 * under SINK_TIMEOUT), with `config`'s other settings.
 */
export async function startSink(
  kind: SinkKind,
  config: Config,
  stdout: Writable = new PassThrough(),
): Promise<StartedSink> {
  const [sink] = await startSinks({ ...config, SINKS: [kind] }, { logger: silentLogger, stdout })
  if (!sink) throw new Error(`no ${kind} sink started`)
  return sink
}

/** Polls `read` until `ready` holds: a condition, with a generous deadline only as a safety net. */
export async function until<T>(
  read: () => Promise<T>,
  ready: (value: T) => boolean,
  what: string,
  deadlineMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const value = await read()
    if (ready(value)) return value
    if (Date.now() > deadline) throw new Error(`${what} never happened; last: ${JSON.stringify(value)}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** A port of 127.0.0.1 with nothing listening on it (taken from the OS, then let go). */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
