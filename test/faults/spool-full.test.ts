// Fault scenario 5: the spool at its limit (SPOOL_MAX_BYTES stands for the disk). With the sink down, clients fill
// it: new requests get 429 SPOOL_FULL, nothing crashes; when the sink returns, the spool drains, its segments are
// deleted, requests are taken again, and everything acknowledged is delivered once.
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  deadLetteredIds,
  expectAccounted,
  getHealth,
  runClients,
  type SpooledGcs,
  startSpooledGcs,
  waitForHealth,
} from './harness.js'

let spooled: SpooledGcs | undefined
afterEach(async () => {
  await spooled?.stop()
})

describe('fault: spool full', () => {
  it('429 SPOOL_FULL while the sink is down, no crash, and all of it delivered once space returns', async () => {
    spooled = await startSpooledGcs('full', {
      SPOOL_MAX_BYTES: '2MiB',
      BUFFER_MAX_BYTES: '2MiB',
      BATCH_BYTES: '256KiB',
      MAX_ENTRY_BYTES: '64KiB',
    })
    const { sidelog, gcs } = spooled
    const { url } = sidelog
    spooled.failUploads()

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
      (await readdir(join(spooled.spoolDir, 'log'))).filter((n) => n.endsWith('.seg')).length,
    ).toBeLessThanOrEqual(2)
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })

    expectAccounted('gcs', result, spooled.inBucket(), await deadLetteredIds(spooled.deadLetterDir, 'gcs'))
  })
})
