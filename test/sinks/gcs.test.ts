// The gcs sink through the whole app, with the real @google-cloud/storage client over HTTP against the fake.
import { PassThrough } from 'node:stream'
import { gunzipSync } from 'node:zlib'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { type App, createApp } from '../../src/app.js'
import { ConfigError, PermanentError } from '../../src/errors.js'
import { statusOf } from '../../src/google/errors.js'
import { classifyGcsError } from '../../src/google/storage.js'
import { FakeGcsServer, type StoredObject } from '../fakes/gcs-server.js'
import {
  postAccepted,
  QUICK_RETRIES_MANUAL_FLUSH,
  readJsonlTree,
  silentLogger,
  tempDir,
  testConfig,
} from '../helpers.js'

const BUCKET = 'my-logs'
let fake: FakeGcsServer

beforeEach(async () => {
  process.env.METADATA_SERVER_DETECTION = 'none'
  fake = new FakeGcsServer()
  await fake.start()
  fake.buckets.add(BUCKET)
})

afterEach(async () => {
  vi.useRealTimers()
  await fake.stop()
})

async function startApp(env: Record<string, string> = {}) {
  const dir = await tempDir()
  const config = testConfig(dir, {
    SINKS: 'gcs',
    LOG_BUCKET: BUCKET,
    GCS_ENDPOINT: fake.url,
    ...QUICK_RETRIES_MANUAL_FLUSH,
    ...env,
  })
  const app = await createApp(config, { logger: silentLogger, stdout: new PassThrough() })
  return { app, config }
}

const postEntries = (app: App, count: number, tag = 'e') =>
  postAccepted(
    app,
    Array.from({ length: count }, (_, i) => ({ tag: `${tag}${i}` })),
  )

function rowsOf(objects: StoredObject[]): Record<string, unknown>[] {
  return objects.flatMap((o) => {
    const text = (o.contentEncoding === 'gzip' ? gunzipSync(o.data) : o.data).toString()
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
  })
}

