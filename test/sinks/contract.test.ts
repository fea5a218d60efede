// The sink contract (sink.ts), checked for every registered sink: create → write → close and read back what arrived;
// a retried batch lands once (where the destination can tell, by name or insertId); an attempt aborted before it
// starts publishes nothing; a refusal no retry can fix is a PermanentError.
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import type { Config, SinkKind } from '../../src/config.js'
import { ConfigError, PartialWriteError, PermanentError } from '../../src/errors.js'
import type { Batch } from '../../src/event.js'
import { SINK_KINDS } from '../../src/sinks/index.js'
import type { StartedSink } from '../../src/sinks/sink.js'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import {
  listFiles,
  makeEvents,
  neverAborted,
  readJsonlTree,
  startSink,
  tempDir,
  testConfig,
} from '../helpers.js'

const batch: Batch = {
  name: 'inst-000007',
  openedAt: new Date('2026-02-03T04:05:06.789Z'),
  events: makeEvents(3),
  bytes: makeEvents(3).reduce((sum, e) => sum + e.bytes, 0),
}

interface Harness {
  /** The configuration the sink starts with (its own settings pointed at the local destination). */
  config: Config
  /** Where the stdout sink writes. */
  stdout?: PassThrough
  readBack(): Promise<unknown[]>
  stop?(): Promise<void>
  /** Makes the destination refuse the next write for good (403, a path that cannot be written), if it can. */
  refuse?(): Promise<void>
  /**
   * Whether the same batch written twice lands once. stdout cannot tell (a stream has no names), and need not: a write
   * to it never fails after writing, so the retry layer never sends a delivered batch again.
   */
  idempotent: boolean
}

/** How to run each sink against a local destination and read back what it received. */
const harnesses = {
  async file(config) {
    return {
      config,
      readBack: () => readJsonlTree(join(config.DATA_DIR, 'logs')),
      idempotent: true,
      // The day's directory taken by a file: a path that can never be written.
      refuse: async () => {
        const day = join(config.DATA_DIR, 'logs', '2026', '02')
        await rm(day, { recursive: true, force: true })
        await writeFile(day, 'not a directory')
      },
    }
  },
  async stdout(config) {
    const stdout = new PassThrough()
    let text = ''
    stdout.on('data', (chunk: Buffer) => {
      text += chunk.toString()
    })
    return {
      config,
      stdout,
      readBack: async () =>
        text
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line)),
      idempotent: false,
    }
  },
  async gcs(config) {
    const fake = new FakeGcsServer()
    await fake.start()
    fake.buckets.add('contract-bucket')
    const gcsConfig = { ...config, GCS_ENDPOINT: fake.url, LOG_BUCKET: 'contract-bucket' }
    return {
      config: gcsConfig,
      readBack: async () =>
        fake.list('contract-bucket').flatMap((o) =>
          o.data
            .toString()
            .split('\n')
            .filter(Boolean)
            .map((line) => JSON.parse(line)),
        ),
      stop: () => fake.stop(),
      idempotent: true,
      refuse: async () => fake.inject({ kind: 'status', status: 403 }, { target: 'upload' }),
    }
  },
  async bigquery(config) {
    const fake = new FakeBigQueryServer()
    await fake.start()
    const bqConfig = {
      ...config,
      BQ_ENDPOINT: fake.url,
      BQ_PROJECT: 'test-project',
      BQ_DATASET: 'logs',
      BQ_TABLE: 'entries',
    }
    return {
      config: bqConfig,
      readBack: async () => fake.rowsOf('logs', 'entries').map((row) => JSON.parse(row.payload as string)),
      stop: () => fake.stop(),
      idempotent: true,
      refuse: async () => fake.inject({ kind: 'status', status: 403 }, { target: 'insert' }),
    }
  },
} satisfies Record<SinkKind, (config: Config) => Promise<Harness>>

/** The sink `kind`, started as sidelog starts it, against its harness's destination. */
const start = (kind: SinkKind, harness: Harness): Promise<StartedSink> =>
  startSink(kind, harness.config, harness.stdout)

