// The bigquery sink at start-up, stream and load modes: a BigQuery that does not answer (nothing listening, 503)
// leaves the sink degraded and it opens the table on the first write that finds BigQuery; only answers that name a
// configuration problem (403, a missing dataset or table with BQ_CREATE=false) stop start-up.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ConfigError, PermanentError } from '../../src/errors.js'
import type { Batch } from '../../src/event.js'
import type { Sink } from '../../src/sinks/sink.js'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { closedPort, makeEvents, neverAborted, startSink, tempDir, testConfig } from '../helpers.js'

const BUCKET = 'staging'
let gcs: FakeGcsServer
let bq: FakeBigQueryServer
const sinks: Sink[] = []

beforeEach(async () => {
  process.env.METADATA_SERVER_DETECTION = 'none'
  gcs = new FakeGcsServer()
  bq = new FakeBigQueryServer()
  await gcs.start()
  gcs.buckets.add(BUCKET)
  bq.readObject = (bucket, name) => gcs.list(bucket).find((o) => o.name === name)?.data
})

afterEach(async () => {
  await Promise.all(sinks.splice(0).map((sink) => sink.close(neverAborted)))
  await Promise.all([gcs.stop(), bq.stop().catch(() => {})])
})

async function createSink(mode: 'stream' | 'load', endpoint: string, env: Record<string, string> = {}) {
  const config = testConfig(await tempDir(), {
    SINKS: 'bigquery',
    BQ_MODE: mode,
    BQ_LOAD_INTERVAL: '3600',
    LOG_BUCKET: BUCKET,
    GCS_ENDPOINT: gcs.url,
    BQ_ENDPOINT: endpoint,
    BQ_PROJECT: 'test-project',
    BQ_DATASET: 'app_logs',
    BQ_TABLE: 'request_logs',
    SINK_TIMEOUT: '5',
    ...env,
  })
  const sink = await startSink('bigquery', config)
  sinks.push(sink)
  return sink
}

const batch = (name: string, count: number): Batch => ({
  name,
  openedAt: new Date(),
  events: makeEvents(count, `${name}-`),
  bytes: 0,
})
const signal = new AbortController().signal
const rowIds = () => bq.rowsOf('app_logs', 'request_logs').map((row) => row.event_id)

describe.each(['stream', 'load'] as const)('bigquery sink at start-up, %s mode', (mode) => {
  it('starts degraded while nothing listens, writes fail as retryable, and the first write after BigQuery is up opens the table and delivers', async () => {
    const port = await closedPort()
    const sink = await createSink(mode, `http://127.0.0.1:${port}`)
    expect(sink.startupError?.message).toMatch(
      /^the bigquery sink's destination could not be reached at start-up: .*ECONNREFUSED/,
    )

    const first = await sink.write(batch('b1', 5), { signal }).catch((err: unknown) => err)
    expect(first).toBeInstanceOf(Error)
    expect(first).not.toBeInstanceOf(PermanentError)
    expect((first as Error).message).toMatch(/could not be opened yet/)

    await bq.start(port)
    await sink.write(batch('b1', 5), { signal })
    await sink.flush?.()
    expect(bq.tables.has('app_logs.request_logs')).toBe(true)
    expect(rowIds().sort()).toEqual(makeEvents(5, 'b1-').map((e) => e.id))
  })

  it('starts degraded when BigQuery answers 503 at start-up, and recovers', async () => {
    await bq.start()
    bq.inject({ kind: 'status', status: 503 }, { target: 'metadata', times: 1 })
    const sink = await createSink(mode, bq.url)
    expect(sink.startupError?.message).toMatch(
      /^the bigquery sink's destination could not be reached at start-up: /,
    )
    await sink.write(batch('b2', 3), { signal })
    await sink.flush?.()
    expect(rowIds()).toHaveLength(3)
  })

  it('stops start-up on a 403, naming the dataset and table', async () => {
    await bq.start()
    bq.inject({ kind: 'status', status: 403 }, { target: 'metadata', times: 1 })
    const error = await createSink(mode, bq.url).catch((err: unknown) => err)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as Error).message).toMatch(
      /^BQ_DATASET=app_logs BQ_TABLE=request_logs: the dataset cannot be used/,
    )
  })

  it('stops start-up when the table is missing and BQ_CREATE=false', async () => {
    await bq.start()
    bq.datasets.add('app_logs')
    const error = await createSink(mode, bq.url, { BQ_CREATE: 'false' }).catch((err: unknown) => err)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as Error).message).toMatch(/does not exist and BQ_CREATE=false/)
  })
})
