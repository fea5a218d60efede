// One lifecycle test for every registered sink: create → write → close, then read back what arrived.
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import type { Config, SinkKind } from '../../src/config.js'
import { ConfigError, PermanentError } from '../../src/errors.js'
import type { Batch } from '../../src/event.js'
import { createFileSink } from '../../src/sinks/file.js'
import { sinkFactories } from '../../src/sinks/index.js'
import type { SinkContext } from '../../src/sinks/sink.js'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { listFiles, makeEvents, readJsonlTree, silentLogger, tempDir, testConfig } from '../helpers.js'

const batch: Batch = {
  name: 'inst-000007',
  openedAt: new Date('2026-02-03T04:05:06.789Z'),
  events: makeEvents(3),
  bytes: makeEvents(3).reduce((sum, e) => sum + e.bytes, 0),
}

interface Harness {
  context: SinkContext
  readBack(): Promise<unknown[]>
  stop?(): Promise<void>
}

/** How to run each sink against a local destination and read back what it received. */
const harnesses = {
  async file(config) {
    return {
      context: { config, logger: silentLogger, stdout: new PassThrough() },
      readBack: () => readJsonlTree(config.DATA_DIR),
    }
  },
  async stdout(config) {
    const stdout = new PassThrough()
    let text = ''
    stdout.on('data', (chunk: Buffer) => {
      text += chunk.toString()
    })
    return {
      context: { config, logger: silentLogger, stdout },
      readBack: async () =>
        text
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line)),
    }
  },
  async gcs(config) {
    const fake = new FakeGcsServer()
    await fake.start()
    fake.buckets.add('contract-bucket')
    const gcsConfig = { ...config, GCS_ENDPOINT: fake.url, LOG_BUCKET: 'contract-bucket' }
    return {
      context: { config: gcsConfig, logger: silentLogger, stdout: new PassThrough() },
      readBack: async () =>
        fake.list('contract-bucket').flatMap((o) =>
          o.data
            .toString()
            .split('\n')
            .filter(Boolean)
            .map((line) => JSON.parse(line)),
        ),
      stop: () => fake.stop(),
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
      context: { config: bqConfig, logger: silentLogger, stdout: new PassThrough() },
      readBack: async () => fake.rowsOf('logs', 'entries').map((row) => JSON.parse(row.payload as string)),
      stop: () => fake.stop(),
    }
  },
} satisfies Record<SinkKind, (config: Config) => Promise<Harness>>

describe.each(Object.keys(sinkFactories) as SinkKind[])('sink contract: %s', (kind) => {
  it('writes a batch whole, one JSON object per entry in order, and closes', async () => {
    const harness: Harness = await harnesses[kind](testConfig(await tempDir()))
    const sink = await sinkFactories[kind](harness.context)
    expect(sink.name).toBe(kind)
    await sink.write(batch, { signal: new AbortController().signal })
    await sink.close()
    expect(await harness.readBack()).toEqual(batch.events.map((e) => JSON.parse(e.line)))
    await harness.stop?.()
  })
})

describe('file sink', () => {
  it('lays a batch out as logs/YYYY/MM/DD/HHMMSS-<instance>-<seq>.jsonl, in UTC', async () => {
    const config = testConfig(await tempDir())
    const sink = await createFileSink({ config, logger: silentLogger, stdout: new PassThrough() })
    await sink.write(batch, { signal: new AbortController().signal })
    const files = await listFiles(config.DATA_DIR)
    expect(files).toEqual([join(config.DATA_DIR, 'logs/2026/02/03/040506-inst-000007.jsonl')])
    expect(await readFile(files[0] as string, 'utf8')).toBe(batch.events.map((e) => `${e.line}\n`).join(''))
  })

  it('writes a retried batch once: the same name, no temp files left', async () => {
    const config = testConfig(await tempDir())
    const sink = await createFileSink({ config, logger: silentLogger, stdout: new PassThrough() })
    const signal = new AbortController().signal
    await Promise.all([sink.write(batch, { signal }), sink.write(batch, { signal })])
    await sink.write(batch, { signal })
    expect(await readJsonlTree(config.DATA_DIR)).toHaveLength(3)
    expect(await readdir(join(config.DATA_DIR, 'logs/2026/02/03'))).toEqual(['040506-inst-000007.jsonl'])
  })

  it('makes its directory again if it was removed while running', async () => {
    const config = testConfig(await tempDir())
    const sink = await createFileSink({ config, logger: silentLogger, stdout: new PassThrough() })
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
    const sink = await createFileSink({ config, logger: silentLogger, stdout: new PassThrough() })
    const controller = new AbortController()
    controller.abort(new Error('timed out'))
    await expect(sink.write(batch, { signal: controller.signal })).rejects.toThrow('timed out')
    expect(await listFiles(config.DATA_DIR)).toEqual([])
  })

  it('stops start-up with a ConfigError naming DATA_DIR when it cannot be created', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'plain-file'), '')
    const config = testConfig(dir, { DATA_DIR: join(dir, 'plain-file', 'data') })
    await expect(createFileSink({ config, logger: silentLogger, stdout: new PassThrough() })).rejects.toThrow(
      ConfigError,
    )
    await expect(createFileSink({ config, logger: silentLogger, stdout: new PassThrough() })).rejects.toThrow(
      /^DATA_DIR=.*plain-file\/data: cannot create/,
    )
  })

  it('classifies a path that can never be written as permanent', async () => {
    const dir = await tempDir()
    const config = testConfig(dir)
    const sink = await createFileSink({ config, logger: silentLogger, stdout: new PassThrough() })
    // Replace the day directory's parent with a file: ENOTDIR on every attempt.
    await rm(join(config.DATA_DIR, 'logs'), { recursive: true })
    await writeFile(join(config.DATA_DIR, 'logs'), '')
    await expect(sink.write(batch, { signal: new AbortController().signal })).rejects.toBeInstanceOf(
      PermanentError,
    )
  })
})
