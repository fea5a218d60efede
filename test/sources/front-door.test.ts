// The front door (sources/http.ts) answers the usual /logs request on Node's own request event, and leaves the rest to
// the Fastify route. Every request here is sent twice over a socket, to two sidelogs with the same settings: one whose
// front door is shut (every request goes through the route, as before the front door) and one whose door takes what
// it should. The answers must be the same (status, body, the headers a client acts on), and so must what the file
// sink holds, but for the ids and times each process writes.
import dns from 'node:dns'
import { request as httpRequest, ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { PassThrough } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { type App, createApp } from '../../src/app.js'
import { readJsonlTree, silentLogger, tempDir, testConfig, until } from '../helpers.js'

interface Answer {
  status: number
  body: unknown
  contentType: string | undefined
  retryAfter: string | undefined
  connection: string | undefined
}

const apps: App[] = []
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
})

const SETTINGS = { MAX_BODY_BYTES: '64KiB', BUFFER_MAX_EVENTS: '50', MAX_ENTRY_BYTES: '2KiB' }

/** A sidelog listening on a port, and the requests its front door took (none when `shut`). */
async function start(shut = false, env: Record<string, string> = SETTINGS) {
  const config = testConfig(await tempDir(), env)
  const app = await createApp(config, { logger: silentLogger, stdout: new PassThrough(), instanceId: 'test' })
  apps.push(app)
  const door = app.server.frontDoor
  if (door === undefined) throw new Error('the http source set no front door')
  const taken = { count: 0 }
  app.server.setFrontDoor((request, response) => {
    const took = !shut && door(request, response)
    if (took) taken.count++
    return took
  })
  await app.server.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.server.address() as { port: number }
  return { app, config, port, taken }
}

function answerOf(status: number, headers: Record<string, unknown>, text: string): Answer {
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {}
  const header = (name: string) => (headers[name] === undefined ? undefined : String(headers[name]))
  return {
    status,
    body,
    contentType: header('content-type'),
    retryAfter: header('retry-after'),
    // Node says keep-alive on every answer that does not close.
    connection: header('connection') === 'close' ? 'close' : undefined,
  }
}

