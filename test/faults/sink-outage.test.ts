// Fault scenario 1: both cloud sinks answer 503 for FAULT_OUTAGE_S (20 s) while clients keep sending, then
// recover. Clients meet 429 once the buffers fill and back off; when the sinks return, everything acknowledged
// is delivered to both, once, and nothing is dead-lettered.
import { afterEach, describe, expect, it } from 'vitest'
import {
  type CloudSinks,
  deadLetteredIds,
  expectAccounted,
  getHealth,
  OUTAGE_S,
  runClients,
  startCloudSinks,
  waitForHealth,
} from './harness.js'

let cloud: CloudSinks | undefined
afterEach(async () => {
  await cloud?.stop()
})

describe('fault: sink outage', () => {
  it(`both sinks down for ${OUTAGE_S} s, then back: every acknowledged entry delivered once to each`, {
    timeout: (OUTAGE_S + 120) * 1000,
  }, async () => {
    cloud = await startCloudSinks('outage', { BUFFER_MAX_EVENTS: '5000', RETRY_MAX_BACKOFF: '2' })
    const { sidelog, deadLetterDir } = cloud
    cloud.failAll()
    const startedAt = Date.now()
    let recovered = false
    const recovery = setTimeout(() => {
      cloud?.recover()
      recovered = true
    }, OUTAGE_S * 1000)
    const clients = await runClients({
      url: sidelog.url,
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

    await waitForHealth(sidelog.url, (h) => h.buffer_size === 0 && h.sinks.gcs?.buffered_events === 0)
    const health = await getHealth(sidelog.url)
    expect(health.sinks.gcs?.retries).toBeGreaterThan(0)
    expect(health.sinks.bigquery?.retries).toBeGreaterThan(0)
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })

    expectAccounted('gcs', clients, cloud.inBucket(), await deadLetteredIds(deadLetterDir, 'gcs'))
    expectAccounted('bigquery', clients, cloud.inTable(), await deadLetteredIds(deadLetterDir, 'bigquery'))
    expect(await deadLetteredIds(deadLetterDir, 'gcs')).toEqual([])
    expect(await deadLetteredIds(deadLetterDir, 'bigquery')).toEqual([])
  })
})
