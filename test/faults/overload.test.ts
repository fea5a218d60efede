// Fault scenario 4: overload. Clients send as fast as they can for FAULT_OVERLOAD_S (30 s) and never wait
// Retry-After. On two cores shared with the clients that is about twice what sidelog accepts, not the issue's
// ten times: the clients cannot generate more (the README's bench drives it harder). sidelog runs with the container image's heap flags. The
// excess must get 429, peak RSS must stay under the documented bound, and everything acknowledged must be
// delivered once.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { tempDir } from '../helpers.js'
import {
  expectAccounted,
  fileIds,
  getHealth,
  OVERLOAD_S,
  peakRssMiB,
  runClients,
  waitForHealth,
} from './harness.js'

/** Refusals /health must have counted before the clients stop, however fast the machine is. */
const MIN_REFUSED = 100
/** The safety net: clients stop by then whatever /health says. */
const MAX_OVERLOAD_S = OVERLOAD_S * 4

/** The bound the README documents for the container image's settings, under the 256 MiB the deploy files give. */
const PEAK_RSS_BOUND_MIB = 200

const dockerfile = readFileSync(fileURLToPath(new URL('../../Dockerfile', import.meta.url)), 'utf8')
const IMAGE_NODE_OPTIONS = /NODE_OPTIONS="([^"]+)"/.exec(dockerfile)?.[1] ?? ''

let sidelog: SidelogProcess | undefined
afterEach(() => {
  sidelog?.child.kill('SIGKILL')
})

describe('fault: overload', () => {
  it(`${OVERLOAD_S} s of clients that never back off: 429s, bounded RSS, every acknowledged entry delivered once`, {
    timeout: (OVERLOAD_S * 4 + 120) * 1000,
  }, async () => {
    expect(IMAGE_NODE_OPTIONS).toContain('--max-old-space-size')
    const dir = await tempDir()
    sidelog = await spawnSidelog({
      NODE_OPTIONS: IMAGE_NODE_OPTIONS,
      // With the default batching sidelog takes all that these clients can send (README, Performance): batches of
      // 100 entries (the old default) make the file sink the bottleneck again, so that there is an excess to refuse.
      FILE_BATCH_SIZE: '100',
      // Refused at once, as this test is about the refusals: with the default wait (0.1 s) this sink takes in nearly
      // all these clients send on a fast machine (103,700 entries/s acknowledged, 141 answers of 429 in 150 s, peak
      // RSS 101 MiB, in one run), and the run lasts until MIN_REFUSED refusals.
      BUFFER_FULL_WAIT: '0',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    })
    const { url, child } = sidelog
    const startedAt = Date.now()
    // The run lasts OVERLOAD_S and, on a machine fast enough to keep up for a while, until /health has counted
    // refusals: how many requests a machine's speed lets through is not what this test asserts.
    let refusedSeen = 0
    const watching = (async () => {
      while (refusedSeen < MIN_REFUSED && Date.now() - startedAt < MAX_OVERLOAD_S * 1000) {
        refusedSeen = (await getHealth(url)).refused_requests.BUFFER_FULL ?? 0
        await new Promise((resolve) => setTimeout(resolve, 250))
      }
    })()
    const clients = await runClients({
      url,
      clients: 24,
      perRequest: 100,
      prefix: 'overload',
      backOff: false,
      stop: () => {
        const elapsed = Date.now() - startedAt
        return (elapsed > OVERLOAD_S * 1000 && refusedSeen >= MIN_REFUSED) || elapsed > MAX_OVERLOAD_S * 1000
      },
    })
    await watching
    const elapsedS = (Date.now() - startedAt) / 1000
    await waitForHealth(url, (h) => h.buffer_size === 0)
    const rss = await peakRssMiB(child.pid ?? 0)
    const health = await getHealth(url)
    console.info(
      `overload: ${Math.round(clients.requests / elapsedS)} requests/s offered (100 entries each), ` +
        `${Math.round(clients.acknowledged.size / elapsedS)} entries/s acknowledged, ` +
        `${clients.answers['429'] ?? 0} answered 429, peak RSS ${rss} MiB`,
    )
    // The excess is refused with 429, counted in /health as the clients saw it.
    expect(clients.answers['429'] ?? 0).toBeGreaterThanOrEqual(MIN_REFUSED)
    expect(health.refused_requests.BUFFER_FULL).toBe(clients.answers['429'])
    expect(rss).toBeLessThan(PEAK_RSS_BOUND_MIB)

    child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    expectAccounted('file', clients, await fileIds(join(dir, 'data/logs')), [])
  })
})
