// The bigquery sink's load mode through the whole app: the real Storage and BigQuery clients over HTTP against the
// GCS fake (staging) and the BigQuery fake, whose load jobs read the staged objects from the GCS fake.
import { appendFile, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type App, createApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { ConfigError } from '../../src/errors.js'
import { loadJobId } from '../../src/sinks/bigquery/load/journal.js'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import {
  catchError,
  makeEvents,
  neverAborted,
  postAccepted,
  QUICK_RETRIES_MANUAL_FLUSH,
  silentLogger,
  startSink,
  tempDir,
  testConfig,
  until,
} from '../helpers.js'

const BUCKET = 'staging'
let gcs: FakeGcsServer
let bq: FakeBigQueryServer

beforeEach(async () => {
  process.env.METADATA_SERVER_DETECTION = 'none'
  gcs = new FakeGcsServer()
  bq = new FakeBigQueryServer()
  await Promise.all([gcs.start(), bq.start()])
  gcs.buckets.add(BUCKET)
  bq.readObject = (bucket, name) => gcs.list(bucket).find((o) => o.name === name)?.data
})

afterEach(async () => {
  await Promise.all([gcs.stop(), bq.stop()])
})

async function startApp(dir?: string, env: Record<string, string> = {}) {
  const config = testConfig(dir ?? (await tempDir()), {
    SINKS: 'bigquery',
    BQ_MODE: 'load',
    BQ_LOAD_INTERVAL: '3600',
    LOG_BUCKET: BUCKET,
    GCS_ENDPOINT: gcs.url,
    BQ_ENDPOINT: bq.url,
    BQ_PROJECT: 'test-project',
    BQ_DATASET: 'app_logs',
    BQ_TABLE: 'request_logs',
    ...QUICK_RETRIES_MANUAL_FLUSH,
    // Each post is sealed as a batch of its own at once; the tests hand staged objects on with flushNow.
    BQ_FLUSH_INTERVAL: '0.01',
    ...env,
  })
  const app = await createApp(config, { logger: silentLogger, stdout: new PassThrough() })
  return { app, config }
}

const sinkStats = async (app: App) =>
  (await app.server.inject({ method: 'GET', url: '/health' })).json().sinks.bigquery as Record<string, number>

/** Posts `count` entries, which the sink's short flush interval seals as one batch, and waits until it is staged. */
async function stageBatch(app: App, count: number, prefix: string, extra: object = {}) {
  const before = (await sinkStats(app)).delivered_batches as number
  await postAccepted(
    app,
    Array.from({ length: count }, (_, i) => ({ tag: `${prefix}${i}`, message: `hello ${i}`, ...extra })),
  )
  await until(
    () => sinkStats(app),
    (stats) => stats.delivered_batches === before + 1,
    `batch ${prefix} staged`,
  )
}

const tagsOf = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${i}`)
const rows = () => bq.rowsOf('app_logs', 'request_logs')
const loadedTags = () => rows().map((r) => (r.payload as { tag: string }).tag)
const staged = () => gcs.list(BUCKET).map((o) => o.name)
describe('bigquery sink, load mode', () => {
  it('stages each batch as a row-shaped object and loads them together in one NDJSON job', async () => {
    const { app } = await startApp()
    await stageBatch(app, 30, 'a')
    await stageBatch(app, 20, 'b')
    await stageBatch(app, 10, 'c')
    expect(staged()).toHaveLength(3)
    expect(staged().every((name) => /^bigquery-load\/\d{4}\/\d{2}\/\d{2}\/\d{6}-.+\.jsonl$/.test(name))).toBe(
      true,
    )
    expect(bq.jobInserts()).toHaveLength(0)

    await app.pipeline.flushNow()
    expect(bq.jobInserts()).toHaveLength(1)
    const [job] = [...bq.jobs.values()]
    const load = job?.resource.configuration.load
    expect(load?.sourceFormat).toBe('NEWLINE_DELIMITED_JSON')
    expect(load?.writeDisposition).toBe('WRITE_APPEND')
    expect(load?.sourceUris.sort()).toEqual(staged().map((n) => `gs://${BUCKET}/${n}`))
    expect(job?.resource.jobReference.jobId).toBe(loadJobId(staged(), 1))

    const expected = [...tagsOf('a', 30), ...tagsOf('b', 20), ...tagsOf('c', 10)]
    expect(loadedTags().sort()).toEqual(expected.sort())
    // A load file takes a JSON column's value as it is: payload must be the entry, not a JSON string of it.
    const row = rows().find((r) => (r.payload as { tag: string }).tag === 'a7')
    expect(row?.payload).toMatchObject({ tag: 'a7', message: 'hello 7', event_id: row?.event_id })
    expect(row?.message).toBe('hello 7')
    expect(await sinkStats(app)).toMatchObject({
      staged_objects: 3,
      loaded_jobs: 1,
      failed_jobs: 0,
      loaded_rows: 60,
      pending_objects: 0,
    })
    await app.close()
  })

  it('follows the job when a lost answer makes it submit again (409), loading once', async () => {
    const { app } = await startApp()
    await stageBatch(app, 25, 'x')
    bq.inject({ kind: 'lost-answer' }, { target: 'job' })
    await app.pipeline.flushNow()
    expect(bq.jobInserts().map((r) => r.status)).toEqual([undefined, 409])
    expect(loadedTags()).toHaveLength(25)
    expect(new Set(loadedTags()).size).toBe(25)
    expect(await sinkStats(app)).toMatchObject({ loaded_jobs: 1, loaded_rows: 25 })
    await app.close()
  })

  it('retries a job submission the service refused for a while (503), then loads once', async () => {
    const { app } = await startApp()
    await stageBatch(app, 5, 'y')
    bq.inject({ kind: 'status', status: 503 }, { target: 'job', times: 2 })
    await app.pipeline.flushNow()
    expect(bq.jobInserts().map((r) => r.status)).toEqual([503, 503, 200])
    expect(loadedTags().sort()).toEqual(['y0', 'y1', 'y2', 'y3', 'y4'])
    await app.close()
  })

  it('waits for a running job before counting it loaded', async () => {
    const { app } = await startApp()
    await stageBatch(app, 5, 'r')
    // The insert and the first jobs.get see the job RUNNING; the second get sees it DONE.
    bq.jobPolls = 1
    await app.pipeline.flushNow()
    const gets = bq.requests.filter((r) => r.method === 'GET' && r.path.includes('/jobs/'))
    expect(gets).toHaveLength(2)
    expect(await sinkStats(app)).toMatchObject({ loaded_jobs: 1, loaded_rows: 5, pending_objects: 0 })
    await app.close()
  })

  it('submits a job that failed for a passing reason again, as a new job', async () => {
    const { app } = await startApp()
    await stageBatch(app, 8, 't')
    bq.failJobs('backendError')
    await app.pipeline.flushNow()
    const ids = [...bq.jobs.keys()]
    expect(ids).toEqual([loadJobId(staged(), 1), loadJobId(staged(), 2)])
    expect(loadedTags()).toHaveLength(8)
    expect(await sinkStats(app)).toMatchObject({ loaded_jobs: 1, failed_jobs: 0 })
    await app.close()
  })

  it("records a failed job's objects and error for re-load, and loads none of its rows", async () => {
    const { app, config } = await startApp()
    await stageBatch(app, 4, 'ok')
    // One entry whose timestamp BigQuery cannot read fails the whole job: load jobs are all or nothing.
    await stageBatch(app, 1, 'bad', { timestamp: 'yesterday' })
    await app.pipeline.flushNow()
    expect(rows()).toHaveLength(0)
    const id = loadJobId(staged(), 1)
    const record = JSON.parse(
      await readFile(join(config.DEAD_LETTER_DIR, 'bigquery-load', `${id}.json`), 'utf8'),
    )
    expect(record.job_id).toBe(id)
    expect(record.table).toBe('app_logs.request_logs')
    expect(record.error).toMatch(/^invalid: .*too many errors.*Cannot convert value to timestamp/)
    expect(record.source_uris.sort()).toEqual(staged().map((n) => `gs://${BUCKET}/${n}`))
    expect(record.reload).toBe(
      `bq load --source_format=NEWLINE_DELIMITED_JSON app_logs.request_logs ${record.source_uris.join(',')}`,
    )
    expect(await sinkStats(app)).toMatchObject({ failed_jobs: 1, loaded_jobs: 0, pending_objects: 0 })
    await app.close()
  })

  it('stages a batch once when its upload answer is lost (412 on the retry)', async () => {
    const { app } = await startApp()
    gcs.inject({ kind: 'lost-answer' }, { target: 'upload' })
    await stageBatch(app, 6, 'l')
    expect(gcs.uploads().map((r) => r.status)).toEqual([undefined, 412])
    await app.pipeline.flushNow()
    expect(bq.jobs.size).toBe(1)
    expect(loadedTags()).toHaveLength(6)
    expect(await sinkStats(app)).toMatchObject({ staged_objects: 1 })
    await app.close()
  })

  it('submits what is staged at shutdown; a restart on the same DATA_DIR finishes a job it could not submit, past a torn record', async () => {
    const dir = await tempDir()
    const first = await startApp(dir)
    await stageBatch(first.app, 12, 's')
    // BigQuery is down for the whole shutdown: the final job is journaled but not submitted.
    bq.inject({ kind: 'status', status: 503 }, { target: 'job', times: 1_000_000 })
    await first.app.close()
    expect(rows()).toHaveLength(0)
    const journal = await readFile(join(first.config.DATA_DIR, 'bigquery-load.journal'), 'utf8')
    const id = loadJobId(staged(), 1)
    expect(journal).toContain(`"job":"${id}"`)

    // A crash mid-append leaves a torn last record: it is skipped, and start-up goes on.
    await appendFile(join(first.config.DATA_DIR, 'bigquery-load.journal'), `{"ended":"${id.slice(0, 9)}`)

    bq.clearFaults()
    const second = await startApp(dir)
    await second.app.pipeline.flushNow()
    expect([...bq.jobs.keys()]).toEqual([id])
    expect(loadedTags()).toHaveLength(12)
    await second.app.close()
    // Everything ended: the journal is compacted to the loaded objects it still remembers, nothing pending.
    const records = (await readFile(join(first.config.DATA_DIR, 'bigquery-load.journal'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(records.map((r) => r.remembered)).toEqual(staged())
  })

  it('ignores a batch the spool re-sends after a restart when its object was loaded already', async () => {
    const dir = await tempDir()
    const { config } = await startApp(dir).then(async ({ app, config }) => {
      await app.close()
      return { config }
    })
    const batch = {
      name: 'resent-000001',
      openedAt: new Date('2026-11-22T04:00:00Z'),
      events: makeEvents(7, 'r'),
      bytes: 0,
    }
    const signal = new AbortController().signal
    const first = await startSink('bigquery', config)
    await first.write(batch, { signal })
    await first.flush?.()
    await first.close(neverAborted)
    expect(rows()).toHaveLength(7)

    // A crash lost the spool's "done" for this batch: the restart writes it again, meets the object (412) ...
    const second = await startSink('bigquery', config)
    await second.write(batch, { signal })
    await second.flush?.()
    await second.close(neverAborted)
    // ... and the load journal remembers it was loaded: no second job, no second copy of the rows.
    expect(gcs.uploads().map((r) => r.status)).toEqual([200, 412])
    expect(bq.jobs.size).toBe(1)
    expect(rows()).toHaveLength(7)
    expect(second.stats?.()).toMatchObject({ staged_objects: 0, loaded_jobs: 0 })
  })

  it('needs a bucket to stage in', () => {
    const err = catchError(() =>
      loadConfig({ SINKS: 'bigquery', BQ_MODE: 'load', BQ_DATASET: 'd', BQ_TABLE: 't' }),
    )
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toContain(
      'BQ_MODE is load, so LOG_BUCKET (or GCS_BUCKET) must name the bucket',
    )
  })
})
