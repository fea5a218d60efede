import { readFile } from 'node:fs/promises'
import { PassThrough } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { describe, expect, it, vi } from 'vitest'
import { type App, createApp } from '../../src/app.js'
import { QueueFullError } from '../../src/errors.js'
import { listFiles, readJsonlTree, silentLogger, tempDir, testConfig } from '../helpers.js'

async function startApp(env: Record<string, string> = {}) {
  const config = testConfig(await tempDir(), env)
  const app = await createApp(config, { logger: silentLogger, stdout: new PassThrough(), instanceId: 'test' })
  return { app, config }
}

function post(app: App, body: string | Buffer, headers: Record<string, string>) {
  return app.server.inject({ method: 'POST', url: '/logs', payload: body, headers })
}

const JSON_TYPE = { 'content-type': 'application/json' }
const NDJSON_TYPE = { 'content-type': 'application/x-ndjson' }

describe('POST /logs: accepted bodies', () => {
  it('takes one JSON object as one entry, and the file sink holds it enriched', async () => {
    const { app, config } = await startApp()
    const res = await post(app, JSON.stringify({ message: 'hello', level: 'info' }), JSON_TYPE)
    expect(res.statusCode).toBe(202)
    expect(res.json()).toEqual({ accepted: 1 })
    await app.close()
    const [row] = await readJsonlTree(config.DATA_DIR)
    expect(row).toMatchObject({ message: 'hello', level: 'info', severity: 'INFO', service: 'unknown' })
    // A random prefix per process and a counter (event.ts, newEventId).
    expect(row?.event_id).toMatch(/^[0-9a-f]{20}-[0-9a-z]+$/)
  })

  it('keeps the text of each entry as sent, adding fields on the same line, and keeps pretty JSON on one line', async () => {
    const { app, config } = await startApp()
    // Integers past 2^53 and spacing survive as sent; a lone \r inside a line, or a pretty-printed object, is
    // re-encoded so that every entry stays one line of JSONL.
    const ndjson = '{"big": 12345678901234567890, "n" : 1}\r\n{"n":2,\r"x":1}\n{ }'
    expect((await post(app, ndjson, NDJSON_TYPE)).statusCode).toBe(202)
    expect((await post(app, '{\n  "n": 4,\n  "event_id": "mine"\n}\n', JSON_TYPE)).statusCode).toBe(202)
    await app.close()
    let text = ''
    for (const file of await listFiles(config.DATA_DIR)) text += await readFile(file, 'utf8')
    const lines = text.trim().split('\n')
    expect(lines).toHaveLength(4)
    expect(
      lines.find((l) => l.startsWith('{"big": 12345678901234567890, "n" : 1,"event_id":"')),
    ).toBeDefined()
    expect(lines.find((l) => l.startsWith('{"n":2,"x":1,"event_id":"'))).toBeDefined()
    expect(lines.find((l) => l.startsWith('{"n":4,"event_id":"mine","service":'))).toBeDefined()
    const empty = lines.map((l) => JSON.parse(l)).find((row) => row.n === undefined)
    expect(Object.keys(empty)).toEqual(expect.arrayContaining(['event_id', 'service', 'processed_at']))
    // The same ids never repeat within a process.
    const ids = lines.map((l) => JSON.parse(l).event_id)
    expect(new Set(ids).size).toBe(4)
  })

  it('takes a JSON array as one entry per element, with a charset parameter', async () => {
    const { app, config } = await startApp()
    const res = await post(app, JSON.stringify([{ n: 1 }, { n: 2 }, { n: 3 }]), {
      'content-type': 'application/json; charset=utf-8',
    })
    expect(res.json()).toEqual({ accepted: 3 })
    expect([res.statusCode, res.headers['content-type'], res.body]).toEqual([
      202,
      'application/json; charset=utf-8',
      '{"accepted":3}',
    ])
    await app.close()
    expect((await readJsonlTree(config.DATA_DIR)).map((r) => r.n)).toEqual([1, 2, 3])
  })

  it.each(['application/x-ndjson', 'application/jsonl', 'text/plain'])(
    'takes %s as one entry per non-empty line, CRLF or LF',
    async (type) => {
      const { app, config } = await startApp()
      const res = await post(app, '{"n":1}\r\n\n  \n{"n":2}\n{"n":3}', { 'content-type': type })
      expect(res.statusCode).toBe(202)
      expect(res.json()).toEqual({ accepted: 3 })
      await app.close()
      expect((await readJsonlTree(config.DATA_DIR)).map((r) => r.n)).toEqual([1, 2, 3])
    },
  )

  it('takes gzip-compressed NDJSON and JSON', async () => {
    const { app, config } = await startApp()
    const ndjson = await post(app, gzipSync('{"n":1}\n{"n":2}\n'), {
      ...NDJSON_TYPE,
      'content-encoding': 'gzip',
    })
    const json = await post(app, gzipSync('[{"n":3}]'), { ...JSON_TYPE, 'content-encoding': 'gzip' })
    expect([ndjson.statusCode, json.statusCode]).toEqual([202, 202])
    await app.close()
    expect((await readJsonlTree(config.DATA_DIR)).map((r) => r.n).sort()).toEqual([1, 2, 3])
  })

  it('replaces invalid UTF-8 rather than refusing the entry', async () => {
    const { app, config } = await startApp()
    const body = Buffer.concat([Buffer.from('{"message":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('b"}')])
    expect((await post(app, body, JSON_TYPE)).statusCode).toBe(202)
    await app.close()
    expect((await readJsonlTree(config.DATA_DIR))[0]?.message).toBe('a\uFFFD\uFFFDb')
  })
})

describe('POST /logs: the traceparent header', () => {
  it("sets the trace fields of the request's entries that have none", async () => {
    const { app, config } = await startApp({ GOOGLE_CLOUD_PROJECT: 'my-project' })
    const own = '0af7651916cd43dd8448eb211c80319c'
    const res = await post(app, `{"n":1}\n{"n":2,"trace_id":"${own}"}`, {
      ...NDJSON_TYPE,
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    })
    expect(res.statusCode).toBe(202)
    await app.close()
    const rows = await readJsonlTree(config.DATA_DIR)
    expect(rows.map((r) => r['logging.googleapis.com/trace'])).toEqual([
      'projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736',
      `projects/my-project/traces/${own}`,
    ])
    expect(rows[0]?.['logging.googleapis.com/spanId']).toBe('00f067aa0ba902b7')
  })
})

describe('POST /logs: refused bodies keep nothing from the request', () => {
  async function expectRefused(
    body: string | Buffer,
    headers: Record<string, string>,
    status: number,
    expected: Record<string, unknown>,
    env: Record<string, string> = {},
  ) {
    const { app, config } = await startApp(env)
    const res = await post(app, body, headers)
    expect(res.statusCode).toBe(status)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    expect(res.json()).toMatchObject(expected)
    expect(typeof res.json().message).toBe('string')
    expect(app.pipeline.acceptedEvents).toBe(0)
    await app.close()
    expect(await readJsonlTree(config.DATA_DIR)).toEqual([])
    return res.json() as { message: string }
  }

  it('400 for malformed JSON, with the position', async () => {
    const body = await expectRefused('{"a": 1,, "b": 2}', JSON_TYPE, 400, { error: 'INVALID_JSON' })
    expect(body).toHaveProperty('position')
    expect(body.message).toMatch(/^body is not valid JSON/)
  })

  it('400 for malformed NDJSON, naming the line, even when earlier lines are fine', async () => {
    const body = await expectRefused('{"a":1}\n{"a":2}\n{"a":\n{"a":4}', NDJSON_TYPE, 400, {
      error: 'INVALID_JSON',
      line: 3,
    })
    expect(body.message).toMatch(/^line 3 is not valid JSON/)
  })

  it('400 for an array element that is not an object, naming the index', async () => {
    await expectRefused('[{"a":1},{"a":2},"text"]', JSON_TYPE, 400, { error: 'NOT_AN_OBJECT', index: 2 })
  })

  it('400 for an NDJSON line that is not an object, naming the line', async () => {
    await expectRefused('{"a":1}\n[1,2]\n', NDJSON_TYPE, 400, { error: 'NOT_AN_OBJECT', line: 2 })
  })

  it('400 for a top-level JSON value that is not an object or array', async () => {
    await expectRefused('42', JSON_TYPE, 400, { error: 'NOT_AN_OBJECT' })
  })

  it('400 for an empty body', async () => {
    await expectRefused('', JSON_TYPE, 400, { error: 'EMPTY_BODY' })
  })

  it('400 for a body that is not valid gzip, or is truncated', async () => {
    const gz = { ...NDJSON_TYPE, 'content-encoding': 'gzip' }
    await expectRefused('not gzip at all', gz, 400, { error: 'INVALID_GZIP' })
    const whole = gzipSync('{"a":1}\n'.repeat(1000))
    await expectRefused(whole.subarray(0, whole.length - 20), gz, 400, { error: 'INVALID_GZIP' })
  })

  it('413 for a body over MAX_BODY_BYTES', async () => {
    const body = `${'{"pad":"xxxxxxxxxxxxxxxx"}\n'.repeat(100)}`
    await expectRefused(body, NDJSON_TYPE, 413, { error: 'BODY_TOO_LARGE' }, { MAX_BODY_BYTES: '2KiB' })
  })

  it('413 for a gzip bomb: the limit applies to the decompressed size', async () => {
    const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024, 0x20))
    expect(bomb.length).toBeLessThan(100 * 1024)
    const body = await expectRefused(bomb, { ...NDJSON_TYPE, 'content-encoding': 'gzip' }, 413, {
      error: 'BODY_TOO_LARGE',
    })
    expect(body.message).toMatch(/after gzip decompression/)
  })

  it('413 for one entry over MAX_ENTRY_BYTES, naming the line or index', async () => {
    const env = { MAX_ENTRY_BYTES: '1KiB' }
    const big = JSON.stringify({ pad: 'x'.repeat(2000) })
    await expectRefused(`{"a":1}\n${big}\n`, NDJSON_TYPE, 413, { error: 'ENTRY_TOO_LARGE', line: 2 }, env)
    await expectRefused(`[{"a":1},${big}]`, JSON_TYPE, 413, { error: 'ENTRY_TOO_LARGE', index: 1 }, env)
  })

  it('415 for another content type, saying which ones are accepted', async () => {
    const body = await expectRefused('a=b', { 'content-type': 'application/x-www-form-urlencoded' }, 415, {
      error: 'UNSUPPORTED_MEDIA_TYPE',
    })
    expect(body.message).toContain('application/x-ndjson')
  })

  it('415 for a content encoding other than gzip', async () => {
    await expectRefused('{}', { ...JSON_TYPE, 'content-encoding': 'br' }, 415, {
      error: 'UNSUPPORTED_ENCODING',
    })
  })

  describe('prototype-poisoning keys never reach a prototype', () => {
    const cases: [string, string, Record<string, string>, Record<string, unknown>][] = [
      ['__proto__ in an object', '{"__proto__":{"polluted":true}}', JSON_TYPE, {}],
      [
        'constructor.prototype in an object',
        '{"constructor":{"prototype":{"polluted":true}}}',
        JSON_TYPE,
        {},
      ],
      ['__proto__ in an array element', '[{"a":1},{"__proto__":{"polluted":true}}]', JSON_TYPE, { index: 1 }],
      [
        'nested __proto__ on an NDJSON line',
        '{"a":1}\n{"b":{"__proto__":{"polluted":true}}}',
        NDJSON_TYPE,
        { line: 2 },
      ],
      ['__proto__ written with escapes', '{"\\u005f_proto__":{"polluted":true}}', JSON_TYPE, {}],
      [
        'constructor written with escapes on an NDJSON line',
        '{"a":1}\n{"a":2}\n{"\\u0063onstructor":{"prototype":{"polluted":true}}}',
        NDJSON_TYPE,
        { line: 3 },
      ],
    ]
    it.each(cases)('400 for %s', async (_name, body, headers, where) => {
      await expectRefused(body, headers, 400, { error: 'FORBIDDEN_KEY', ...where })
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
      expect(Object.prototype).not.toHaveProperty('polluted')
    })
  })
})

describe('POST /logs: back-pressure and shutdown', () => {
  it('429 with Retry-After when a sink buffer is full; the refused request leaves no trace', async () => {
    // Batches only flush at close: the buffer fills with the open batch.
    const { app, config } = await startApp({
      BATCH_SIZE: '10',
      BUFFER_MAX_EVENTS: '10',
      FLUSH_INTERVAL: '3600',
    })
    const first = await post(app, '{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}\n{"n":5}\n{"n":6}', NDJSON_TYPE)
    expect(first.statusCode).toBe(202)
    const full = await post(app, '{"n":7}\n{"n":8}\n{"n":9}\n{"n":10}\n{"n":11}', NDJSON_TYPE)
    expect(full.statusCode).toBe(429)
    expect(full.headers['retry-after']).toBe('1')
    expect(full.json()).toMatchObject({ error: 'BUFFER_FULL' })
    expect(full.json().message).toMatch(/buffer of sink "file" is full/)
    await app.close()
    expect((await readJsonlTree(config.DATA_DIR)).map((r) => r.n)).toEqual([1, 2, 3, 4, 5, 6])
  })

  it('429 before reading the body while a sink is saturated (BUFFER_FULL_WAIT=0)', async () => {
    const { app } = await startApp({
      BATCH_SIZE: '10',
      BUFFER_MAX_EVENTS: '10',
      FLUSH_INTERVAL: '3600',
      BUFFER_FULL_WAIT: '0',
    })
    expect((await post(app, '{"n":1}\n'.repeat(10), NDJSON_TYPE)).statusCode).toBe(202)
    // Malformed on purpose: a 429 rather than a 400 shows the body was never parsed.
    const res = await post(app, '{not json', NDJSON_TYPE)
    expect(res.statusCode).toBe(429)
    expect(res.headers['retry-after']).toBe('1')
    await app.close()
  })

  it('takes a request that met a full buffer once the sink has written a batch, instead of 429', async () => {
    // Generous: the wait ends when the file sink's write does, which is what this asserts.
    const { app } = await startApp({
      BATCH_SIZE: '10',
      BUFFER_MAX_EVENTS: '10',
      FLUSH_INTERVAL: '3600',
      BUFFER_FULL_WAIT: '20',
    })
    expect((await post(app, '{"n":1}\n'.repeat(10), NDJSON_TYPE)).statusCode).toBe(202)
    expect(() => app.pipeline.assertNotSaturated()).toThrow(/buffer of sink "file" is full/)
    const res = await post(app, '{"n":2}', NDJSON_TYPE)
    expect(res.statusCode).toBe(202)
    expect(app.pipeline.stats().file).toMatchObject({ delivered_events: 10, buffered_events: 1 })
    await app.close()
  })

  it('counts a waiting request against MAX_INFLIGHT_BYTES: past it, 429 at once; the count is given back', async () => {
    const { app } = await startApp({
      MAX_BODY_BYTES: '64KiB',
      MAX_INFLIGHT_BYTES: '100KiB',
      BUFFER_FULL_WAIT: '20',
    })
    // A saturated buffer that the test empties when it says: the first request waits, holding 64 KiB of the 100.
    let full = true
    let makeRoom: () => void = () => {}
    vi.spyOn(app.pipeline, 'isSaturated').mockImplementation(() => full)
    vi.spyOn(app.pipeline, 'assertNotSaturated').mockImplementation(() => {
      if (full) throw new QueueFullError('the buffer of sink "file" is full', 1000)
    })
    vi.spyOn(app.pipeline, 'whenNotSaturated').mockImplementation(
      () =>
        new Promise<void>((resolve) => {
          makeRoom = () => {
            full = false
            resolve()
          }
        }),
    )
    const waiting = post(app, '{"n":1}', NDJSON_TYPE)
    await vi.waitFor(() => expect(app.pipeline.whenNotSaturated).toHaveBeenCalledTimes(1))
    const second = await post(app, '{"n":2}', NDJSON_TYPE)
    expect(second.statusCode).toBe(429)
    expect(second.json()).toMatchObject({ error: 'BUFFER_FULL' })
    expect(app.pipeline.whenNotSaturated).toHaveBeenCalledTimes(1)
    makeRoom()
    expect((await waiting).statusCode).toBe(202)
    // The 64 KiB came back: a body of 64 KiB (all that MAX_INFLIGHT_BYTES leaves room for besides) is taken.
    const big = `{"pad":"${'x'.repeat(64 * 1024 - 20)}"}`
    expect((await post(app, big, NDJSON_TYPE)).statusCode).toBe(202)
    await app.close()
  })

  it('503 while draining', async () => {
    const { app } = await startApp()
    app.pipeline.stopAccepting()
    const res = await post(app, '{}', JSON_TYPE)
    expect(res.statusCode).toBe(503)
    expect(res.json()).toMatchObject({ error: 'DRAINING' })
    await app.close()
  })
})

describe('GET /health', () => {
  it('reports status, buffer size, lines processed and per-sink counters', async () => {
    const { app } = await startApp({ SINKS: 'file,stdout', FLUSH_INTERVAL: '3600' })
    await post(app, '{"a":1}\n{"a":2}', NDJSON_TYPE)
    const res = await app.server.inject({ method: 'GET', url: '/health' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({
      status: 'healthy',
      buffer_size: 2,
      lines_processed: 2,
      instance: 'test',
      sinks: {
        file: {
          delivered_events: 0,
          buffered_events: 2,
          dead_lettered_events: 0,
          retries: 0,
          last_error: null,
        },
        stdout: { delivered_events: 0, buffered_events: 2 },
      },
    })
    await app.close()
  })

  it('counts refused requests by the error code they were given', async () => {
    const { app } = await startApp()
    await post(app, '{"a":1}\n{oops', NDJSON_TYPE)
    await post(app, '{"a":1}\n{oops', NDJSON_TYPE)
    await post(app, '[1]', JSON_TYPE)
    const res = await app.server.inject({ method: 'GET', url: '/health' })
    expect(res.json().refused_requests).toEqual({ INVALID_JSON: 2, NOT_AN_OBJECT: 1 })
    await app.close()
  })

  it('says draining once shutdown has begun', async () => {
    const { app } = await startApp()
    app.pipeline.stopAccepting()
    const res = await app.server.inject({ method: 'GET', url: '/health' })
    expect(res.json()).toMatchObject({ status: 'draining' })
    await app.close()
  })

  it('answers an unknown route with 404 and where to send logs', async () => {
    const { app } = await startApp()
    const res = await app.server.inject({ method: 'GET', url: '/log' })
    expect(res.statusCode).toBe(404)
    expect(res.json().message).toContain('POST logs to /logs')
    await app.close()
  })
})
