// Idempotency-Key on POST /logs: a repeat gets the first answer and takes nothing again, a reused key with another
// body is a 422, keyed entries get ids derived from the key, the store is bounded by count and age, and with a spool
// it survives a restart.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { type App, createApp } from '../../src/app.js'
import type { Config } from '../../src/config.js'
import { SpoolWriteError } from '../../src/errors.js'
import { IdempotencyStore, JOURNAL_NAME } from '../../src/sources/idempotency/index.js'
import { readJsonlTree, silentLogger, tempDir, testConfig } from '../helpers.js'

async function startApp(env: Record<string, string> = {}, dir?: string) {
  const config = testConfig(dir ?? (await tempDir()), env)
  const app = await createApp(config, { logger: silentLogger, stdout: new PassThrough(), instanceId: 'test' })
  return { app, config }
}

const NDJSON = { 'content-type': 'application/x-ndjson' }
const body = (...tags: string[]) => tags.map((tag) => JSON.stringify({ tag })).join('\n')

function post(app: App, payload: string, key?: string, headers: Record<string, string> = NDJSON) {
  return app.server.inject({
    method: 'POST',
    url: '/logs',
    payload,
    headers: { ...headers, ...(key === undefined ? {} : { 'idempotency-key': key }) },
  })
}

async function delivered(app: App, config: Config) {
  await app.close()
  return readJsonlTree(config.DATA_DIR)
}

