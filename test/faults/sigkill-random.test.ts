// Issue 10, finding 1: SIGKILL at random moments with a disk spool, many kills per run, each followed by a restart
// on the same spool and data directory. Kill points come from a seeded generator (FAULT_SEED), so a failing run can
// be replayed. Every acknowledged entry must be in the file sink exactly once, by event_id; entries whose answer was
// cut off by the kill may be there (once) or not.
import { join } from 'node:path'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import {
  type ClientResult,
  deadLetteredIds,
  expectAccounted,
  fileIds,
  fileSinkSettings,
  runClients,
} from './harness.js'

const SEED = Number(process.env.FAULT_SEED ?? 1010)
const KILLS = Number(process.env.FAULT_KILLS ?? 6)

let running: SidelogProcess | undefined
afterEach(() => {
  running?.child.kill('SIGKILL')
})

describe('fault: SIGKILL at random moments with a spool', () => {
  it(`loses and duplicates nothing over ${KILLS} kills (seed ${SEED})`, async () => {
    // Small, frequent batches: many sealed and done journal records, so a kill lands between every pair of steps.
    const { settings, dir } = await fileSinkSettings(
      { BATCH_SIZE: '30', FLUSH_INTERVAL: '0.05', BUFFER_MAX_EVENTS: '600' },
      { spool: true },
    )
    // Each kill comes once this many entries have been acknowledged since the (re)start.
    const killAfter = fc.sample(fc.integer({ min: 40, max: 1500 }), { seed: SEED, numRuns: KILLS })
    const acknowledged = new Set<string>()
    const uncertain = new Set<string>()
    for (const [round, threshold] of killAfter.entries()) {
      running = await spawnSidelog(settings)
      const current = running
      let count = 0
      let killed = false
      const result: ClientResult = await runClients({
        url: current.url,
        clients: 8,
        perRequest: 20,
        prefix: `r${round}`,
        backOff: true,
        stop: () => killed,
        onAcknowledged(entries) {
          count += entries
          if (count >= threshold && !killed) {
            killed = true
            current.child.kill('SIGKILL')
          }
        },
      })
      expect(await current.exited).toEqual({ code: null, signal: 'SIGKILL' })
      for (const id of result.acknowledged) acknowledged.add(id)
      for (const id of result.uncertain) uncertain.add(id)
    }
    // A last start delivers what the last kill left, then a clean stop.
    running = await spawnSidelog(settings)
    running.child.kill('SIGTERM')
    expect(await running.exited).toEqual({ code: 0, signal: null })

    const delivered = await fileIds(join(dir, 'data', 'logs'))
    const deadLettered = await deadLetteredIds(join(dir, 'dead-letter'), 'file')
    console.log(
      `sigkill-random: seed ${SEED}, ${KILLS} kills, ${acknowledged.size} acknowledged, ${uncertain.size} uncertain, ` +
        `${delivered.length} delivered, ${deadLettered.length} dead-lettered, ` +
        `${[...acknowledged].filter((id) => !delivered.includes(id)).length} lost, ` +
        `${delivered.length - new Set(delivered).size} duplicated`,
    )
    expect(deadLettered).toEqual([])
    expectAccounted('file', { acknowledged, uncertain, answers: {}, requests: 0 }, delivered, deadLettered)
  })
})
