// Fault scenario 2: SIGKILL mid-stream with a disk spool, then a restart on the same spool. Before the kill, some
// uploads land but lose their answer and every later upload fails, so batches are sealed and not done, some of
// them already in the bucket, and more entries wait in memory. After the restart every acknowledged entry must be
// in the bucket exactly once: the landed batches are re-sent under their names and meet themselves (412).
import { afterEach, describe, expect, it } from 'vitest'
import {
  type ClientResult,
  deadLetteredIds,
  expectAccounted,
  runClients,
  type SpooledGcs,
  startSpooledGcs,
  waitForHealth,
} from './harness.js'

let spooled: SpooledGcs | undefined
afterEach(async () => {
  await spooled?.stop()
})

describe('fault: SIGKILL with a spool', () => {
  it('a restart on the same spool delivers every acknowledged entry exactly once', async () => {
    spooled = await startSpooledGcs('kill', { BATCH_SIZE: '50' })
    const { gcs } = spooled
    const first = spooled.sidelog

    let killed = false
    const clients = runClients({
      url: first.url,
      clients: 4,
      perRequest: 50,
      prefix: 'kill',
      backOff: true,
      stop: () => killed,
    })
    await waitForHealth(first.url, (h) => (h.sinks.gcs?.delivered_events ?? 0) >= 1000)
    // Three uploads land and lose their answer; from then on every upload fails.
    gcs.inject({ kind: 'lost-answer' }, { target: 'upload', times: 3 })
    spooled.failUploads()
    await waitForHealth(first.url, (h) => (h.sinks.gcs?.retries ?? 0) >= 10 && h.buffer_size >= 200)
    first.child.kill('SIGKILL')
    killed = true
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' })
    const result: ClientResult = await clients
    const landedBefore = spooled.inBucket().length

    gcs.clearFaults()
    const second = await spooled.restart()
    const replay = second.logs.find((l) => String(l.msg).startsWith('spool: re-sending'))
    expect(replay).toMatchObject({ sink: 'gcs' })
    expect(Number(replay?.batches)).toBeGreaterThan(0)
    await waitForHealth(second.url, (h) => h.buffer_size === 0)
    second.child.kill('SIGTERM')
    expect(await second.exited).toEqual({ code: 0, signal: null })

    // The landed batches were re-sent under their names: some uploads met their own object.
    expect(gcs.uploads().filter((r) => r.status === 412).length).toBeGreaterThan(0)
    expect(spooled.inBucket().length).toBeGreaterThan(landedBefore)
    expectAccounted('gcs', result, spooled.inBucket(), await deadLetteredIds(spooled.deadLetterDir, 'gcs'))
  })
})