describe('Idempotency-Key on POST /logs', () => {
  it('answers a repeat with the first answer, marked as replayed, and takes its entries once', async () => {
    const { app, config } = await startApp()
    const first = await post(app, body('a', 'b', 'c'), 'key-1')
    const again = await post(app, body('a', 'b', 'c'), 'key-1')
    const quoted = await post(app, body('a', 'b', 'c'), '"key-1"')
    expect([first.statusCode, again.statusCode, quoted.statusCode]).toEqual([202, 202, 202])
    expect([first.json(), again.json(), quoted.json()]).toEqual([
      { accepted: 3 },
      { accepted: 3 },
      { accepted: 3 },
    ])
    expect(first.headers['idempotent-replayed']).toBeUndefined()
    expect(again.headers['idempotent-replayed']).toBe('true')
    const health = (await app.server.inject({ url: '/health' })).json()
    expect(health.idempotency).toMatchObject({ keys: 1, replayed: 2, conflicts: 0 })
    const rows = await delivered(app, config)
    expect(rows.map((r) => r.tag).sort()).toEqual(['a', 'b', 'c'])
  })

  it('refuses the same key with another body (422) and takes nothing from it', async () => {
    const { app, config } = await startApp()
    expect((await post(app, body('a'), 'key-2')).statusCode).toBe(202)
    const reused = await post(app, body('b'), 'key-2')
    expect(reused.statusCode).toBe(422)
    expect(reused.json()).toMatchObject({ error: 'IDEMPOTENCY_KEY_REUSED' })
    // The same entries as JSON are another request too: the format is part of what is compared.
    expect((await post(app, '{"tag":"a"}', 'key-2', { 'content-type': 'application/json' })).statusCode).toBe(
      422,
    )
    const rows = await delivered(app, config)
    expect(rows.map((r) => r.tag)).toEqual(['a'])
  })

  it('gives keyed entries event ids derived from the key and body, the same after a restart without a spool', async () => {
    const dir = await tempDir()
    const ids: string[][] = []
    for (let run = 0; run < 2; run++) {
      const { app, config } = await startApp({ DATA_DIR: join(dir, `data-${run}`) }, dir)
      const payload = `${body('a', 'b')}\n${JSON.stringify({ tag: 'own', event_id: 'app-set-id' })}`
      expect((await post(app, payload, 'key-3')).statusCode).toBe(202)
      expect((await post(app, body('other'), 'key-4')).statusCode).toBe(202)
      const rows = await delivered(app, config)
      ids.push(rows.map((r) => `${r.tag}=${r.event_id}`).sort())
    }
    expect(ids[0]).toEqual(ids[1])
    const byTag = Object.fromEntries((ids[0] ?? []).map((pair) => pair.split('=')))
    expect(byTag.a).toMatch(/^[\w-]{22}-0$/)
    expect(byTag.b).toBe(byTag.a?.replace(/-0$/, '-1'))
    expect(byTag.own).toBe('app-set-id')
    // Another key (or body) gives other ids.
    expect(byTag.other?.slice(0, 22)).not.toBe(byTag.a?.slice(0, 22))
  })

  it('keeps nothing for a request that took nothing: a fixed body or a retry after 429 goes through', async () => {
    const { app, config } = await startApp({
      BUFFER_MAX_EVENTS: '2',
      BATCH_SIZE: '2',
      FLUSH_INTERVAL: '3600',
      // Refused at once rather than after the batch's write makes room.
      BUFFER_FULL_WAIT: '0',
    })
    const broken = await post(app, '{"tag":', 'key-5')
    expect(broken.statusCode).toBe(400)
    expect((await post(app, body('fixed'), 'key-5')).statusCode).toBe(202)
    // The buffer holds 2 entries and its batch does not flush: two more get 429.
    expect((await post(app, body('x'), 'key-6')).statusCode).toBe(202)
    const full = await post(app, body('y', 'z'), 'key-7')
    expect(full.statusCode).toBe(429)
    await app.pipeline.flushNow()
    const retried = await post(app, body('y', 'z'), 'key-7')
    expect(retried.statusCode).toBe(202)
    expect(retried.headers['idempotent-replayed']).toBeUndefined()
    const rows = await delivered(app, config)
    expect(rows.map((r) => r.tag).sort()).toEqual(['fixed', 'x', 'y', 'z'])
  })

  it.each([
    ['has a space', 'a key'],
    ['is too long', 'k'.repeat(256)],
    ['is empty', ''],
    // Node joins repeated headers with ", ": two keys are one value that is no key.
    ['is sent twice', ['key-a', 'key-b']],
  ])('refuses a key that %s (400 INVALID_IDEMPOTENCY_KEY)', async (_, key) => {
    const { app, config } = await startApp()
    const res = await app.server.inject({
      method: 'POST',
      url: '/logs',
      payload: body('a'),
      headers: { ...NDJSON, 'idempotency-key': key },
    })
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ error: 'INVALID_IDEMPOTENCY_KEY' })
    expect(await delivered(app, config)).toEqual([])
  })

  it('lets a repeat that arrives while the first is being written wait for its answer', async () => {
    const { app, config } = await startApp({ SPOOL_DIR: join(await tempDir(), 'spool') })
    const payload = body(...Array.from({ length: 50 }, (_, i) => `t${i}`))
    const answers = await Promise.all([post(app, payload, 'key-8'), post(app, payload, 'key-8')])
    expect(answers.map((a) => [a.statusCode, a.json()])).toEqual([
      [202, { accepted: 50 }],
      [202, { accepted: 50 }],
    ])
    expect(answers.filter((a) => a.headers['idempotent-replayed'] === 'true')).toHaveLength(1)
    const rows = await delivered(app, config)
    expect(rows).toHaveLength(50)
  })

  it('repeats a 500 SPOOL_WRITE_FAILED (the entries were taken) without taking them again', async () => {
    const { app, config } = await startApp({ SPOOL_DIR: join(await tempDir(), 'spool') })
    let calls = 0
    const accept = app.pipeline.accept.bind(app.pipeline)
    app.pipeline.accept = (events) => {
      calls++
      void accept(events)
      return Promise.reject(new SpoolWriteError('disk gone'))
    }
    const first = await post(app, body('a'), 'key-9')
    const again = await post(app, body('a'), 'key-9')
    expect([first.statusCode, again.statusCode]).toEqual([500, 500])
    expect(again.json()).toEqual(first.json())
    expect(first.json()).toMatchObject({ error: 'SPOOL_WRITE_FAILED' })
    expect(again.headers['idempotent-replayed']).toBe('true')
    expect(calls).toBe(1)
    expect((await delivered(app, config)).map((r) => r.tag)).toEqual(['a'])
  })

  it('forgets the oldest key past IDEMPOTENCY_MAX_KEYS, and counts it as forgotten early', async () => {
    const { app, config } = await startApp({ IDEMPOTENCY_MAX_KEYS: '2' })
    for (const key of ['k1', 'k2', 'k3']) expect((await post(app, body(key), key)).statusCode).toBe(202)
    expect((await post(app, body('k3'), 'k3')).headers['idempotent-replayed']).toBe('true')
    // k1 is gone: its repeat is taken again. This is the documented limit of the count bound.
    const forgotten = await post(app, body('k1'), 'k1')
    expect(forgotten.headers['idempotent-replayed']).toBeUndefined()
    const health = (await app.server.inject({ url: '/health' })).json()
    expect(health.idempotency).toMatchObject({ keys: 2, evicted_early: 2 })
    expect((await delivered(app, config)).map((r) => r.tag).sort()).toEqual(['k1', 'k1', 'k2', 'k3'])
  })

  it('with a spool, remembers the keys across a restart, and a repeat then takes nothing', async () => {
    const dir = await tempDir()
    const spoolDir = join(dir, 'spool')
    const first = await startApp({ SPOOL_DIR: spoolDir }, dir)
    expect((await post(first.app, body('a', 'b'), 'key-10')).statusCode).toBe(202)
    await first.app.close()
    const second = await startApp({ SPOOL_DIR: spoolDir }, dir)
    const again = await post(second.app, body('a', 'b'), 'key-10')
    expect([again.statusCode, again.json(), again.headers['idempotent-replayed']]).toEqual([
      202,
      { accepted: 2 },
      'true',
    ])
    expect((await post(second.app, body('c'), 'key-10')).statusCode).toBe(422)
    const rows = await delivered(second.app, second.config)
    expect(rows.map((r) => r.tag).sort()).toEqual(['a', 'b'])
  })
})

