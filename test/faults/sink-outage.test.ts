// Fault scenario 1: both cloud sinks answer 503 for FAULT_OUTAGE_S (20 s) while clients keep sending, then
// recover. Clients meet 429 once the buffers fill and back off; when the sinks return, everything acknowledged
// is delivered to both, once, and nothing is dead-lettered.
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { tempDir } from '../helpers.js'
import {
  deadLetteredIds,
  expectAccounted,
  getHealth,
  OUTAGE_S,
  runClients,
  waitForHealth,
} from './harness.js'

let gcs: FakeGcsServer | undefined
let bq: FakeBigQueryServer | undefined
let sidelog: SidelogProcess | undefined

afterEach(async () => {
  sidelog?.child.kill('SIGKILL')
  await Promise.all([gcs?.stop(), bq?.stop()])
})

describe('fault: sink outage', () => {
  it(`both sinks down for ${OUTAGE_S} s, then back: every acknowledged entry delivered once to each`, {
    timeout: (OUTAGE_S + 120) * 1000,
  }, async () => {
    gcs = new FakeGcsServer()
    bq = new FakeBigQueryServer()
    await Promise.all([gcs.start(), bq.start()])
    gcs.buckets.add('outage-logs')
    const dir = await tempDir()
    const deadLetterDir = join(dir, 'dead-letter')
    sidelog = await spawnSidelog({
      SINKS: 'gcs,bigquery',
      LOG_BUCKET: 'outage-logs',
      GCS_ENDPOINT: gcs.url,
      BQ_ENDPOINT: bq.url,
      BQ_PROJECT: 'test-project',
      BQ_DATASET: 'app_logs',
      BQ_TABLE: 'outage',
      BUFFER_MAX_EVENTS: '5000',
      FLUSH_INTERVAL: '0.2',
      RETRY_INITIAL_BACKOFF: '0.1',
      RETRY_MAX_BACKOFF: '2',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: deadLetterDir,
    })
    const url = sidelog.url
    gcs.inject({ kind: 'status', status: 503 }, { target: 'upload', times: Number.MAX_SAFE_INTEGER })
    bq.inject({ kind: 'status', status: 503 }, { target: 'insert', times: Number.MAX_SAFE_INTEGER })

    const startedAt = Date.now()
    let recovered = false
    const recovery = setTimeout(() => {
      gcs?.clearFaults()
      bq?.clearFaults()
      recovered = true
    }, OUTAGE_S * 1000)
    const clients = await runClients({
      url,
      clients: 6,
      perRequest: 50,
      prefix: 'outage',
      backOff: true,
      // Three more seconds of traffic after the sinks return.
      stop: () => Date.now() - startedAt > (OUTAGE_S + 3) * 1000,
    })
    clearTimeout(recovery)
    expect(recovered).toBe(true)
    expect(clients.answers['429']).toBeGreaterThan(0)

    await waitForHealth(url, (h) => h.buffer_size === 0 && h.sinks.gcs?.buffered_events === 0)
    const health = await getHealth(url)
    expect(health.sinks.gcs?.retries).toBeGreaterThan(0)
    expect(health.sinks.bigquery?.retries).toBeGreaterThan(0)
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })

    const inBucket = gcs.list('outage-logs').flatMap((o) =>
      o.data
        .toString()
        .trim()
        .split('\n')
        .map((line) => (JSON.parse(line) as { event_id: string }).event_id),
    )
    const inTable = bq.rowsOf('app_logs', 'outage').map((r) => r.event_id as string)
    expectAccounted('gcs', clients, inBucket, await deadLetteredIds(deadLetterDir, 'gcs'))
    expectAccounted('bigquery', clients, inTable, await deadLetteredIds(deadLetterDir, 'bigquery'))
    expect(await deadLetteredIds(deadLetterDir, 'gcs')).toEqual([])
    expect(await deadLetteredIds(deadLetterDir, 'bigquery')).toEqual([])
  })
})
