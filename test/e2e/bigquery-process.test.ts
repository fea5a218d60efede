// The real process with SINKS=bigquery against the fake, under injected faults: every entry is a row, once.
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { listFiles, tempDir } from '../helpers.js'
import { sendTaggedEntries, spawnSidelog } from './spawn.js'

const TOTAL = 5000
const CLIENTS = 5

let fake: FakeBigQueryServer | undefined
let gcs: FakeGcsServer | undefined
afterEach(async () => {
  await Promise.all([fake?.stop(), gcs?.stop()])
  gcs = undefined
})

/** Load mode against both fakes: objects staged in the bucket `staging`, one job an hour unless flushed. */
function loadModeEnv(dir: string, gcs: FakeGcsServer, bq: FakeBigQueryServer): Record<string, string> {
  return {
    SINKS: 'bigquery',
    BQ_MODE: 'load',
    BQ_LOAD_INTERVAL: '3600',
    LOG_BUCKET: 'staging',
    GCS_ENDPOINT: gcs.url,
    BQ_ENDPOINT: bq.url,
    BQ_PROJECT: 'test-project',
    BQ_DATASET: 'app_logs',
    BQ_TABLE: 'request_logs',
    FLUSH_INTERVAL: '0.1',
    RETRY_INITIAL_BACKOFF: '0.05',
    DATA_DIR: join(dir, 'data'),
    DEAD_LETTER_DIR: join(dir, 'dead-letter'),
  }
}

describe('sidelog process with the bigquery sink', () => {
  it('streams 5,000 entries into the table exactly once through 503s, a lost answer and a backendError', async () => {
    fake = new FakeBigQueryServer()
    await fake.start()
    fake.inject({ kind: 'status', status: 503 }, { times: 2 })
    fake.inject({ kind: 'lost-answer' })
    fake.inject({ kind: 'reset' })
    fake.failRows('backendError')
    const dir = await tempDir()
    const sidelog = await spawnSidelog({
      SINKS: 'bigquery',
      BQ_ENDPOINT: fake.url,
      BQ_PROJECT: 'test-project',
      BQ_DATASET: 'app_logs',
      BQ_TABLE: 'request_logs',
      RETRY_INITIAL_BACKOFF: '0.05',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    })
    await sendTaggedEntries(sidelog.url, {
      clients: CLIENTS,
      total: TOTAL,
      perRequest: 50,
      extra: { message: 'hi' },
    })
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })

    const rows = fake.rowsOf('app_logs', 'request_logs')
    const tags = rows.map((r) => JSON.parse(r.payload as string).tag)
    expect(rows).toHaveLength(TOTAL)
    expect(new Set(tags).size).toBe(TOTAL)
    expect(new Set(rows.map((r) => r.event_id)).size).toBe(TOTAL)
    expect(await listFiles(join(dir, 'dead-letter'))).toEqual([])
    // At least one insertAll per 500 rows (the bigquery sink's batches), more with the retried ones.
    expect(fake.inserts().length).toBeGreaterThan(TOTAL / 500)
    const stopped = sidelog.logs.find((l) => String(l.msg).startsWith('stopped'))
    expect(stopped).toMatchObject({ delivered: TOTAL, dead_lettered: 0 })
  })

  it('load mode: a SIGKILL after staging loses nothing; the restart on the same DATA_DIR loads every entry once', async () => {
    fake = new FakeBigQueryServer()
    gcs = new FakeGcsServer()
    await Promise.all([fake.start(), gcs.start()])
    gcs.buckets.add('staging')
    const objects = gcs
    fake.readObject = (bucket, name) => objects.list(bucket).find((o) => o.name === name)?.data
    const dir = await tempDir()
    const env = loadModeEnv(dir, gcs, fake)
    gcs.inject({ kind: 'lost-answer' }, { target: 'upload', times: 2 })
    const first = await spawnSidelog(env)
    await sendTaggedEntries(first.url, { clients: CLIENTS, total: 2000, perRequest: 50 })
    // Wait until every batch is staged (the journal has it), then kill: no shutdown, no final job.
    await vi.waitFor(
      async () => {
        const health = (await (await fetch(`${first.url}/health`)).json()) as {
          sinks: { bigquery: Record<string, number> }
        }
        expect(health.sinks.bigquery.staged_objects).toBeGreaterThan(0)
        expect(health.sinks.bigquery.delivered_events).toBe(2000)
      },
      { timeout: 20_000, interval: 50 },
    )
    first.child.kill('SIGKILL')
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' })
    expect(fake.jobs.size).toBe(0)

    fake.inject({ kind: 'lost-answer' }, { target: 'job' })
    const second = await spawnSidelog(env)
    second.child.kill('SIGTERM')
    expect(await second.exited).toEqual({ code: 0, signal: null })

    const rows = fake.rowsOf('app_logs', 'request_logs')
    expect(rows).toHaveLength(2000)
    expect(new Set(rows.map((r) => (r.payload as { tag: string }).tag)).size).toBe(2000)
    expect(fake.jobs.size).toBe(1)
    expect(fake.jobInserts().map((r) => r.status)).toEqual([undefined, 409])
    expect(await listFiles(join(dir, 'dead-letter'))).toEqual([])
  })

  it('load mode: SIGTERM with a staged batch and Cloud Storage failing exits 0 inside SHUTDOWN_TIMEOUT', async () => {
    fake = new FakeBigQueryServer()
    gcs = new FakeGcsServer()
    await Promise.all([fake.start(), gcs.start()])
    gcs.buckets.add('staging')
    const dir = await tempDir()
    const shutdownTimeoutS = 4
    const sidelog = await spawnSidelog({
      ...loadModeEnv(dir, gcs, fake),
      SHUTDOWN_TIMEOUT: String(shutdownTimeoutS),
    })
    await sendTaggedEntries(sidelog.url, { clients: 1, total: 100, perRequest: 50 })
    await vi.waitFor(
      async () => {
        const health = (await (await fetch(`${sidelog.url}/health`)).json()) as {
          sinks: { bigquery: Record<string, number> }
        }
        expect(health.sinks.bigquery.staged_objects).toBeGreaterThan(0)
      },
      { timeout: 20_000, interval: 50 },
    )
    // From now on nothing reaches the bucket: the last job cannot be loaded, and new batches cannot be staged.
    gcs.inject({ kind: 'status', status: 503 }, { times: Number.MAX_SAFE_INTEGER })
    fake.inject({ kind: 'status', status: 503 }, { times: Number.MAX_SAFE_INTEGER })
    await sendTaggedEntries(sidelog.url, { clients: 1, total: 100, perRequest: 50, extra: { late: true } })
    const signalledAt = Date.now()
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    // Inside the budget, with room for the signal and the process's own exit (it was 9.1-9.5 s for an 8 s budget).
    expect(Date.now() - signalledAt).toBeLessThan(shutdownTimeoutS * 1000 + 500)
    const stopped = sidelog.logs.find((l) => String(l.msg).startsWith('stopped'))
    expect(stopped).toMatchObject({ delivered: 100, dead_lettered: 100 })
  })
})
