// The gcs sink end to end against fake-gcs-server in a container (testcontainers). Skips, saying why, when no
// container engine is reachable: `npm test` never depends on one; run this with `npm run test:emulators`.
import { join } from 'node:path'
import { Storage } from '@google-cloud/storage'
import {
  CloudStorageEmulatorContainer,
  type StartedCloudStorageEmulatorContainer,
} from '@testcontainers/gcloud'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postNdjson, spawnSidelog } from '../e2e/spawn.js'
import { tempDir } from '../helpers.js'
import { containerEngineUnavailable } from './engine.js'

const IMAGE = 'fsouza/fake-gcs-server:1.52.2'
const BUCKET = 'emulator-logs'
const TOTAL = 5000

const unavailable = await containerEngineUnavailable()
if (unavailable) console.warn(`SKIPPED gcs emulator suite: no container engine is reachable (${unavailable})`)

describe.skipIf(unavailable !== null)('gcs sink against fake-gcs-server', () => {
  let container: StartedCloudStorageEmulatorContainer
  let storage: Storage

  beforeAll(async () => {
    container = await new CloudStorageEmulatorContainer(IMAGE).start()
    storage = new Storage({ apiEndpoint: container.getEmulatorEndpoint(), projectId: 'test' })
    await storage.createBucket(BUCKET)
  }, 180_000)

  afterAll(async () => {
    await container?.stop()
  })

  it('delivers 5,000 entries from the running process into the bucket exactly once', async () => {
    const dir = await tempDir()
    const sidelog = await spawnSidelog({
      SINKS: 'gcs',
      LOG_BUCKET: BUCKET,
      GCS_ENDPOINT: container.getEmulatorEndpoint(),
      METADATA_SERVER_DETECTION: 'none',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    })
    for (let sent = 0; sent < TOTAL; sent += 100) {
      const entries = Array.from({ length: 100 }, (_, i) => ({ tag: `t${sent + i}` }))
      expect((await postNdjson(sidelog.url, entries)).status).toBe(202)
    }
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })

    const [files] = await storage.bucket(BUCKET).getFiles({ prefix: 'logs/' })
    const tags: string[] = []
    for (const file of files) {
      const [data] = await file.download()
      for (const line of data.toString().split('\n').filter(Boolean)) tags.push(JSON.parse(line).tag)
    }
    expect(tags).toHaveLength(TOTAL)
    expect(new Set(tags).size).toBe(TOTAL)
  })
})