describe('gcs sink', () => {
  it('writes each batch as one JSONL object named logs/YYYY/MM/DD/HHMMSS-<instance>-<seq>.jsonl', async () => {
    const { app } = await startApp()
    await postEntries(app, 3)
    await app.close()
    const objects = fake.list(BUCKET)
    expect(objects).toHaveLength(1)
    expect(objects[0]?.name).toMatch(
      new RegExp(`^logs/\\d{4}/\\d{2}/\\d{2}/\\d{6}-${app.instanceId}-000001\\.jsonl$`),
    )
    expect(objects[0]?.contentType).toBe('application/x-ndjson')
    expect(rowsOf(objects).map((r) => r.tag)).toEqual(['e0', 'e1', 'e2'])
    // One request, not a resumable session, and always create-only.
    expect(fake.uploads().map((r) => [r.query.get('uploadType'), r.query.get('ifGenerationMatch')])).toEqual([
      ['multipart', '0'],
    ])
  })

  it('after 503 three times, delivers the batch once', async () => {
    fake.inject({ kind: 'status', status: 503 }, { times: 3 })
    const { app } = await startApp()
    await postEntries(app, 5)
    const summary = await app.close()
    expect(summary).toMatchObject({ delivered: 5, dead_lettered: 0 })
    expect(fake.list(BUCKET)).toHaveLength(1)
    expect(fake.uploads()).toHaveLength(4)
    // Every attempt wrote the same name.
    expect(new Set(fake.uploads().map((r) => r.query.get('name'))).size).toBe(1)
    expect(app.pipeline.stats().gcs).toMatchObject({ retries: 3, delivered_events: 5, healthy: true })
  })

  it.each([
    ['a single-request upload', {}],
    ['a resumable upload', { GCS_RESUMABLE_THRESHOLD: '0' }],
  ])(
    'when the answer to %s is lost, the retry meets 412 and counts the batch delivered, once',
    async (_, env) => {
      // The request that stores the data loses its answer (for a resumable upload, the PUT, not the session start).
      fake.inject({ kind: 'lost-answer' }, { times: 1, target: 'upload-data' })
      const { app } = await startApp(env)
      await postEntries(app, 4)
      const summary = await app.close()
      expect(summary).toMatchObject({ delivered: 4, dead_lettered: 0 })
      expect(fake.list(BUCKET)).toHaveLength(1)
      expect(rowsOf(fake.list(BUCKET))).toHaveLength(4)
      expect(app.pipeline.stats().gcs).toMatchObject({ retries: 1, delivered_events: 4 })
      // The first answer was lost; the retry really did meet the stored object.
      const statuses = fake.uploads().map((r) => r.status)
      expect(statuses).toContain(undefined)
      expect(statuses.at(-1)).toBe(412)
    },
  )

  it.each([
    ['a single-request upload', {}],
    ['a resumable upload', { GCS_RESUMABLE_THRESHOLD: '0' }],
  ])(
    'when %s arrives damaged, Cloud Storage refuses it against its CRC32C, and the retry stores it intact',
    async (_, env) => {
      const { app } = await startApp(env)
      fake.damageUploads(1)
      // Deleting is refused, as to the Storage Object Creator role: nothing may depend on deleting a damaged copy.
      fake.inject({ kind: 'status', status: 403 }, { times: 10, target: 'metadata' })
      await postEntries(app, 4)
      const summary = await app.close()
      expect(summary).toMatchObject({ delivered: 4, dead_lettered: 0 })
      const [object, ...others] = fake.list(BUCKET)
      expect(others).toHaveLength(0)
      // Every line is whole JSON with its own id: no damaged copy was ever stored under the batch's name.
      const rows = rowsOf([object as NonNullable<typeof object>])
      expect(new Set(rows.map((row) => row.event_id)).size).toBe(4)
      expect(app.pipeline.stats().gcs).toMatchObject({ retries: 1, delivered_events: 4 })
      expect(fake.uploads().map((r) => r.status)).toContain(400)
      expect(fake.requests.some((r) => r.method === 'DELETE')).toBe(false)
    },
  )

  it('uses a resumable upload above GCS_RESUMABLE_THRESHOLD', async () => {
    const { app } = await startApp({ GCS_RESUMABLE_THRESHOLD: '1KiB' })
    await postEntries(app, 50)
    await app.close()
    expect(
      fake.uploads().map((r) => `${r.query.get('uploadType')}:${r.query.get('ifGenerationMatch')}`),
    ).toEqual(['resumable:0', 'resumable:null'])
    expect(rowsOf(fake.list(BUCKET))).toHaveLength(50)
  })

  it('dead-letters a batch on 403, with the reason, without retrying', async () => {
    fake.inject({ kind: 'status', status: 403 }, { times: 1 })
    const { app, config } = await startApp()
    await postEntries(app, 2)
    const summary = await app.close()
    expect(summary).toMatchObject({ delivered: 0, dead_lettered: 2 })
    expect(fake.uploads()).toHaveLength(1)
    const records = await readJsonlTree(config.DEAD_LETTER_DIR)
    expect(records).toHaveLength(2)
    expect(records[0]).toMatchObject({ sink: 'gcs', attempts: 1, entry: { tag: 'e0' } })
    expect(String(records[0]?.reason)).toMatch(/^permanent after 1 attempt\(s\): Cloud Storage answered 403/)
  })

  it('retries a stalled request after SINK_TIMEOUT and a reset connection at once', async () => {
    fake.inject({ kind: 'stall' }, { times: 1 })
    fake.inject({ kind: 'reset' }, { times: 1 })
    const { app } = await startApp({ SINK_TIMEOUT: '0.3' })
    await postEntries(app, 3)
    const summary = await app.close()
    expect(summary).toMatchObject({ delivered: 3, dead_lettered: 0 })
    expect(fake.list(BUCKET)).toHaveLength(1)
    expect(app.pipeline.stats().gcs?.retries).toBe(2)
  })

  it('writes gzip objects as .jsonl.gz with Content-Encoding gzip that round-trip', async () => {
    const { app } = await startApp({ GCS_COMPRESSION: 'gzip', GCS_PREFIX: 'app/', GCS_LAYOUT: 'hive' })
    await postEntries(app, 20)
    await app.close()
    const [object] = fake.list(BUCKET)
    expect(object?.name).toMatch(/^app\/dt=\d{4}-\d{2}-\d{2}\/\d{6}-[0-9a-f]{12}-000001\.jsonl\.gz$/)
    expect(object?.contentEncoding).toBe('gzip')
    expect(object?.contentType).toBe('application/x-ndjson')
    expect(object?.data.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]))
    expect(rowsOf(fake.list(BUCKET)).map((r) => r.tag)).toEqual(Array.from({ length: 20 }, (_, i) => `e${i}`))
  })

  it('gives distinct names to two instances, and to one instance, flushing within the same second', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(new Date('2026-05-06T07:08:09.100Z'))
    const first = await startApp({ BATCH_SIZE: '1' })
    const second = await startApp({ BATCH_SIZE: '1' })
    await postEntries(first.app, 3, 'a')
    await postEntries(second.app, 3, 'b')
    await first.app.close()
    await second.app.close()
    const names = fake.list(BUCKET).map((o) => o.name)
    expect(names).toHaveLength(6)
    expect(new Set(names).size).toBe(6)
    for (const name of names)
      expect(name).toMatch(/^logs\/2026\/05\/06\/070809-[0-9a-f]{12}-00000[1-3]\.jsonl$/)
    expect(rowsOf(fake.list(BUCKET))).toHaveLength(6)
  })
})

