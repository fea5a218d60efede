// The dead-letter stores that outlive the instance (Cloud Storage through the real client against the fake, stderr
// lines) and the chain DEAD_LETTER builds from them: each write lands in one store, a store that fails or runs out
// of time hands the entries to the next, and the last resort before exit never waits for the network.
import { Storage } from '@google-cloud/storage'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import type { DeadLetterRecord } from '../../src/delivery/dead-letter.js'
import { createGcsDeadLetterStore } from '../../src/delivery/dead-letter-gcs.js'
import { createStderrDeadLetterStore } from '../../src/delivery/dead-letter-stderr.js'
import { chainDeadLetterStores, openDeadLetterStore } from '../../src/delivery/dead-letters.js'
import { ConfigError } from '../../src/errors.js'
import type { Batch } from '../../src/event.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { catchError, makeEvents, silentLogger, tempDir, testConfig } from '../helpers.js'

const BUCKET = 'logs-bucket'
let gcs: FakeGcsServer

beforeEach(async () => {
  gcs = new FakeGcsServer()
  await gcs.start()
  gcs.buckets.add(BUCKET)
})
afterEach(async () => {
  await gcs.stop()
})

const batch = (name: string, count: number): Batch => ({
  name,
  openedAt: new Date('2026-11-22T15:08:55Z'),
  events: makeEvents(count, `${name}-`),
  bytes: 0,
})
const record: DeadLetterRecord = { sink: 'bigquery', attempts: 3 }
const rejected = (b: Batch, reason = 'HTTP 503') => b.events.map((event) => ({ event, reason }))

/** A writer that keeps what the stderr store writes, as lines. */
function captured() {
  const chunks: string[] = []
  return {
    write: (data: string) => chunks.push(data),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  }
}

function gcsStore(options: { timeoutMs?: number; shutdownMarginMs?: number } = {}) {
  const storage = new Storage({ apiEndpoint: gcs.url, retryOptions: { autoRetry: false, maxRetries: 0 } })
  return createGcsDeadLetterStore({
    bucket: storage.bucket(BUCKET),
    prefix: 'dead-letter/',
    instanceId: 'inst01',
    timeoutMs: options.timeoutMs ?? 5000,
    resumableThreshold: 8 * 1024 ** 2,
    ...(options.shutdownMarginMs !== undefined ? { shutdownMarginMs: options.shutdownMarginMs } : {}),
  })
}

describe('stderr dead-letter store', () => {
  it('writes one marked JSON line per entry, with the reason and the original entry, also synchronously', async () => {
    const out = captured()
    const store = createStderrDeadLetterStore(out)
    const b = batch('b1', 3)
    expect(await store.write(b, rejected(b), record)).toBe('stderr')
    expect(store.writeNow(b, rejected(b, 'last resort'), record)).toBe('stderr')
    const lines = out.lines()
    expect(lines).toHaveLength(6)
    for (const [i, line] of lines.entries()) {
      expect(line).toMatchObject({
        severity: 'ERROR',
        sidelog: 'dead-letter',
        'logging.googleapis.com/labels': { sidelog: 'dead-letter' },
        sink: 'bigquery',
        attempts: 3,
        reason: i < 3 ? 'HTTP 503' : 'last resort',
        entry: { event_id: `b1-${i % 3}` },
      })
    }
  })
})

describe('Cloud Storage dead-letter store', () => {
  it('writes one object per write under <prefix><sink>/, never overwriting (ifGenerationMatch=0), lines as the directory store writes them', async () => {
    const store = gcsStore()
    const b = batch('b1', 4)
    const first = await store.write(b, rejected(b), record)
    const second = await store.write(b, rejected(b, 'again'), record)
    expect(first).toBe(`gs://${BUCKET}/dead-letter/bigquery/2026/11/22/150855-b1.inst01-1.jsonl`)
    expect(second).not.toBe(first)
    const objects = gcs.list(BUCKET)
    expect(objects.map((o) => `gs://${BUCKET}/${o.name}`)).toEqual([first, second])
    const lines = objects[0]?.data
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(lines?.map((l) => [l.sink, l.reason, l.entry.event_id])).toEqual(
      b.events.map((e) => ['bigquery', 'HTTP 503', e.id]),
    )
    for (const upload of gcs.uploads()) expect(upload.query.get('ifGenerationMatch')).toBe('0')
  })

  it('gives up on a write that hangs after its time-out', async () => {
    const store = gcsStore({ timeoutMs: 300 })
    gcs.inject({ kind: 'stall' }, { target: 'upload' })
    const b = batch('b2', 2)
    const startedAt = Date.now()
    await expect(store.write(b, rejected(b), record)).rejects.toThrow(/did not answer within 300 ms/)
    expect(Date.now() - startedAt).toBeLessThan(3000)
  })

  it('at shutdown, gives up on a hanging write (one already under way too) before the deadline, and starts none after', async () => {
    const store = gcsStore({ timeoutMs: 60_000, shutdownMarginMs: 100 })
    gcs.inject({ kind: 'stall' }, { target: 'upload' })
    const b = batch('b3', 2)
    const underWay = store.write(b, rejected(b), record)
    const deadline = Date.now() + 400
    store.beginShutdown?.(deadline)
    await expect(underWay).rejects.toThrow(/before the shutdown deadline/)
    expect(Date.now()).toBeLessThan(deadline)
    await expect(store.write(b, rejected(b), record)).rejects.toThrow(/no time left/)
  })

  it('cannot write synchronously', () => {
    const b = batch('b4', 1)
    expect(catchError(() => gcsStore().writeNow(b, rejected(b), record)).message).toMatch(/synchronously/)
  })
})

