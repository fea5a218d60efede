// The bigquery sink through the whole app, with the real @google-cloud/bigquery client over HTTP against the fake.
import { PassThrough } from 'node:stream'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.js'
import { ConfigError } from '../../src/errors.js'
import { DEFAULT_SCHEMA, planRows, toRow } from '../../src/sinks/bigquery/table.js'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import {
  postAccepted,
  QUICK_RETRIES_MANUAL_FLUSH,
  readJsonlTree,
  silentLogger,
  tempDir,
  testConfig,
} from '../helpers.js'

let fake: FakeBigQueryServer

beforeEach(async () => {
  fake = new FakeBigQueryServer()
  await fake.start()
})

afterEach(async () => {
  await fake.stop()
})

async function startApp(env: Record<string, string> = {}) {
  const config = testConfig(await tempDir(), {
    SINKS: 'bigquery',
    BQ_ENDPOINT: fake.url,
    BQ_PROJECT: 'test-project',
    BQ_DATASET: 'app_logs',
    BQ_TABLE: 'request_logs',
    ...QUICK_RETRIES_MANUAL_FLUSH,
    ...env,
  })
  const app = await createApp(config, { logger: silentLogger, stdout: new PassThrough() })
  return { app, config }
}

const entries = (count: number, prefix = 'e') =>
  Array.from({ length: count }, (_, i) => ({ tag: `${prefix}${i}`, message: `hello ${i}`, level: 'info' }))

const tags = () => fake.rowsOf('app_logs', 'request_logs').map((r) => JSON.parse(r.payload as string).tag)