describe('gcs sink start-up', () => {
  it('stops start-up with a message naming a bucket that does not exist', async () => {
    const error = await startApp({ LOG_BUCKET: 'no-such-bucket' }).catch((err: unknown) => err)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as Error).message).toMatch(/^LOG_BUCKET=no-such-bucket: the bucket cannot be used: .*404/)
  })

  it('stops start-up when access is denied', async () => {
    fake.inject({ kind: 'status', status: 403 }, { target: 'metadata' })
    const error = await startApp().catch((err: unknown) => err)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as Error).message).toMatch(/^LOG_BUCKET=my-logs: the bucket cannot be used: .*403/)
    expect((error as Error).message).toContain('needs storage.buckets.get')
  })

  it('starts on a transient answer, showing the sink as failing until a write succeeds', async () => {
    fake.inject({ kind: 'status', status: 503 }, { target: 'metadata' })
    const { app } = await startApp()
    const before = (await app.server.inject({ method: 'GET', url: '/health' })).json()
    expect(before).toMatchObject({ status: 'degraded', sinks: { gcs: { healthy: false } } })
    expect(before.sinks.gcs.last_error.message).toMatch(/could not be reached at start-up/)
    await postEntries(app, 1)
    await app.pipeline.flushNow()
    const after = (await app.server.inject({ method: 'GET', url: '/health' })).json()
    expect(after).toMatchObject({ status: 'healthy', sinks: { gcs: { healthy: true, delivered_events: 1 } } })
    await app.close()
  })

  it('a missing bucket with SINKS=gcs is a configuration error before any request', () => {
    expect(() => testConfig('/tmp', { SINKS: 'gcs' })).toThrow(
      /SINKS includes gcs, so LOG_BUCKET \(or GCS_BUCKET\)/,
    )
    expect(() => testConfig('/tmp', { LOG_BUCKET: 'a-b', GCS_BUCKET: 'c-d' })).toThrow(
      /differ: set one of them/,
    )
  })
})

describe('gcs error classification', () => {
  it.each([
    [{ code: 403 }, true],
    [{ code: 404 }, true],
    [{ status: 400 }, true],
    // Damaged on the way: Cloud Storage refused the bytes against the CRC32C sent with them.
    [
      Object.assign(new Error('Provided CRC32C "AAAAAA==" doesn\'t match calculated CRC32C "wdBDMA==".'), {
        code: 400,
      }),
      false,
    ],
    [Object.assign(new Error('Invalid argument.'), { code: 400 }), true],
    // The resumable uploader's shape: a plain object.
    [
      { code: 400, message: 'Provided CRC32C "AAAAAA==" doesn\'t match calculated CRC32C "wdBDMA==".' },
      false,
    ],
    [{ response: { status: 503 } }, false],
    [{ code: 429 }, false],
    [{ code: 408 }, false],
    [{ code: 'ECONNRESET' }, false],
    [new Error('socket hang up'), false],
  ])('%j permanent: %s', (err, permanent) => {
    expect(classifyGcsError(err) instanceof PermanentError).toBe(permanent)
  })

  it('reads 412 from every error shape the client produces', () => {
    expect(statusOf({ code: 412, errors: [{ reason: 'conditionNotMet' }] })).toBe(412)
    expect(statusOf({ status: 412, code: undefined })).toBe(412)
    expect(statusOf({ response: { status: 412 } })).toBe(412)
  })
})
