// With a spool, the backlog waits on disk: the sink is down, clients go on, and every request is taken (202) while
// memory holds no more than BUFFER_MAX_EVENTS; when the sink returns, the backlog is read from disk and delivered
// once.
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { tempDir } from '../helpers.js'
import { bucketIds, deadLetteredIds, expectAccounted, getHealth, runClients } from './harness.js'

const MEMORY_EVENTS = 200
const BACKLOG = 6000

let gcs: FakeGcsServer | undefined
let sidelog: SidelogProcess | undefined
afterEach(async () => {
  sidelog?.child.kill('SIGKILL')
  await gcs?.stop()
})

describe('spool: backlog on disk', () => {
  it(`takes ${BACKLOG} entries while the sink is down with memory for ${MEMORY_EVENTS}, then drains them at SIGTERM, once`, async () => {
    gcs = new FakeGcsServer()
    await gcs.start()
    gcs.buckets.add('backlog-logs')
    const dir = await tempDir()
    sidelog = await spawnSidelog({
      SINKS: 'gcs',
      LOG_BUCKET: 'backlog-logs',
      GCS_ENDPOINT: gcs.url,
      SPOOL_DIR: join(dir, 'spool'),
      BUFFER_MAX_EVENTS: String(MEMORY_EVENTS),
      BATCH_SIZE: '50',
      FLUSH_INTERVAL: '0.2',
      RETRY_INITIAL_BACKOFF: '0.1',
      RETRY_MAX_BACKOFF: '0.5',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    })
    const { url } = sidelog
    gcs.inject({ kind: 'status', status: 503 }, { target: 'upload', times: Number.MAX_SAFE_INTEGER })

    let acknowledged = 0
    const clients = await runClients({
      url,
      clients: 4,
      perRequest: 50,
      prefix: 'backlog',
      backOff: true,
      stop: () => acknowledged >= BACKLOG,
      onAcknowledged: (n) => {
        acknowledged += n
      },
    })
    // Not one refusal: the disk took what memory could not.
    expect(clients.answers['429']).toBeUndefined()
    expect(clients.acknowledged.size).toBeGreaterThanOrEqual(BACKLOG)
    const during = await getHealth(url)
    expect(during.sinks.gcs?.delivered_events).toBe(0)
    expect(during.sinks.gcs?.buffered_events).toBeLessThanOrEqual(MEMORY_EVENTS)
    expect(during.sinks.gcs?.spooled_events).toBeGreaterThan(BACKLOG - MEMORY_EVENTS - 1)

    // The sink returns and SIGTERM comes at once: the drain reads the backlog from disk and delivers it.
    gcs.clearFaults()
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    const stopped = sidelog.logs.find((l) => String(l.msg).startsWith('stopped'))
    expect(stopped).toMatchObject({ left_in_spool: 0, dead_lettered: 0, timed_out: false })
    expectAccounted(
      'gcs',
      clients,
      bucketIds(gcs, 'backlog-logs'),
      await deadLetteredIds(join(dir, 'dead-letter'), 'gcs'),
    )
  })
})
