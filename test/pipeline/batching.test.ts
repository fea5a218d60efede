import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { batchingFor } from '../../src/pipeline/batching.js'
import { sinkModule } from '../../src/sinks/index.js'

const MiB = 1024 ** 2

describe('batchingFor', () => {
  it('gives each sink the defaults that fit its destination', () => {
    const config = loadConfig({})
    // The file sink's built-in 10,000 entries is shrunk to a quarter of the buffer's 15,000 (1 MiB binds first for
    // entries of about 450 bytes anyway).
    expect(batchingFor(sinkModule('file'), config, config)).toEqual({
      maxBatchEvents: 3_750,
      maxBatchBytes: MiB,
      flushIntervalMs: 5000,
    })
    expect(batchingFor(sinkModule('stdout'), config, config)).toEqual({
      maxBatchEvents: 1000,
      maxBatchBytes: MiB,
      flushIntervalMs: 1000,
    })
    expect(batchingFor(sinkModule('gcs'), config, config)).toEqual({
      // A quarter of the buffer's 15,000 entries: the built-in 100,000 is shrunk to fit.
      maxBatchEvents: 3_750,
      maxBatchBytes: 4 * MiB,
      flushIntervalMs: 30_000,
    })
    expect(batchingFor(sinkModule('bigquery'), config, config)).toEqual({
      maxBatchEvents: 500,
      maxBatchBytes: 5 * MiB,
      flushIntervalMs: 5000,
    })
    const load = loadConfig({ BQ_MODE: 'load' })
    expect(batchingFor(sinkModule('bigquery'), load, load)).toMatchObject({
      maxBatchBytes: 4 * MiB,
      flushIntervalMs: 30_000,
    })
  })

  it('takes the sink own setting first, then the general one, then the default', () => {
    const general = loadConfig({ BATCH_SIZE: '200', BATCH_BYTES: '2MiB', FLUSH_INTERVAL: '2' })
    expect(batchingFor(sinkModule('gcs'), general, general)).toEqual({
      maxBatchEvents: 200,
      maxBatchBytes: 2 * MiB,
      flushIntervalMs: 2000,
    })
    const both = loadConfig({ BATCH_SIZE: '200', GCS_BATCH_SIZE: '300', GCS_FLUSH_INTERVAL: '0.5' })
    expect(batchingFor(sinkModule('gcs'), both, both)).toEqual({
      maxBatchEvents: 300,
      maxBatchBytes: 4 * MiB,
      flushIntervalMs: 500,
    })
    // Another sink's own setting changes nothing here.
    expect(batchingFor(sinkModule('file'), both, both)).toMatchObject({
      maxBatchEvents: 200,
      flushIntervalMs: 5000,
    })
  })

  it('shrinks a default to a quarter of a smaller buffer, but never below one entry', () => {
    const small = loadConfig({
      BUFFER_MAX_BYTES: '8MiB',
      BUFFER_MAX_EVENTS: '1000',
      MAX_ENTRY_BYTES: '64KiB',
    })
    expect(batchingFor(sinkModule('gcs'), small, small)).toMatchObject({
      maxBatchEvents: 250,
      maxBatchBytes: 2 * MiB,
    })
    const tiny = loadConfig({ BUFFER_MAX_BYTES: '100KiB', MAX_ENTRY_BYTES: '64KiB', BUFFER_MAX_EVENTS: '2' })
    expect(batchingFor(sinkModule('file'), tiny, tiny)).toMatchObject({
      maxBatchEvents: 1,
      maxBatchBytes: 64 * 1024,
    })
  })
})