function overSocket(
  port: number,
  method: string,
  path: string,
  body: Buffer,
  headers: Record<string, string>,
) {
  return new Promise<Answer>((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        headers: { ...headers, 'content-length': String(body.length) },
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          text += chunk
        })
        res.on('end', () => resolve(answerOf(res.statusCode ?? 0, res.headers, text)))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

/** Rows as the file sink holds them, without what differs from one process or moment to the next. */
async function rowsOf(dir: string) {
  const rows = await readJsonlTree(dir)
  return rows.map((row) => {
    const { event_id, processed_at, timestamp, host, ...rest } = row as Record<string, unknown>
    return { ...rest, has_id: typeof event_id === 'string', has_times: typeof processed_at === 'string' }
  })
}

const one = (n: number) => ({ message: `entry ${n}`, level: 'warn', n })
const ndjson = (entries: readonly object[]) => entries.map((e) => JSON.stringify(e)).join('\n')

interface Case {
  readonly name: string
  readonly body: string | Buffer
  readonly type?: string
  readonly headers?: Record<string, string>
  readonly path?: string
  readonly method?: string
  /** Whether the front door takes it (else Fastify's route does, over the socket too). */
  readonly front: boolean
}

const CASES: readonly Case[] = [
  { name: 'one object', body: JSON.stringify(one(1)), type: 'application/json', front: true },
  {
    name: 'an array, with the trace of the request',
    body: JSON.stringify([one(1), one(2), one(3)]),
    type: 'application/json; charset=utf-8',
    headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
    front: true,
  },
  ...[
    'application/x-ndjson',
    'application/ndjson',
    'application/jsonl',
    'application/x-jsonlines',
    'text/plain',
  ].map((type) => ({
    name: `NDJSON as ${type}, blank lines and CRLF`,
    body: `${JSON.stringify(one(1))}\r\n\n  \n${JSON.stringify(one(2))}\n`,
    type,
    front: true,
  })),
  {
    name: 'a query string',
    body: JSON.stringify(one(4)),
    type: 'application/json',
    path: '/logs?from=app',
    front: true,
  },
  {
    name: 'pretty JSON (the parsing path)',
    body: '{\n  "n": 5,\n  "msg": "x"\n}',
    type: 'application/json',
    front: true,
  },
  { name: 'invalid JSON', body: '{"message": "cut', type: 'application/json', front: true },
  {
    name: 'an NDJSON body with a bad second line',
    body: '{"n":1}\n{"n":\n{"n":3}',
    type: 'application/x-ndjson',
    front: true,
  },
  { name: 'an array holding a number', body: '[{"n":1},2]', type: 'application/json', front: true },
  { name: 'a __proto__ key', body: '{"__proto__":{"x":1}}', type: 'application/json', front: true },
  { name: 'an empty body', body: '', type: 'application/json', front: true },
  { name: 'a body of spaces', body: '  \n ', type: 'application/x-ndjson', front: true },
  {
    name: 'a body over MAX_BODY_BYTES',
    body: JSON.stringify({ pad: 'x'.repeat(70_000) }),
    type: 'application/json',
    front: true,
  },
  {
    name: 'an entry over MAX_ENTRY_BYTES',
    body: JSON.stringify({ pad: 'x'.repeat(3000) }),
    type: 'application/json',
    front: true,
  },
  {
    name: 'more entries than BUFFER_MAX_EVENTS',
    body: ndjson(Array.from({ length: 51 }, (_, i) => one(i))),
    type: 'application/x-ndjson',
    front: true,
  },
  {
    name: 'an event_id that is not a string',
    body: '{"event_id": 7}',
    type: 'application/json',
    front: true,
  },
  {
    name: 'bytes that are not UTF-8',
    body: Buffer.from([0x7b, 0x22, 0x6d, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]),
    type: 'application/json',
    front: true,
  },
  {
    name: 'nesting 70 deep',
    body: `{"a":${'['.repeat(70)}${']'.repeat(70)}}`,
    type: 'application/json',
    front: true,
  },
  // Left to Fastify:
  {
    name: 'gzip',
    body: gzipSync(JSON.stringify(one(6))),
    type: 'application/json',
    headers: { 'content-encoding': 'gzip' },
    front: false,
  },
  {
    name: 'an Idempotency-Key',
    body: JSON.stringify(one(7)),
    type: 'application/json',
    headers: { 'idempotency-key': 'k-1' },
    front: false,
  },
  {
    name: 'another spelling of the type',
    body: JSON.stringify(one(8)),
    type: 'Application/JSON',
    front: false,
  },
  { name: 'a type sidelog does not take', body: '<log/>', type: 'application/xml', front: false },
  { name: 'no type', body: JSON.stringify(one(9)), front: false },
  {
    name: 'another path',
    body: JSON.stringify(one(10)),
    type: 'application/json',
    path: '/logs/',
    front: false,
  },
  { name: 'GET /logs', body: '', type: 'application/json', method: 'GET', front: false },
]

describe('the front door answers as the Fastify route does', () => {
  it.each(CASES)('$name', async (c) => {
    const routed = await start(true)
    const direct = await start()
    const body = typeof c.body === 'string' ? Buffer.from(c.body) : c.body
    const headers = { ...(c.type ? { 'content-type': c.type } : {}), ...c.headers }
    const method = c.method ?? 'POST'
    const path = c.path ?? '/logs'
    const expected = await overSocket(routed.port, method, path, body, headers)
    const answer = await overSocket(direct.port, method, path, body, headers)
    expect(direct.taken.count).toBe(c.front ? 1 : 0)
    expect(routed.taken.count).toBe(0)
    expect(answer).toEqual(expected)
    await routed.app.close()
    await direct.app.close()
    expect(await rowsOf(direct.config.DATA_DIR)).toEqual(await rowsOf(routed.config.DATA_DIR))
  })

  it('counts what it refuses where /health and /metrics read it', async () => {
    const { app, port, taken } = await start()
    await overSocket(port, 'POST', '/logs', Buffer.from('{"n":'), { 'content-type': 'application/json' })
    await overSocket(port, 'POST', '/logs', Buffer.from(''), { 'content-type': 'application/x-ndjson' })
    expect(taken.count).toBe(2)
    expect(app.server.refusedRequests).toMatchObject({ INVALID_JSON: 1, EMPTY_BODY: 1 })
  })

  it('leaves a request that meets a full buffer to the route, which waits for room (BUFFER_FULL_WAIT)', async () => {
    // Generous: the wait ends when the file sink's write does.
    const { app, port, taken } = await start(false, {
      BATCH_SIZE: '10',
      BUFFER_MAX_EVENTS: '10',
      FLUSH_INTERVAL: '3600',
      BUFFER_FULL_WAIT: '20',
    })
    const json = { 'content-type': 'application/x-ndjson' }
    expect((await overSocket(port, 'POST', '/logs', Buffer.from('{"n":1}\n'.repeat(10)), json)).status).toBe(
      202,
    )
    expect(() => app.pipeline.assertNotSaturated()).toThrow(/buffer of sink "file" is full/)
    expect((await overSocket(port, 'POST', '/logs', Buffer.from('{"n":2}'), json)).status).toBe(202)
    expect(taken.count).toBe(1)
    expect(app.pipeline.stats().file).toMatchObject({ delivered_events: 10, buffered_events: 1 })
  })

  it('leaves a request to the route once the bodies in flight reach MAX_INFLIGHT_BYTES: 429 before its body is read', async () => {
    const { app, port, taken } = await start(false, {
      ...SETTINGS,
      MAX_BODY_BYTES: '2000',
      MAX_INFLIGHT_BYTES: '3000',
    })
    // Two clients that send 1,500 bytes of a 2,000-byte body each and wait: exactly the bound, counted.
    const holders = [0, 1].map(() => {
      const holder = connect(port, '127.0.0.1')
      holder.on('error', () => {})
      holder.write(
        `POST /logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n${'x'.repeat(1500)}`,
      )
      return holder
    })
    await until(
      async () => app.server.healthDocument().inflight_bytes,
      (bytes) => bytes === 3000,
      'the held bytes counted',
    )
    const answer = await overSocket(port, 'POST', '/logs', Buffer.from('{"n":1}'), {
      'content-type': 'application/json',
    })
    // The route refuses at once and keeps the connection; the door would have read the body, then closed it.
    expect(answer).toMatchObject({ status: 429, body: { error: 'INFLIGHT_FULL' }, connection: undefined })
    expect(taken.count).toBe(2)
    for (const holder of holders) holder.destroy()
    await until(
      async () => app.server.healthDocument().inflight_bytes,
      (bytes) => bytes === 0,
      'the held bytes given back',
    )
  })

  // Second review: a failure to answer entries already taken must not be answered "nothing was kept" (500).
  it('closes the connection when it cannot answer entries it has taken, which stay taken', async () => {
    const { app, config, port, taken } = await start()
    const writeHead = vi.spyOn(ServerResponse.prototype, 'writeHead').mockImplementationOnce(() => {
      throw new Error('the answer could not be written')
    })
    const outcome = await overSocket(port, 'POST', '/logs', Buffer.from('{"n":1}'), {
      'content-type': 'application/json',
    }).then(
      (answer) => answer.status,
      (err: NodeJS.ErrnoException) => err.code,
    )
    writeHead.mockRestore()
    expect(outcome).toBe('ECONNRESET')
    expect(taken.count).toBe(1)
    expect(app.server.refusedRequests).toEqual({})
    await app.close()
    expect((await readJsonlTree(config.DATA_DIR)).map((row) => row.n)).toEqual([1])
  })

  it('leaves a request to a sidecar that has stopped accepting to the route: 503', async () => {
    const { app, port, taken } = await start()
    app.pipeline.beginShutdown()
    app.pipeline.stopAccepting()
    const answer = await overSocket(port, 'POST', '/logs', Buffer.from('{"n":1}'), {
      'content-type': 'application/json',
    })
    expect(answer.status).toBe(503)
    expect(answer.body).toMatchObject({ error: 'DRAINING' })
    expect(taken.count).toBe(0)
  })
})

/**
 * Writes `parts` on one connection, each once the one before has been written, and reads until `answers` answers
 * have come whole (a 100 Continue counts, with no body) or the server closes: the answers, without their dates.
 */
function exchange(port: number, parts: readonly string[], answers: number) {
  return new Promise<string>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let received = Buffer.alloc(0)
    const done = () => {
      socket.destroy()
      resolve(received.toString('latin1').replace(/^Date: .*\r\n/gim, ''))
    }
    const complete = () => {
      let at = 0
      for (let n = 0; n < answers; n++) {
        const end = received.indexOf('\r\n\r\n', at)
        if (end < 0) return false
        const head = received.toString('latin1', at, end)
        const length = /^HTTP\/1\.1 100 /.test(head)
          ? 0
          : Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0)
        at = end + 4 + length
        if (received.length < at) return false
      }
      return true
    }
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      if (complete()) done()
    })
    socket.on('close', done)
    socket.on('error', () => {})
    socket.once('connect', async () => {
      for (const part of parts) await new Promise<void>((written) => socket.write(part, () => written()))
    })
  })
}

