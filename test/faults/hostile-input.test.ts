// Issue 10, findings 3, 4, 5 and 10b, on the real process: input built to hurt. A body of tiny entries is refused
// before any entry is built; an event_id with a newline cannot forge a line through the spool; a body over the limit
// gets its 413 as an answer, not a broken connection; `level: "constructor"` finds no severity.
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { readJsonlTree } from '../helpers.js'
import { fileSinkSettings, getHealth, peakRssMiB } from './harness.js'

// The image's heap: a request that builds every entry before counting them runs out of it.
const IMAGE_HEAP = '--max-semi-space-size=1 --max-old-space-size=128'

let sidelog: SidelogProcess | undefined
afterEach(() => {
  sidelog?.child.kill('SIGKILL')
})

async function start(env: Record<string, string> = {}) {
  const { settings, dir } = await fileSinkSettings({ NODE_OPTIONS: IMAGE_HEAP, ...env })
  sidelog = await spawnSidelog(settings)
  return { sidelog, dir }
}

/** POSTs `body` with fetch, whole (Content-Length) or as a stream (chunked); the status, or the socket error. */
async function post(url: string, body: Buffer, chunked: boolean): Promise<number | string> {
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let at = 0; at < body.length; at += 64 * 1024)
        controller.enqueue(body.subarray(at, at + 64 * 1024))
      controller.close()
    },
  })
  try {
    const res = await fetch(`${url}/logs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: chunked ? stream : body,
      ...(chunked ? { duplex: 'half' } : {}),
    } as RequestInit)
    await res.arrayBuffer()
    return res.status
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause
    return cause?.code ?? cause?.message ?? String(err)
  }
}

describe('fault: hostile input', () => {
  it('a 5 MiB body of 1.7 million empty entries gets a 413 before any is built, with the image heap', async () => {
    const { sidelog } = await start()
    const accepted = await fetch(`${sidelog.url}/logs`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: '{"event_id":"before"}',
    })
    expect(accepted.status).toBe(202)
    for (const [type, body] of [
      ['application/x-ndjson', '{}\n'.repeat(1_700_000)],
      ['application/json', `[${'{},'.repeat(1_700_000)}{}]`],
    ] as const) {
      const startedAt = Date.now()
      const res = await fetch(`${sidelog.url}/logs`, {
        method: 'POST',
        headers: { 'content-type': type },
        body,
      })
      expect({ type, status: res.status, body: await res.json() }).toMatchObject({
        status: 413,
        body: { error: 'REQUEST_TOO_LARGE' },
      })
      console.log(`hostile-input: ${type} of 1.7M entries refused in ${Date.now() - startedAt} ms`)
    }
    expect((await getHealth(sidelog.url)).status).toBe('healthy')
    expect(await peakRssMiB(sidelog.child.pid as number)).toBeLessThan(200)
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
  })

  it('an event_id with a newline cannot forge a line through the spool', async () => {
    // Nothing is delivered before the kill: the entries come back from the spool after the restart.
    const { settings, dir } = await fileSinkSettings(
      { FLUSH_INTERVAL: '3600', BATCH_SIZE: '1000' },
      { spool: true },
    )
    sidelog = await spawnSidelog(settings)
    const forged = 'x\n{"forged":true,"event_id":"evil"}'
    const res = await fetch(`${sidelog.url}/logs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([
        { event_id: forged, message: 'hostile' },
        { event_id: 'neighbour', message: 'innocent' },
      ]),
    })
    expect(res.status).toBe(202)
    sidelog.child.kill('SIGKILL')
    await sidelog.exited
    sidelog = await spawnSidelog(settings)
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    const lines = await readJsonlTree(join(dir, 'data', 'logs'))
    expect(lines.map((l) => [l.event_id, l.message])).toEqual([
      [forged, 'hostile'],
      ['neighbour', 'innocent'],
    ])
  })

  it('a body over MAX_BODY_BYTES gets its 413 as an answer, never a broken connection', async () => {
    const { sidelog } = await start()
    const body = Buffer.from(`{"m":"${'x'.repeat(6 * 1024 ** 2)}"}`)
    const answers: Record<string, number> = {}
    for (let i = 0; i < 25; i++) {
      for (const chunked of [false, true]) {
        const answer = String(await post(sidelog.url, body, chunked))
        answers[answer] = (answers[answer] ?? 0) + 1
      }
    }
    expect(answers).toEqual({ 413: 50 })
  })

  it('level "constructor" finds no severity on the prototype', async () => {
    const { sidelog, dir } = await start({ FLUSH_INTERVAL: '0.1' })
    const res = await fetch(`${sidelog.url}/logs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([{ level: 'constructor' }, { level: '__proto__' }, { level: 'toString' }]),
    })
    expect(res.status).toBe(202)
    sidelog.child.kill('SIGTERM')
    await sidelog.exited
    const lines = await readJsonlTree(join(dir, 'data', 'logs'))
    expect(lines.map((l) => l.severity)).toEqual([undefined, undefined, undefined])
  })
})
