// The real process with SINKS=bigquery against the fake, under injected faults: every entry is a row, once.
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import { listFiles, tempDir } from '../helpers.js'
import { sendTaggedEntries, spawnSidelog } from './spawn.js'

const TOTAL = 5000
const CLIENTS = 5

let fake: FakeBigQueryServer | undefined
afterEach(async () => {
  await fake?.stop()
})

describe('sidelog process with the bigquery sink', () => {
  it('streams 5,000 entries into the table exactly once through 503s, a lost answer and a backendError', async () => {
    fake = new FakeBigQueryServer()
    await fake.start()
    fake.inject({ kind: 'status', status: 503 }, { times: 2 })
    fake.inject({ kind: 'lost-answer' })
    fake.inject({ kind: 'reset' })
    fake.failRows('backendError')
    const dir = await tempDir()
    const sidelog = await spawnSidelog({
      SINKS: 'bigquery',
      BQ_ENDPOINT: fake.url,
      BQ_PROJECT: 'test-project',
      BQ_DATASET: 'app_logs',
      BQ_TABLE: 'request_logs',
      RETRY_INITIAL_BACKOFF: '0.05',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    })
    await sendTaggedEntries(sidelog.url, {
      clients: CLIENTS,
      total: TOTAL,
      perRequest: 50,
      extra: { message: 'hi' },
    })
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })

    const rows = fake.rowsOf('app_logs', 'request_logs')
    const tags = rows.map((r) => JSON.parse(r.payload as string).tag)
    expect(rows).toHaveLength(TOTAL)
    expect(new Set(tags).size).toBe(TOTAL)
    expect(new Set(rows.map((r) => r.event_id)).size).toBe(TOTAL)
    expect(await listFiles(join(dir, 'dead-letter'))).toEqual([])
    expect(fake.inserts().length).toBeGreaterThan(TOTAL / 100)
    const stopped = sidelog.logs.find((l) => String(l.msg).startsWith('stopped'))
    expect(stopped).toMatchObject({ delivered: TOTAL, dead_lettered: 0 })
  })
})