describe.each(SINK_KINDS)('sink contract: %s', (kind) => {
  it('writes a batch whole, one JSON object per entry in order, and closes', async () => {
    const harness: Harness = await harnesses[kind](testConfig(await tempDir()))
    const sink = await start(kind, harness)
    expect(sink.name).toBe(kind)
    await sink.write(batch, { signal: new AbortController().signal })
    await sink.close(neverAborted)
    expect(await harness.readBack()).toEqual(batch.events.map((e) => JSON.parse(e.line)))
    await harness.stop?.()
  })

  it('lands a retried batch once (same name, same insertIds), where the destination can tell', async () => {
    const harness: Harness = await harnesses[kind](testConfig(await tempDir()))
    const sink = await start(kind, harness)
    await sink.write(batch, { signal: new AbortController().signal })
    await sink.write(batch, { signal: new AbortController().signal })
    await sink.close(neverAborted)
    const once = batch.events.map((e) => JSON.parse(e.line))
    expect(await harness.readBack()).toEqual(harness.idempotent ? once : [...once, ...once])
    await harness.stop?.()
  })

  it('publishes nothing for an attempt aborted before it starts', async () => {
    const harness: Harness = await harnesses[kind](testConfig(await tempDir()))
    const sink = await start(kind, harness)
    const controller = new AbortController()
    controller.abort(new Error('timed out'))
    await expect(sink.write(batch, { signal: controller.signal })).rejects.toThrow('timed out')
    await sink.close(neverAborted)
    expect(await harness.readBack()).toEqual([])
    await harness.stop?.()
  })

  it('closes as soon as the shutdown budget is over, keeping what it has written', async () => {
    const harness: Harness = await harnesses[kind](testConfig(await tempDir()))
    const sink = await start(kind, harness)
    await sink.write(batch, { signal: new AbortController().signal })
    const budgetOver = new AbortController()
    budgetOver.abort(new Error('shutdown deadline reached'))
    // Resolves (the pipeline would stop waiting anyway) and does not throw for an aborted budget.
    await expect(sink.close(budgetOver.signal)).resolves.toBeUndefined()
    expect(await harness.readBack()).toEqual(batch.events.map((e) => JSON.parse(e.line)))
    await harness.stop?.()
  })

  it('classifies a refusal no retry can fix as a PermanentError', async () => {
    const harness: Harness = await harnesses[kind](testConfig(await tempDir()))
    const sink = await start(kind, harness)
    if (!harness.refuse) {
      // stdout has no refusal to classify: a write to a local stream either completes or the process is gone.
      expect(kind).toBe('stdout')
      return
    }
    await sink.write({ ...batch, name: 'inst-000001' }, { signal: new AbortController().signal })
    await harness.refuse()
    const err = await sink.write(batch, { signal: new AbortController().signal }).then(
      () => undefined,
      (e: unknown) => e,
    )
    // As the retry layer reads it: a PermanentError, or a partial write whose pending rows failed for good.
    const permanent = err instanceof PartialWriteError ? err.cause : err
    expect(permanent).toBeInstanceOf(PermanentError)
    await sink.close(neverAborted)
    await harness.stop?.()
  })
})

describe('file sink', () => {
  it('lays a batch out as logs/YYYY/MM/DD/HHMMSS-<instance>-<seq>.jsonl, in UTC', async () => {
    const config = testConfig(await tempDir())
    const sink = await startSink('file', config)
    await sink.write(batch, { signal: new AbortController().signal })
    const files = await listFiles(config.DATA_DIR)
    expect(files).toEqual([join(config.DATA_DIR, 'logs/2026/02/03/040506-inst-000007.jsonl')])
    expect(await readFile(files[0] as string, 'utf8')).toBe(batch.events.map((e) => `${e.line}\n`).join(''))
  })

  it('writes a retried batch once: the same name, no temp files left', async () => {
    const config = testConfig(await tempDir())
    const sink = await startSink('file', config)
    const signal = new AbortController().signal
    await Promise.all([sink.write(batch, { signal }), sink.write(batch, { signal })])
    await sink.write(batch, { signal })
    expect(await readJsonlTree(config.DATA_DIR)).toHaveLength(3)
    expect(await readdir(join(config.DATA_DIR, 'logs/2026/02/03'))).toEqual(['040506-inst-000007.jsonl'])
  })

  it('makes its directory again if it was removed while running', async () => {
    const config = testConfig(await tempDir())
    const sink = await startSink('file', config)
    const signal = new AbortController().signal
    await sink.write(batch, { signal })
    await rm(join(config.DATA_DIR, 'logs'), { recursive: true })
    // The first attempt fails on the missing directory (a transient error: the retry layer tries again)...
    await expect(sink.write(batch, { signal })).rejects.toMatchObject({ code: 'ENOENT' })
    // ...and the next one recreates it.
    await sink.write(batch, { signal })
    expect(await readJsonlTree(config.DATA_DIR)).toHaveLength(3)
  })

  it('publishes nothing when the attempt is aborted before the rename', async () => {
    const config = testConfig(await tempDir())
    const sink = await startSink('file', config)
    const controller = new AbortController()
    controller.abort(new Error('timed out'))
    await expect(sink.write(batch, { signal: controller.signal })).rejects.toThrow('timed out')
    expect(await listFiles(config.DATA_DIR)).toEqual([])
  })

  it('stops start-up with a ConfigError naming DATA_DIR when it cannot be created', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'plain-file'), '')
    const config = testConfig(dir, { DATA_DIR: join(dir, 'plain-file', 'data') })
    await expect(startSink('file', config)).rejects.toThrow(ConfigError)
    await expect(startSink('file', config)).rejects.toThrow(/^DATA_DIR=.*plain-file\/data: cannot create/)
  })

  it('classifies a path that can never be written as permanent', async () => {
    const dir = await tempDir()
    const config = testConfig(dir)
    const sink = await startSink('file', config)
    // Replace the day directory's parent with a file: ENOTDIR on every attempt.
    await rm(join(config.DATA_DIR, 'logs'), { recursive: true })
    await writeFile(join(config.DATA_DIR, 'logs'), '')
    await expect(sink.write(batch, { signal: new AbortController().signal })).rejects.toBeInstanceOf(
      PermanentError,
    )
  })
})
