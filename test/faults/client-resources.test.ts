// Issue 10, finding 7: what a client can hold is bounded, with a clear refusal. 200 connections each announce a 5 MiB
// body, send 1 MiB of it and stall. Connections past MAX_CONNECTIONS are closed at once (and counted), bodies past
// MAX_INFLIGHT_BYTES get 429, stalled requests are closed after REQUEST_TIMEOUT, memory stays bounded, and a normal
// client is served again as soon as the stalled ones are gone.
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { readJsonlTree } from '../helpers.js'
import { fileSinkSettings, getHealth, peakRssMiB } from './harness.js'

const REQUEST_TIMEOUT_S = 2

let sidelog: SidelogProcess | undefined
const sockets: Socket[] = []
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy()
  sidelog?.child.kill('SIGKILL')
})

/** A connection that announces a 5 MiB body, sends 1 MiB of it and stalls; resolves with what came back when it closed. */
function stalledUpload(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    sockets.push(socket)
    let answer = ''
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1')
    })
    socket.on('error', () => {})
    socket.on('close', () => resolve(answer.split('\r\n')[0] ?? ''))
    socket.write(
      `POST /logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${5 * 1024 ** 2}\r\n\r\n`,
    )
    socket.write(Buffer.alloc(1024 ** 2, 0x20))
  })
}

describe('fault: clients that hold connections and bodies', () => {
  it('bounds connections, bodies in flight and stalled requests, and serves normal clients afterwards', async () => {
    const { settings, dir } = await fileSinkSettings({
      FLUSH_INTERVAL: '0.1',
      MAX_CONNECTIONS: '50',
      REQUEST_TIMEOUT: String(REQUEST_TIMEOUT_S),
      NODE_OPTIONS: '--max-semi-space-size=1 --max-old-space-size=128',
    })
    sidelog = await spawnSidelog(settings)
    const port = Number(new URL(sidelog.url).port)
    const startedAt = Date.now()
    const answers = await Promise.all(Array.from({ length: 200 }, () => stalledUpload(port)))
    const tookMs = Date.now() - startedAt
    const byAnswer: Record<string, number> = {}
    for (const answer of answers) byAnswer[answer || 'closed'] = (byAnswer[answer || 'closed'] ?? 0) + 1
    console.log(`client-resources: 200 stalled uploads ended in ${tookMs} ms: ${JSON.stringify(byAnswer)}`)
    // Every stalled connection was ended by sidelog, within the request time-out and its once-a-second check.
    expect(tookMs).toBeLessThan((REQUEST_TIMEOUT_S + 10) * 1000)
    // Bodies past MAX_INFLIGHT_BYTES (16 MiB: 5 MiB announced each) were refused with an answer.
    expect(byAnswer['HTTP/1.1 429 Too Many Requests']).toBeGreaterThan(0)
    const health = (await getHealth(sidelog.url)) as unknown as Record<string, unknown>
    expect(health.refused_connections).toBeGreaterThan(0)
    expect(health.refused_requests).toMatchObject({ INFLIGHT_FULL: expect.any(Number) })
    expect(await peakRssMiB(sidelog.child.pid as number)).toBeLessThan(200)

    const res = await fetch(`${sidelog.url}/logs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ event_id: 'after', message: 'still served' }),
    })
    expect(res.status).toBe(202)
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    expect((await readJsonlTree(join(dir, 'data', 'logs'))).map((l) => l.event_id)).toEqual(['after'])
  })

  it('connections that announce large bodies and send nothing hold nothing: the app is still served (review finding)', async () => {
    const { settings } = await fileSinkSettings()
    sidelog = await spawnSidelog(settings)
    const port = Number(new URL(sidelog.url).port)
    // 16 × 1 MiB announced is all of MAX_INFLIGHT_BYTES; before the fix this shut everyone out for REQUEST_TIMEOUT.
    const idle = Array.from({ length: 16 }, () => {
      const socket = connect(port, '127.0.0.1')
      sockets.push(socket)
      socket.on('error', () => {})
      socket.write(
        `POST /logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: ${1024 ** 2}\r\n\r\n{"a":1}\n`,
      )
      return socket
    })
    expect(idle).toHaveLength(16)
    const res = await fetch(`${sidelog.url}/logs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ event_id: 'app', message: 'hello' }),
    })
    expect(res.status).toBe(202)
  })
})
