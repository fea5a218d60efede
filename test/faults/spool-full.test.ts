// Fault scenario 5: the spool at its limit (SPOOL_MAX_BYTES stands for the disk). With the sink down, clients fill
// it: new requests get 429 SPOOL_FULL, nothing crashes; when the sink returns, the spool drains, its segments are
// deleted, requests are taken again, and everything acknowledged is delivered once.
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { tempDir } from '../helpers.js'
import {
  bucketIds,
  deadLetteredIds,
  expectAccounted,
  getHealth,
  runClients,
  waitForHealth,
} from './harness.js'

let gcs: FakeGcsServer | undefined
let sidelog: SidelogProcess | undefined
afterEach(async () => {
  sidelog?.child.kill('SIGKILL')
  await gcs?.stop()
})

describe('fault: spool full', () => {
  it('429 SPOOL_FULL while the sink is down, no crash, and all of it delivered once space returns', async () => {
    gcs = new FakeGcsServer()
    await gcs.start()
    gcs.buckets.add('full-logs')
    const dir = await tempDir()
    const spoolDir = join(dir, 'spool')
    sidelog = await spawnSidelog({
      SINKS: 'gcs',
      LOG_BUCKET: 'full-logs',
      GCS_ENDPOINT: gcs.url,
      SPOOL_DIR: spoolDir,
      SPOOL_MAX_BYTES: '2MiB',
      BUFFER_MAX_BYTES: '2MiB',
      BATCH_BYTES: '256KiB',
      MAX_ENTRY_BYTES: '64KiB',
      FLUSH_INTERVAL: '0.2',
      RETRY_INITIAL_BACKOFF: '0.1',
      RETRY_MAX_BACKOFF: '0.5',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    })
    const { url } = sidelog
    gcs.inject({ kind: 'status', status: 503 }, { target: 'upload', times: Number.MAX_SAFE_INTEGER })

    let phase: 'filling' | 'recovering' | 'done' = 'filling'
    const clients = runClients({
      url,
      clients: 4,
      perRequest: 50,
      prefix: 'full',
      backOff: true,
      stop: () => phase === 'done',
    })
    await waitForHealth(url, (h) => (h.refused_requests.SPOOL_FULL ?? 0) >= 5)
    expect((await getHealth(url)).status).toBe('degraded')

    // Space returns: the sink delivers, the spool's segments go, and requests are taken again.
    gcs.clearFaults()
    phase = 'recovering'
    const acceptedBefore = (await getHealth(url)).sinks.gcs?.delivered_events ?? 0
    await waitForHealth(url, (h) => (h.sinks.gcs?.delivered_events ?? 0) > acceptedBefore + 2000)
    phase = 'done'
    const result = await clients
    await waitForHealth(url, (h) => h.buffer_size === 0)
    expect(
      (await readdir(join(spoolDir, 'log'))).filter((n) => n.endsWith('.seg')).length,
    ).toBeLessThanOrEqual(2)
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })

    const inBucket = bucketIds(gcs, 'full-logs')
    expectAccounted('gcs', result, inBucket, await deadLetteredIds(join(dir, 'dead-letter'), 'gcs'))
  })
})