const request = (
  path: string,
  body: string,
  headers: readonly string[] = ['Content-Type: application/json'],
) =>
  `POST ${path} HTTP/1.1\r\nHost: x\r\n${headers.map((h) => `${h}\r\n`).join('')}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`

// The review's cases over a raw connection: what a client library rarely sends, answered the same either way.
// `front`: the requests the door takes (Node keeps the first of two Content-Types; a fragment, a double slash and the
// absolute form are left to Fastify's router).
const RAW: readonly { name: string; parts: string[]; answers: number; front: number }[] = [
  {
    name: 'two requests pipelined',
    parts: [request('/logs', '{"n":1}') + request('/logs', '{"n":2}')],
    answers: 2,
    front: 2,
  },
  {
    name: 'a bad request, then a good one, pipelined',
    parts: [request('/logs', '{"n":') + request('/logs', '{"n":2}')],
    answers: 2,
    front: 2,
  },
  {
    name: 'two Content-Type headers',
    parts: [request('/logs', '{"n":1}', ['Content-Type: application/json', 'Content-Type: application/xml'])],
    answers: 1,
    front: 1,
  },
  { name: 'a bare question mark', parts: [request('/logs?', '{"n":1}')], answers: 1, front: 1 },
  { name: 'a fragment', parts: [request('/logs#x', '{"n":1}')], answers: 1, front: 0 },
  { name: 'a double slash', parts: [request('//logs', '{"n":1}')], answers: 1, front: 0 },
  { name: 'the absolute form', parts: [request('http://x/logs', '{"n":1}')], answers: 1, front: 0 },
  {
    name: 'a chunked body',
    parts: [
      'POST /logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{"n":1}\n\r\n7\r\n{"n":2}\r\n0\r\n\r\n',
    ],
    answers: 1,
    front: 1,
  },
  {
    name: 'HTTP/1.0',
    parts: ['POST /logs HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"n":1}'],
    answers: 1,
    front: 1,
  },
  {
    name: 'Expect: 100-continue',
    parts: [
      'POST /logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n',
      '{"n":1}',
    ],
    answers: 2,
    front: 1,
  },
]

