// Fault scenario 2: SIGKILL mid-stream with a disk spool, then a restart on the same spool. Before the kill, some
// uploads land but lose their answer and every later upload fails, so batches are sealed and not done, some of
// them already in the bucket, and more entries wait in memory. After the restart every acknowledged entry must be
// in the bucket exactly once: the landed batches are re-sent under their names and meet themselves (412).
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { tempDir } from '../helpers.js'
import {
  bucketIds,
  type ClientResult,
  deadLetteredIds,
  expectAccounted,
  runClients,
  waitForHealth,
} from './harness.js'

let gcs: FakeGcsServer | undefined
const processes: SidelogProcess[] = []
afterEach(async () => {
  for (const p of processes) p.child.kill('SIGKILL')
  await gcs?.stop()
})

describe('fault: SIGKILL with a spool', () => {
  it('a restart on the same spool delivers every acknowledged entry exactly once', async () => {
    gcs = new FakeGcsServer()
    await gcs.start()
    gcs.buckets.add('spool-logs')
    const dir = await tempDir()
    const env = {
      SINKS: 'gcs',
      LOG_BUCKET: 'spool-logs',
      GCS_ENDPOINT: gcs.url,
      SPOOL_DIR: join(dir, 'spool'),
      BATCH_SIZE: '50',
      FLUSH_INTERVAL: '0.2',
      RETRY_INITIAL_BACKOFF: '0.1',
      RETRY_MAX_BACKOFF: '0.5',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    }
    const first = await spawnSidelog(env)
    processes.push(first)

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
    gcs.inject({ kind: 'status', status: 503 }, { target: 'upload', times: Number.MAX_SAFE_INTEGER })
    await waitForHealth(first.url, (h) => (h.sinks.gcs?.retries ?? 0) >= 10 && h.buffer_size >= 200)
    first.child.kill('SIGKILL')
    killed = true
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' })
    const result: ClientResult = await clients
    const landedBefore = gcs.list('spool-logs').length

    gcs.clearFaults()
    const second = await spawnSidelog(env)
    processes.push(second)
    const replay = second.logs.find((l) => String(l.msg).startsWith('spool: re-sending'))
    expect(replay).toMatchObject({ sink: 'gcs' })
    expect(Number(replay?.batches)).toBeGreaterThan(0)
    await waitForHealth(second.url, (h) => h.buffer_size === 0)
    second.child.kill('SIGTERM')
    expect(await second.exited).toEqual({ code: 0, signal: null })

    // The landed batches were re-sent under their names: some uploads met their own object.
    expect(gcs.uploads().filter((r) => r.status === 412).length).toBeGreaterThan(0)
    expect(gcs.list('spool-logs').length).toBeGreaterThan(landedBefore)
    const inBucket = bucketIds(gcs, 'spool-logs')
    expectAccounted('gcs', result, inBucket, await deadLetteredIds(join(dir, 'dead-letter'), 'gcs'))
  })
})
