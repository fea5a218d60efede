// Fault scenario 3: SIGTERM while both cloud sinks are down and clients are still sending. sidelog must exit 0
// inside SHUTDOWN_TIMEOUT, and every acknowledged entry must be in each sink's dead-letter directory, once.
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { tempDir } from '../helpers.js'
import { deadLetteredIds, expectAccounted, runClients, waitForHealth } from './harness.js'

const SHUTDOWN_TIMEOUT_S = 3

let gcs: FakeGcsServer | undefined
let bq: FakeBigQueryServer | undefined
let sidelog: SidelogProcess | undefined

afterEach(async () => {
  sidelog?.child.kill('SIGKILL')
  await Promise.all([gcs?.stop(), bq?.stop()])
})

describe('fault: SIGTERM with the sinks down', () => {
  it('exits 0 inside SHUTDOWN_TIMEOUT with every acknowledged entry dead-lettered once per sink', async () => {
    gcs = new FakeGcsServer()
    bq = new FakeBigQueryServer()
    await Promise.all([gcs.start(), bq.start()])
    gcs.buckets.add('down-logs')
    const dir = await tempDir()
    const deadLetterDir = join(dir, 'dead-letter')
    sidelog = await spawnSidelog({
      SINKS: 'gcs,bigquery',
      LOG_BUCKET: 'down-logs',
      GCS_ENDPOINT: gcs.url,
      BQ_ENDPOINT: bq.url,
      BQ_PROJECT: 'test-project',
      BQ_DATASET: 'app_logs',
      BQ_TABLE: 'down',
      FLUSH_INTERVAL: '0.2',
      RETRY_INITIAL_BACKOFF: '0.1',
      SHUTDOWN_TIMEOUT: String(SHUTDOWN_TIMEOUT_S),
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: deadLetterDir,
    })
    const { url, child } = sidelog
    gcs.inject({ kind: 'status', status: 503 }, { target: 'upload', times: Number.MAX_SAFE_INTEGER })
    bq.inject({ kind: 'status', status: 503 }, { target: 'insert', times: Number.MAX_SAFE_INTEGER })

    let exited = false
    const stopped = sidelog.exited.then((exit) => {
      exited = true
      return exit
    })
    const clients = runClients({
      url,
      clients: 4,
      perRequest: 50,
      prefix: 'down',
      backOff: true,
      stop: () => exited,
    })
    // SIGTERM once both sinks have failed and retried with entries in hand, while the clients go on sending.
    await waitForHealth(url, (h) => (h.sinks.gcs?.retries ?? 0) > 2 && (h.sinks.bigquery?.retries ?? 0) > 2)
    const signalledAt = Date.now()
    child.kill('SIGTERM')
    expect(await stopped).toEqual({ code: 0, signal: null })
    const shutdownMs = Date.now() - signalledAt
    expect(shutdownMs).toBeLessThan(SHUTDOWN_TIMEOUT_S * 1000 + 1500)
    const result = await clients

    // The clients went on sending after SIGTERM and were refused: a 503 while draining, or a closed port.
    expect((result.answers['503'] ?? 0) + (result.answers['socket error'] ?? 0)).toBeGreaterThan(0)
    expect(gcs.list('down-logs')).toEqual([])
    expect(bq.rowsOf('app_logs', 'down')).toEqual([])
    expectAccounted('gcs', result, [], await deadLetteredIds(deadLetterDir, 'gcs'))
    expectAccounted('bigquery', result, [], await deadLetteredIds(deadLetterDir, 'bigquery'))
  })
})
