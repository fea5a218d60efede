// Fault scenario: BigQuery does not answer when sidelog starts (nothing listens on its endpoint yet, as when the
// sidecar wins a start-up race). sidelog must start anyway, say /health degraded, take entries, and once BigQuery
// answers deliver each acknowledged entry exactly once, in stream and in load mode; then exit 0 on SIGTERM.
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { closedPort, tempDir } from '../helpers.js'
import { deadLetteredIds, expectAccounted, getHealth, runClients, waitForHealth } from './harness.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
})

describe.each(['stream', 'load'] as const)('fault: BigQuery unreachable at start-up (%s mode)', (mode) => {
  it('starts degraded, takes entries, recovers when BigQuery answers, and delivers each once', async () => {
    const gcs = new FakeGcsServer()
    await gcs.start()
    gcs.buckets.add('staging')
    const bq = new FakeBigQueryServer()
    bq.readObject = (bucket, name) => gcs.list(bucket).find((o) => o.name === name)?.data
    const port = await closedPort()
    const dir = await tempDir()
    const deadLetterDir = join(dir, 'dead-letter')
    const startedAt = Date.now()
    const sidelog: SidelogProcess = await spawnSidelog({
      SINKS: 'bigquery',
      BQ_MODE: mode,
      BQ_LOAD_INTERVAL: '0.5',
      LOG_BUCKET: 'staging',
      GCS_ENDPOINT: gcs.url,
      BQ_ENDPOINT: `http://127.0.0.1:${port}`,
      BQ_PROJECT: 'test-project',
      BQ_DATASET: 'app_logs',
      BQ_TABLE: 'late',
      FLUSH_INTERVAL: '0.2',
      RETRY_INITIAL_BACKOFF: '0.1',
      RETRY_MAX_BACKOFF: '0.5',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: deadLetterDir,
      METADATA_SERVER_DETECTION: 'none',
    })
    cleanups.push(async () => {
      sidelog.child.kill('SIGKILL')
      await Promise.all([gcs.stop(), bq.stop().catch(() => {})])
    })
    const startupMs = Date.now() - startedAt

    // Started (listening), not stopped with "invalid configuration"; /health says why it is degraded.
    expect(sidelog.logs.some((l) => l.msg === 'invalid configuration')).toBe(false)
    const before = await getHealth(sidelog.url)
    expect(before.status).toBe('degraded')
    expect(before.sinks.bigquery).toMatchObject({ healthy: false })
    expect(JSON.stringify(before.sinks.bigquery)).toMatch(
      /the bigquery sink's destination could not be reached at start-up/,
    )

    // Entries taken while BigQuery is away, until the sink has failed a few writes with them in hand.
    let stop = false
    const clients = runClients({
      url: sidelog.url,
      clients: 2,
      perRequest: 50,
      prefix: `late-${mode}`,
      backOff: true,
      stop: () => stop,
    })
    await waitForHealth(sidelog.url, (h) => (h.sinks.bigquery?.retries ?? 0) >= 3 && h.buffer_size > 0)
    const whileDown = await getHealth(sidelog.url)
    expect(whileDown.status).toBe('degraded')

    await bq.start(port)
    const upAt = Date.now()
    await waitForHealth(
      sidelog.url,
      (h) => h.status === 'healthy' && (h.sinks.bigquery?.delivered_events ?? 0) > 0,
    )
    const recoveredMs = Date.now() - upAt
    stop = true
    const result = await clients

    // Everything acknowledged is delivered before exit: the drain hands the rest to BigQuery.
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    if (mode === 'load') await waitForRows(bq, result.acknowledged.size)
    const rows = bq.rowsOf('app_logs', 'late').map((row) => row.event_id as string)
    const deadLettered = await deadLetteredIds(deadLetterDir, 'bigquery')
    expect(deadLettered).toEqual([])
    expectAccounted('bigquery', result, rows, deadLettered)
    console.log(
      `[${mode}] started in ${startupMs} ms with BigQuery down; ${whileDown.sinks.bigquery?.retries} failed writes; ` +
        `healthy ${recoveredMs} ms after BigQuery came up; ${result.acknowledged.size} acknowledged, ${rows.length} rows`,
    )
  })
})

/** Load mode: the final job is submitted at shutdown and finishes in the fake right away; wait for its rows. */
async function waitForRows(bq: FakeBigQueryServer, count: number): Promise<void> {
  const deadline = Date.now() + 30_000
  while (bq.rowsOf('app_logs', 'late').length < count && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
