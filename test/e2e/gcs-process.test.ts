// The real process with SINKS=gcs against the fake, under injected faults: every entry lands in the bucket once.
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { listFiles, readJsonlTree, tempDir } from '../helpers.js'
import { sendTaggedEntries, spawnSidelog } from './spawn.js'

const TOTAL = 5000
const CLIENTS = 5

let fake: FakeGcsServer | undefined
afterEach(async () => {
  await fake?.stop()
})

/** A fake bucket, and sidelog writing to it from a fresh directory. The caller injects faults into `fake`. */
async function startWithBucket(bucket: string, env: Record<string, string> = {}) {
  fake = new FakeGcsServer()
  await fake.start()
  fake.buckets.add(bucket)
  const dir = await tempDir()
  const sidelog = await spawnSidelog({
    SINKS: 'gcs',
    LOG_BUCKET: bucket,
    GCS_ENDPOINT: fake.url,
    METADATA_SERVER_DETECTION: 'none',
    RETRY_INITIAL_BACKOFF: '0.05',
    DATA_DIR: join(dir, 'data'),
    DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    ...env,
  })
  return { fake, dir, sidelog }
}

describe('sidelog process with the gcs sink', () => {
  it('delivers 5,000 entries into the bucket exactly once through 503s, a reset and a lost answer', async () => {
    const { fake, dir, sidelog } = await startWithBucket('e2e-logs')
    fake.inject({ kind: 'status', status: 503 }, { times: 2 })
    fake.inject({ kind: 'lost-answer' }, { times: 1 })
    fake.inject({ kind: 'reset' }, { times: 1 })
    fake.inject({ kind: 'status', status: 429 }, { times: 1 })
    await sendTaggedEntries(sidelog.url, { clients: CLIENTS, total: TOTAL, perRequest: 50 })
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })

    const rows = fake.list('e2e-logs').flatMap((o) =>
      o.data
        .toString()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { tag: string; event_id: string }),
    )
    expect(rows).toHaveLength(TOTAL)
    expect(new Set(rows.map((r) => r.tag)).size).toBe(TOTAL)
    expect(new Set(rows.map((r) => r.event_id)).size).toBe(TOTAL)
    expect(await listFiles(join(dir, 'dead-letter'))).toEqual([])
    // The faults were met: the bucket saw more upload attempts than it holds objects.
    expect(fake.uploads().length).toBeGreaterThan(fake.list('e2e-logs').length)
    const stopped = sidelog.logs.find((l) => String(l.msg).startsWith('stopped'))
    expect(stopped).toMatchObject({ delivered: TOTAL, dead_lettered: 0 })
  })

  it('on SIGTERM with the sink down, exits 0 inside SHUTDOWN_TIMEOUT with every entry dead-lettered', async () => {
    const { fake, dir, sidelog } = await startWithBucket('down-logs', { SHUTDOWN_TIMEOUT: '3' })
    fake.inject({ kind: 'status', status: 503 }, { times: 1_000_000 })
    await sendTaggedEntries(sidelog.url, { clients: 2, total: 1000, perRequest: 50 })
    sidelog.child.kill('SIGTERM')
    // Exit 0 is the proof of timing: past SHUTDOWN_TIMEOUT + 1.5 s the hard timeout would exit 1.
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    expect(fake.list('down-logs')).toEqual([])
    const records = await readJsonlTree(join(dir, 'dead-letter'))
    const tags = records.map((r) => (r.entry as { tag: string }).tag)
    expect(tags).toHaveLength(1000)
    expect(new Set(tags).size).toBe(1000)
    expect(String(records[0]?.reason)).toMatch(/^shutdown after \d+ attempt\(s\)/)
    const stopped = sidelog.logs.find((l) => String(l.msg).startsWith('stopped'))
    expect(stopped).toMatchObject({ delivered: 0, dead_lettered: 1000, timed_out: true })
  })
})
