import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { batchingFor } from '../../src/pipeline/batching.js'

const MiB = 1024 ** 2

describe('batchingFor', () => {
  it('gives each sink the defaults that fit its destination', () => {
    const config = loadConfig({})
    expect(batchingFor('file', config)).toEqual({
      maxBatchEvents: 10_000,
      maxBatchBytes: MiB,
      flushIntervalMs: 5000,
    })
    expect(batchingFor('stdout', config)).toEqual({
      maxBatchEvents: 1000,
      maxBatchBytes: MiB,
      flushIntervalMs: 1000,
    })
    expect(batchingFor('gcs', config)).toEqual({
      maxBatchEvents: 12_500,
      maxBatchBytes: 4 * MiB,
      flushIntervalMs: 30_000,
    })
    expect(batchingFor('bigquery', config)).toEqual({
      maxBatchEvents: 500,
      maxBatchBytes: 5 * MiB,
      flushIntervalMs: 5000,
    })
    expect(batchingFor('bigquery', loadConfig({ BQ_MODE: 'load' }))).toMatchObject({
      maxBatchBytes: 4 * MiB,
      flushIntervalMs: 30_000,
    })
  })

  it('takes the sink own setting first, then the general one, then the default', () => {
    const general = loadConfig({ BATCH_SIZE: '200', BATCH_BYTES: '2MiB', FLUSH_INTERVAL: '2' })
    expect(batchingFor('gcs', general)).toEqual({
      maxBatchEvents: 200,
      maxBatchBytes: 2 * MiB,
      flushIntervalMs: 2000,
    })
    const both = loadConfig({ BATCH_SIZE: '200', GCS_BATCH_SIZE: '300', GCS_FLUSH_INTERVAL: '0.5' })
    expect(batchingFor('gcs', both)).toEqual({
      maxBatchEvents: 300,
      maxBatchBytes: 4 * MiB,
      flushIntervalMs: 500,
    })
    // Another sink's own setting changes nothing here.
    expect(batchingFor('file', both)).toMatchObject({ maxBatchEvents: 200, flushIntervalMs: 5000 })
  })

  it('shrinks a default to a quarter of a smaller buffer, but never below one entry', () => {
    const small = loadConfig({
      BUFFER_MAX_BYTES: '8MiB',
      BUFFER_MAX_EVENTS: '1000',
      MAX_ENTRY_BYTES: '64KiB',
    })
    expect(batchingFor('gcs', small)).toMatchObject({ maxBatchEvents: 250, maxBatchBytes: 2 * MiB })
    const tiny = loadConfig({ BUFFER_MAX_BYTES: '100KiB', MAX_ENTRY_BYTES: '64KiB', BUFFER_MAX_EVENTS: '2' })
    expect(batchingFor('file', tiny)).toMatchObject({ maxBatchEvents: 1, maxBatchBytes: 64 * 1024 })
  })
})
