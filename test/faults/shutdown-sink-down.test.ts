// Fault scenario 3: SIGTERM while both cloud sinks are down and clients are still sending. sidelog must exit 0
// inside SHUTDOWN_TIMEOUT, and every acknowledged entry must be in each sink's dead-letter directory, once.
import { afterEach, describe, expect, it } from 'vitest'
import {
  type CloudSinks,
  deadLetteredIds,
  expectAccounted,
  runClients,
  startCloudSinks,
  waitForHealth,
} from './harness.js'

const SHUTDOWN_TIMEOUT_S = 3

let cloud: CloudSinks | undefined
afterEach(async () => {
  await cloud?.stop()
})

describe('fault: SIGTERM with the sinks down', () => {
  it('exits 0 inside SHUTDOWN_TIMEOUT with every acknowledged entry dead-lettered once per sink', async () => {
    cloud = await startCloudSinks('down', { SHUTDOWN_TIMEOUT: String(SHUTDOWN_TIMEOUT_S) })
    const { sidelog, deadLetterDir } = cloud
    const { url, child } = sidelog
    cloud.failAll()

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
    expect(Date.now() - signalledAt).toBeLessThan(SHUTDOWN_TIMEOUT_S * 1000 + 1500)
    const result = await clients

    // The clients went on sending after SIGTERM and were refused: a 503 while draining, or a closed port.
    expect((result.answers['503'] ?? 0) + (result.answers['socket error'] ?? 0)).toBeGreaterThan(0)
    expect(cloud.inBucket()).toEqual([])
    expect(cloud.inTable()).toEqual([])
    expectAccounted('gcs', result, [], await deadLetteredIds(deadLetterDir, 'gcs'))
    expectAccounted('bigquery', result, [], await deadLetteredIds(deadLetterDir, 'bigquery'))
  })
})
