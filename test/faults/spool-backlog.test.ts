// With a spool, the backlog waits on disk: the sink is down, clients go on, and every request is taken (202) while
// memory holds no more than BUFFER_MAX_EVENTS; when the sink returns, the backlog is read from disk and delivered
// once.
import { afterEach, describe, expect, it } from 'vitest'
import {
  deadLetteredIds,
  expectAccounted,
  getHealth,
  runClients,
  type SpooledGcs,
  startSpooledGcs,
} from './harness.js'

const MEMORY_EVENTS = 200
const BACKLOG = 6000

let spooled: SpooledGcs | undefined
afterEach(async () => {
  await spooled?.stop()
})

describe('spool: backlog on disk', () => {
  it(`takes ${BACKLOG} entries while the sink is down with memory for ${MEMORY_EVENTS}, then drains them at SIGTERM, once`, async () => {
    spooled = await startSpooledGcs('backlog', { BUFFER_MAX_EVENTS: String(MEMORY_EVENTS), BATCH_SIZE: '50' })
    const { sidelog, gcs } = spooled
    const { url } = sidelog
    spooled.failUploads()

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
    expectAccounted('gcs', clients, spooled.inBucket(), await deadLetteredIds(spooled.deadLetterDir, 'gcs'))
  })
})