describe('Idempotency-Key across a crash between the spool write and the key journal', () => {
  it('recognises a repeat by the derived ids of its entries in the spool, and takes nothing again', async () => {
    const dir = await tempDir()
    const spoolDir = join(dir, 'spool')
    const first = await startApp({ SPOOL_DIR: spoolDir }, dir)
    expect((await post(first.app, body('a', 'b'), 'key-11')).statusCode).toBe(202)
    await first.app.close()
    // As if the process had died after the entries reached the spool and before the key reached its journal.
    await writeFile(join(spoolDir, JOURNAL_NAME), '')
    // Its own file sink directory, so that what it delivers is told apart from the first run's.
    const second = await startApp({ SPOOL_DIR: spoolDir, DATA_DIR: join(dir, 'data-2') }, dir)
    const again = await post(second.app, body('a', 'b'), 'key-11')
    expect([again.statusCode, again.json(), again.headers['idempotent-replayed']]).toEqual([
      202,
      { accepted: 2 },
      'true',
    ])
    const health = (await second.app.server.inject({ url: '/health' })).json()
    expect(health.idempotency).toMatchObject({ replayed: 1, recovered_from_spool: 1 })
    // Another body under the same key is now a conflict, and another key is new.
    expect((await post(second.app, body('c'), 'key-11')).statusCode).toBe(422)
    expect((await post(second.app, body('a', 'b'), 'key-12')).headers['idempotent-replayed']).toBeUndefined()
    // Only key-12's entries: the repeat of key-11 took nothing.
    const rows = await delivered(second.app, second.config)
    expect(rows.map((r) => r.tag).sort()).toEqual(['a', 'b'])
  })
})

describe('IdempotencyStore', () => {
  // Only the clock is fake: the journal's file system calls run as they do in production.
  const advance = (ms: number) => vi.setSystemTime(Date.now() + ms)
  afterEach(() => {
    vi.useRealTimers()
  })

  it('forgets a key once its window has passed', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: 1_000_000 })
    const store = await IdempotencyStore.open({ maxKeys: 10, windowMs: 60_000, logger: silentLogger })
    const claim = await store.claim('k', 'f')
    if (!('ticket' in claim)) throw new Error('expected a new claim')
    await claim.ticket.record({ status: 202, accepted: 1 })
    advance(59_999)
    expect(await store.claim('k', 'f')).toEqual({ replay: { status: 202, accepted: 1 } })
    advance(1)
    expect('ticket' in (await store.claim('k', 'f'))).toBe(true)
    expect(store.stats()).toMatchObject({ keys: 0, evicted_early: 0 })
  })

  it('reads its journal back without the keys whose window passed, and compacts it', async () => {
    const dir = await tempDir()
    vi.useFakeTimers({ toFake: ['Date'], now: 1_000_000 })
    const options = { maxKeys: 10, windowMs: 60_000, dir, fsync: 'always' as const, logger: silentLogger }
    const store = await IdempotencyStore.open(options)
    for (const key of ['old', 'new']) {
      const claim = await store.claim(key, `body of ${key}`)
      if (!('ticket' in claim)) throw new Error('expected a new claim')
      await claim.ticket.record({ status: 202, accepted: 2 })
      advance(30_000)
    }
    await store.close()
    // 'old' was answered 60 s ago, 'new' 30 s ago.
    const reopened = await IdempotencyStore.open(options)
    expect(reopened.stats().keys).toBe(1)
    expect(await reopened.claim('new', 'body of new')).toEqual({ replay: { status: 202, accepted: 2 } })
    expect('ticket' in (await reopened.claim('old', 'body of old'))).toBe(true)
    const lines = (await readFile(join(dir, JOURNAL_NAME), 'utf8')).trim().split('\n')
    expect(lines.map((l) => JSON.parse(l).k)).toEqual(['new'])
    await reopened.close()
  })
})
