// Issue 13, item 1: the platform signals the app and sidelog at about the same time, and the app logs its own
// shutdown ("draining", "closed 12 connections", a last error). sidelog keeps taking those entries after SIGTERM,
// flushing each at once, until the app goes quiet (SHUTDOWN_QUIET) or SHUTDOWN_ACCEPT is over; then 503 and the
// drain. Every line the app logged during its shutdown must be delivered, and sidelog still exits 0 in time.
import { setTimeout as delay } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { postNdjson, type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { readJsonlTree } from '../helpers.js'
import { fileSinkSettings } from './harness.js'

let sidelog: SidelogProcess | undefined
afterEach(() => {
  sidelog?.child.kill('SIGKILL')
})

async function start(env: Record<string, string> = {}) {
  const { settings, logsDir } = await fileSinkSettings(env)
  sidelog = await spawnSidelog(settings)
  return { sidelog, logs: logsDir }
}

describe('fault: the app logs its own shutdown after sidelog got SIGTERM', () => {
  it('takes and delivers every line the app logs while it shuts down, then exits 0 inside SHUTDOWN_TIMEOUT', async () => {
    const { sidelog, logs } = await start({
      SHUTDOWN_TIMEOUT: '8',
      SHUTDOWN_ACCEPT: '5',
      SHUTDOWN_QUIET: '1',
    })
    const signalledAt = Date.now()
    sidelog.child.kill('SIGTERM')
    // The app's shutdown: a line every 100 ms for 2 s (the pauses are the app's pace, not a synchronisation).
    const answers: number[] = []
    for (let i = 0; i < 20; i++) {
      const res = await postNdjson(sidelog.url, [
        { event_id: `bye-${i}`, message: `shutting down, step ${i}` },
      ])
      answers.push(res.status)
      await delay(100)
    }
    const exit = await sidelog.exited
    const tookMs = Date.now() - signalledAt
    expect(answers).toEqual(Array(20).fill(202))
    expect(exit).toEqual({ code: 0, signal: null })
    expect(tookMs).toBeLessThan(8000)
    const ids = (await readJsonlTree(logs)).map((l) => l.event_id)
    expect(ids.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `bye-${i}`).sort())
    // Once the app went quiet, sidelog stopped taking entries and drained: it did not wait out SHUTDOWN_ACCEPT.
    const stopped = sidelog.logs.find((l) => String(l.msg).startsWith('stopped'))
    expect(stopped).toMatchObject({ delivered: 20, dead_lettered: 0 })
  })

  it('an idle sidelog stops taking entries after SHUTDOWN_QUIET and then answers 503', async () => {
    const { sidelog } = await start({ SHUTDOWN_ACCEPT: '3', SHUTDOWN_QUIET: '0.5', SHUTDOWN_TIMEOUT: '8' })
    const signalledAt = Date.now()
    sidelog.child.kill('SIGTERM')
    const exit = await sidelog.exited
    expect(exit).toEqual({ code: 0, signal: null })
    // The quiet spell and the (empty) drain, not the whole SHUTDOWN_ACCEPT window.
    expect(Date.now() - signalledAt).toBeLessThan(2500)
  })

  it('SHUTDOWN_ACCEPT=0 refuses at once with 503, as before', async () => {
    const { sidelog } = await start({ SHUTDOWN_ACCEPT: '0', SHUTDOWN_TIMEOUT: '4', FLUSH_INTERVAL: '3600' })
    // A batch not due yet is still delivered by the drain.
    expect((await postNdjson(sidelog.url, [{ event_id: 'before' }])).status).toBe(202)
    sidelog.child.kill('SIGTERM')
    const exit = await sidelog.exited
    expect(exit).toEqual({ code: 0, signal: null })
    expect(sidelog.logs.find((l) => String(l.msg).startsWith('stopped'))).toMatchObject({ delivered: 1 })
  })
})