describe('the chain of stores (DEAD_LETTER)', () => {
  it('writes each batch to the first store that takes it: Cloud Storage, or stderr when it fails', async () => {
    const out = captured()
    const store = chainDeadLetterStores([gcsStore(), createStderrDeadLetterStore(out)], silentLogger)
    const ok = batch('ok', 2)
    const failed = batch('failed', 3)
    expect(await store.write(ok, rejected(ok), record)).toMatch(/^gs:\/\//)
    gcs.inject({ kind: 'status', status: 503 }, { target: 'upload' })
    expect(await store.write(failed, rejected(failed), record)).toBe('stderr')
    expect(gcs.list(BUCKET)).toHaveLength(1)
    expect(out.lines().map((l) => (l.entry as { event_id: string }).event_id)).toEqual(
      failed.events.map((e) => e.id),
    )
    // The last resort before exit skips Cloud Storage.
    expect(store.writeNow(ok, rejected(ok), record)).toBe('stderr')
    expect(out.lines()).toHaveLength(5)
  })

  it('rejects only when every store failed', async () => {
    const store = chainDeadLetterStores([gcsStore(), gcsStore()], silentLogger)
    gcs.inject({ kind: 'status', status: 503 }, { target: 'upload', times: 2 })
    const b = batch('b5', 1)
    await expect(store.write(b, rejected(b), record)).rejects.toThrow()
    expect(gcs.uploads()).toHaveLength(2)
  })

  it('DEAD_LETTER=gcs ends in stderr, and a bucket that does not exist stops start-up naming it', async () => {
    const dir = await tempDir()
    const config = testConfig(dir, { DEAD_LETTER: 'gcs', LOG_BUCKET: BUCKET, GCS_ENDPOINT: gcs.url })
    const store = await openDeadLetterStore(config, { logger: silentLogger, instanceId: 'i' })
    expect(store.destination).toBe(`gs://${BUCKET}/dead-letter/, then stderr`)
    const missing = testConfig(dir, {
      DEAD_LETTER: 'dir,gcs',
      LOG_BUCKET: 'no-such-bucket',
      GCS_ENDPOINT: gcs.url,
    })
    const error = await openDeadLetterStore(missing, { logger: silentLogger, instanceId: 'i' }).catch(
      (e) => e,
    )
    expect(error).toBeInstanceOf(ConfigError)
    expect(error.message).toMatch(/^LOG_BUCKET=no-such-bucket: the bucket cannot be used/)
  })

  it('DEAD_LETTER is checked at start-up: known kinds only, and gcs needs a bucket', () => {
    expect(loadConfig({}).DEAD_LETTER).toEqual(['dir'])
    expect(loadConfig({ DEAD_LETTER: ' gcs , stderr', LOG_BUCKET: 'b-1' }).DEAD_LETTER).toEqual([
      'gcs',
      'stderr',
    ])
    expect(catchError(() => loadConfig({ DEAD_LETTER: 'gcs,s3' })).message).toContain(
      'DEAD_LETTER="gcs,s3" is not valid: expected a comma-separated list of: dir, gcs, stderr',
    )
    expect(catchError(() => loadConfig({ DEAD_LETTER: 'stderr,gcs' })).message).toContain(
      'DEAD_LETTER includes gcs, so LOG_BUCKET (or GCS_BUCKET) must name the bucket',
    )
  })
})