describe('the front door answers as the Fastify route does, over a raw connection', () => {
  it.each(RAW)('$name', async (c) => {
    const routed = await start(true)
    const direct = await start()
    const expected = await exchange(routed.port, c.parts, c.answers)
    const answer = await exchange(direct.port, c.parts, c.answers)
    expect(answer).toEqual(expected)
    expect(answer).toMatch(/^HTTP\/1\.[01] \d{3} /)
    expect(direct.taken.count).toBe(c.front)
    expect(direct.app.server.refusedRequests).toEqual(routed.app.server.refusedRequests)
    await routed.app.close()
    await direct.app.close()
    expect(await rowsOf(direct.config.DATA_DIR)).toEqual(await rowsOf(routed.config.DATA_DIR))
  })
})

// Review finding: built through Fastify's serverFactory, the server listened on one address of "localhost" only
// (Fastify leaves a server it did not make to its maker). This machine's localhost is 127.0.0.1 alone: the lookup is
// made to give ::1 too.
it('listens on every address of SIDELOG_HOST=localhost, each with the front door and MAX_CONNECTIONS', async () => {
  const lookup = dns.lookup
  const spy = vi.spyOn(dns, 'lookup').mockImplementation(((
    host: string,
    options: unknown,
    callback: (...args: unknown[]) => void,
  ) => {
    if (host === 'localhost' && typeof options === 'object' && (options as { all?: boolean }).all) {
      process.nextTick(callback, null, [
        { address: '127.0.0.1', family: 4 },
        { address: '::1', family: 6 },
      ])
      return
    }
    return (lookup as (...args: unknown[]) => void)(host, options, callback)
  }) as unknown as typeof dns.lookup)
  try {
    const config = testConfig(await tempDir(), {
      SIDELOG_HOST: 'localhost',
      SIDELOG_PORT: '0',
      MAX_CONNECTIONS: '2',
    })
    const app = await createApp(config, {
      logger: silentLogger,
      stdout: new PassThrough(),
      instanceId: 'test',
    })
    apps.push(app)
    const door = app.server.frontDoor
    let taken = 0
    app.server.setFrontDoor((request, response) => {
      const took = door?.(request, response) === true
      if (took) taken++
      return took
    })
    const { port } = await app.start()
    const reach = (host: string) =>
      new Promise<string>((resolve) => {
        const socket = connect(port, host, () => {
          socket.destroy()
          resolve('connects')
        })
        socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? String(err)))
      })
    expect({ v4: await reach('127.0.0.1'), v6: await reach('::1') }).toEqual({
      v4: 'connects',
      v6: 'connects',
    })
    // The other address's server is sidelog's too: its /logs goes through the front door, and MAX_CONNECTIONS holds.
    const answer = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        { host: '::1', port, method: 'POST', path: '/logs', headers: { 'content-type': 'application/json' } },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        },
      )
      req.on('error', reject)
      req.end('{"n":1}')
    })
    expect({ answer, taken }).toEqual({ answer: 202, taken: 1 })
    const open = [connect(port, '::1'), connect(port, '::1'), connect(port, '::1')]
    for (const socket of open) socket.on('error', () => {})
    await until(
      async () => app.server.healthDocument().refused_connections,
      // At least the third: the POST's connection may still be open on the server's side.
      (refused) => typeof refused === 'number' && refused >= 1,
      'a connection to ::1 over MAX_CONNECTIONS refused',
    )
    for (const socket of open) socket.destroy()
  } finally {
    spy.mockRestore()
  }
})
