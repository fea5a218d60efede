// The bigquery sink end to end against goccy/bigquery-emulator in a container (testcontainers). Skips, saying why,
// when no container engine is reachable: `npm test` never depends on one; run it with `npm run test:emulators`.
import { join } from 'node:path'
import { BigQuery } from '@google-cloud/bigquery'
import { BigQueryEmulatorContainer, type StartedBigQueryEmulatorContainer } from '@testcontainers/gcloud'
import { OAuth2Client } from 'google-auth-library'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postNdjson, spawnSidelog } from '../e2e/spawn.js'
import { tempDir } from '../helpers.js'
import { containerEngineUnavailable } from './engine.js'

const IMAGE = 'ghcr.io/goccy/bigquery-emulator:0.6.6'
const PROJECT = 'test-project'
const TOTAL = 2000

const unavailable = await containerEngineUnavailable()
if (unavailable)
  console.warn(`SKIPPED bigquery emulator suite: no container engine is reachable (${unavailable})`)

describe.skipIf(unavailable !== null)('bigquery sink against bigquery-emulator', () => {
  let container: StartedBigQueryEmulatorContainer

  beforeAll(async () => {
    container = await new BigQueryEmulatorContainer(IMAGE).withProjectId(PROJECT).start()
  }, 180_000)

  afterAll(async () => {
    await container?.stop()
  })

  it('creates the table and streams 2,000 entries into it exactly once', async () => {
    const dir = await tempDir()
    const sidelog = await spawnSidelog({
      SINKS: 'bigquery',
      BQ_ENDPOINT: container.getEmulatorEndpoint(),
      BQ_PROJECT: PROJECT,
      BQ_DATASET: 'app_logs',
      BQ_TABLE: 'request_logs',
      METADATA_SERVER_DETECTION: 'none',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    })
    for (let sent = 0; sent < TOTAL; sent += 100) {
      const entries = Array.from({ length: 100 }, (_, i) => ({ tag: `t${sent + i}`, message: 'hello' }))
      expect((await postNdjson(sidelog.url, entries)).status).toBe(202)
    }
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })

    const auth = new OAuth2Client()
    auth.setCredentials({ access_token: 'emulator', expiry_date: Date.now() + 86_400_000 })
    const bigquery = new BigQuery({
      projectId: PROJECT,
      apiEndpoint: container.getEmulatorEndpoint(),
      authClient: auth,
    })
    const [rows] = await bigquery.query('SELECT event_id FROM app_logs.request_logs')
    expect(rows).toHaveLength(TOTAL)
    expect(new Set(rows.map((r: { event_id: string }) => r.event_id)).size).toBe(TOTAL)
  })
})