describe('bigquery sink', () => {
  it('creates the dataset and a day-partitioned, clustered table with the default schema', async () => {
    const { app } = await startApp()
    const table = fake.tables.get('app_logs.request_logs')
    expect(table?.schema.fields).toEqual(DEFAULT_SCHEMA)
    expect(table?.timePartitioning).toEqual({ type: 'DAY', field: 'timestamp' })
    expect(table?.clustering).toEqual({ fields: ['service'] })
    await app.close()
  })

  it("fills the columns and payload, with each row's insertId its event_id", async () => {
    const { app } = await startApp()
    await postAccepted(app, [{ message: 'paid', level: 'warn', order: 7 }])
    await app.close()
    const [stored] = fake.rows.get('app_logs.request_logs') ?? []
    const payload = JSON.parse(stored?.json.payload as string)
    expect(stored?.insertId).toBe(payload.event_id)
    expect(stored?.json).toMatchObject({
      event_id: payload.event_id,
      message: 'paid',
      severity: 'WARNING',
      service: 'unknown',
      timestamp: payload.timestamp,
    })
    expect(payload).toMatchObject({ order: 7, level: 'warn' })
  })

  it('delivers 498 of 500 rows once and dead-letters the 2 invalid ones with reason and location', async () => {
    const { app, config } = await startApp({ BATCH_SIZE: '500' })
    const batch = entries(500)
    Object.assign(batch[17] as object, { timestamp: 'not a time' })
    Object.assign(batch[401] as object, { timestamp: 'yesterday' })
    await postAccepted(app, batch)
    const summary = await app.close()
    expect(summary).toMatchObject({ delivered: 498, dead_lettered: 2 })
    expect(tags()).toHaveLength(498)
    expect(new Set(tags()).size).toBe(498)
    expect(tags()).not.toContain('e17')
    const records = await readJsonlTree(config.DEAD_LETTER_DIR)
    expect(records.map((r) => (r.entry as { tag: string }).tag)).toEqual(['e17', 'e401'])
    expect(String(records[0]?.reason)).toMatch(
      /^invalid: Cannot convert value to timestamp.*\(at timestamp\)$/,
    )
    // The first request was stopped by the bad rows; the retry sent only the 498 good ones.
    expect(fake.inserts()).toHaveLength(2)
  })

  it('after a 503, re-sends with the same insertIds and stores no duplicate', async () => {
    fake.inject({ kind: 'status', status: 503 })
    const { app } = await startApp()
    await postAccepted(app, entries(10))
    const summary = await app.close()
    expect(summary).toMatchObject({ delivered: 10, dead_lettered: 0 })
    expect(tags().sort()).toEqual(
      entries(10)
        .map((e) => e.tag)
        .sort(),
    )
    expect(fake.inserts().map((r) => r.status)).toEqual([503, 200])
  })

  it('when the answer is lost, the retry is de-duplicated by insertId: each row once', async () => {
    fake.inject({ kind: 'lost-answer' })
    const { app } = await startApp()
    await postAccepted(app, entries(20))
    const summary = await app.close()
    expect(summary).toMatchObject({ delivered: 20, dead_lettered: 0 })
    expect(fake.inserts()).toHaveLength(2)
    expect(tags()).toHaveLength(20)
  })

  it('retries rows BigQuery refused for a passing reason (backendError) instead of dead-lettering them', async () => {
    fake.failRows('backendError')
    const { app } = await startApp()
    await postAccepted(app, entries(5))
    const summary = await app.close()
    expect(summary).toMatchObject({ delivered: 5, dead_lettered: 0 })
    expect(tags()).toHaveLength(5)
    expect(fake.inserts()).toHaveLength(2)
  })

  it('splits 1,200 rows into requests of at most 500', async () => {
    const { app } = await startApp({ BATCH_SIZE: '1200' })
    await postAccepted(app, entries(1200))
    await app.close()
    expect(fake.inserts()).toHaveLength(3)
    expect(tags()).toHaveLength(1200)
  })

  it('dead-letters a row over 1 MB alone; its neighbours are delivered', async () => {
    const { app, config } = await startApp({ MAX_ENTRY_BYTES: '2MiB', BATCH_BYTES: '8MiB' })
    await postAccepted(app, [
      { tag: 'small-1' },
      { tag: 'huge', blob: 'x'.repeat(1_100_000) },
      { tag: 'small-2' },
    ])
    const summary = await app.close()
    expect(summary).toMatchObject({ delivered: 2, dead_lettered: 1 })
    expect(tags().sort()).toEqual(['small-1', 'small-2'])
    const [record] = await readJsonlTree(config.DEAD_LETTER_DIR)
    expect(record?.reason).toMatch(/^row is \d+ bytes; BigQuery streaming takes rows of at most 1 MB$/)
  })

  it('dead-letters a batch refused with 403, with the reason', async () => {
    fake.inject({ kind: 'status', status: 403 })
    const { app, config } = await startApp()
    await postAccepted(app, entries(3))
    const summary = await app.close()
    expect(summary).toMatchObject({ delivered: 0, dead_lettered: 3 })
    const records = await readJsonlTree(config.DEAD_LETTER_DIR)
    expect(String(records[0]?.reason)).toMatch(/^permanent after 1 attempt\(s\): BigQuery answered 403/)
  })

  it('maps onto an existing table: unknown fields go into its JSON column', async () => {
    fake.createTable('app_logs', 'request_logs', [
      { name: 'event_id', type: 'STRING' },
      { name: 'message', type: 'STRING' },
      { name: 'extra', type: 'JSON' },
    ])
    const { app } = await startApp()
    await postAccepted(app, [{ message: 'hi', user: { id: 3 } }])
    await app.close()
    const [row] = fake.rowsOf('app_logs', 'request_logs')
    expect(row?.message).toBe('hi')
    expect(JSON.parse(row?.extra as string)).toMatchObject({ user: { id: 3 }, service: 'unknown' })
  })

  it('maps onto an existing table without a JSON column: unknown fields are dropped and counted', async () => {
    fake.createTable('app_logs', 'request_logs', [
      { name: 'event_id', type: 'STRING' },
      { name: 'message', type: 'STRING' },
    ])
    // A retried request must not count its dropped fields twice.
    fake.inject({ kind: 'status', status: 503 })
    const { app } = await startApp()
    await postAccepted(app, [{ message: 'hi', user: 'ann' }])
    await app.pipeline.flushNow()
    const health = (await app.server.inject({ method: 'GET', url: '/health' })).json()
    // user, plus the enriched fields without a column: service, revision, host, processed_at, timestamp, severity
    expect(health.sinks.bigquery.dropped_fields).toBe(6)
    await app.close()
    expect(fake.rowsOf('app_logs', 'request_logs')).toEqual([{ event_id: expect.any(String), message: 'hi' }])
  })
})

describe('bigquery sink start-up', () => {
  it('stops when the dataset is missing and BQ_CREATE=false', async () => {
    const error = await startApp({ BQ_CREATE: 'false' }).catch((err: unknown) => err)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as Error).message).toMatch(
      /^BQ_DATASET=app_logs BQ_TABLE=request_logs: the dataset cannot be used \(BQ_CREATE=false/,
    )
  })

  it('stops when the table is missing and BQ_CREATE=false', async () => {
    fake.datasets.add('app_logs')
    const error = await startApp({ BQ_CREATE: 'false' }).catch((err: unknown) => err)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as Error).message).toMatch(
      /the table cannot be used: table .* does not exist and BQ_CREATE=false/,
    )
  })

  it('needs the dataset and table when the sink is chosen', () => {
    expect(() => testConfig('/tmp', { SINKS: 'bigquery' })).toThrow(/BQ_DATASET and BQ_TABLE must be set/)
    const chosen = { SINKS: 'bigquery', BQ_DATASET: 'd', BQ_TABLE: 't', BQ_ENDPOINT: 'http://127.0.0.1:1' }
    expect(() => testConfig('/tmp', chosen)).toThrow(/BQ_PROJECT must be too/)
    // A sink's cross-checks are its own: settings of a sink SINKS does not name are not held against the others.
    expect(() => testConfig('/tmp', { BQ_ENDPOINT: 'http://127.0.0.1:1' })).not.toThrow()
  })
})

describe("Cloud Logging's fields in BigQuery", () => {
  const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
  const SPAN = '00f067aa0ba902b7'

  it('a pino entry and a Go slog entry land with message, trace and span_id filled', async () => {
    const { app } = await startApp()
    // pino with @opentelemetry/instrumentation-pino: msg, numeric level, epoch-ms time, trace_id/span_id.
    const pino = {
      level: 30,
      time: 1767225600123,
      pid: 7,
      hostname: 'app-1',
      msg: 'order paid',
      trace_id: TRACE,
      span_id: SPAN,
      trace_flags: '01',
    }
    // Go's slog JSON handler, with the W3C traceparent an HTTP middleware put in the context.
    const slog = {
      time: '2026-01-01T00:00:01.5Z',
      level: 'WARN',
      msg: 'stock low',
      traceparent: `00-${TRACE}-b7ad6b7169203331-01`,
      httpRequest: { requestMethod: 'POST', requestUrl: '/orders', status: 201 },
    }
    await postAccepted(app, [pino, slog])
    await app.close()
    const rows = fake.rowsOf('app_logs', 'request_logs')
    expect(rows.map((r) => r.message)).toEqual(['order paid', 'stock low'])
    expect(rows.map((r) => r.trace)).toEqual([
      `projects/test-project/traces/${TRACE}`,
      `projects/test-project/traces/${TRACE}`,
    ])
    expect(rows.map((r) => r.span_id)).toEqual([SPAN, 'b7ad6b7169203331'])
    expect(rows.map((r) => r.severity)).toEqual(['INFO', 'WARNING'])
    expect(rows.map((r) => r.timestamp)).toEqual(['2026-01-01T00:00:00.123Z', '2026-01-01T00:00:01.500Z'])
    const payload = JSON.parse(rows[1]?.payload as string)
    expect(payload.httpRequest).toEqual(slog.httpRequest)
    expect(payload['logging.googleapis.com/trace']).toBe(`projects/test-project/traces/${TRACE}`)
  })

  it('a table made before the trace columns keeps working: the fields stay in its JSON column', async () => {
    const old = DEFAULT_SCHEMA.filter((f) => f.name !== 'trace' && f.name !== 'span_id')
    fake.datasets.add('app_logs')
    fake.tables.set('app_logs.request_logs', {
      tableReference: { projectId: 'test-project', datasetId: 'app_logs', tableId: 'request_logs' },
      schema: { fields: old.map((f) => ({ ...f })) },
    })
    const { app } = await startApp()
    await postAccepted(app, [{ msg: 'hi', traceparent: `00-${TRACE}-${SPAN}-01` }])
    const summary = await app.close()
    expect(summary).toMatchObject({ delivered: 1, dead_lettered: 0 })
    const [row] = fake.rowsOf('app_logs', 'request_logs')
    expect(row).not.toHaveProperty('trace')
    expect(row?.message).toBe('hi')
    expect(JSON.parse(row?.payload as string)['logging.googleapis.com/spanId']).toBe(SPAN)
  })
})

describe('row mapping', () => {
  it('the default schema keeps the whole entry in payload and coerces non-string values for STRING columns', () => {
    const plan = planRows(DEFAULT_SCHEMA)
    const { row, dropped } = toRow({ event_id: 'x', message: { text: 'obj' }, extra: 1 }, plan)
    expect(row).toEqual({
      event_id: 'x',
      message: '{"text":"obj"}',
      payload: '{"event_id":"x","message":{"text":"obj"},"extra":1}',
    })
    expect(dropped).toBe(0)
  })

  it("fills trace and span_id from Cloud Logging's fields unless the entry has its own, and overflows them otherwise", () => {
    const cloud = {
      'logging.googleapis.com/trace': 'projects/p/traces/t',
      'logging.googleapis.com/spanId': 's',
    }
    const plan = planRows(DEFAULT_SCHEMA)
    expect(toRow({ event_id: 'x', ...cloud }, plan).row).toMatchObject({
      trace: 'projects/p/traces/t',
      span_id: 's',
    })
    expect(toRow({ event_id: 'x', trace: 'mine', ...cloud }, plan).row).toMatchObject({
      trace: 'mine',
      span_id: 's',
    })
    const overflow = planRows([
      { name: 'event_id', type: 'STRING' },
      { name: 'trace', type: 'STRING' },
      { name: 'extra', type: 'JSON' },
    ])
    const { row } = toRow({ event_id: 'x', ...cloud }, overflow)
    expect(row).toEqual({
      event_id: 'x',
      trace: 'projects/p/traces/t',
      extra: '{"logging.googleapis.com/spanId":"s"}',
    })
  })
})
