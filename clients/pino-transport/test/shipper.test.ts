// The pino transport's shipper against a scripted HTTP peer (sidelog's own answers are covered by the server's
// examples and fault tests, which run the transport against the real process): order, one Idempotency-Key per batch
// reused on every retry, 413 splitting, a 500 SPOOL_WRITE_FAILED taken as taken, and what happens to lines that
// cannot be delivered.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { SidelogShipper } from '../src/index.js'

let server: Server | undefined

afterEach(async () => {
  vi.restoreAllMocks()
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)))
  server = undefined
})

type Answer = number | { status: number; body: string } | 'lose'

/**
 * A peer that answers the n-th request with `answer(lines, n)`, recording the lines of the bodies it takes and the
 * Idempotency-Key of every request. 'lose' takes the body and closes the connection without an answer.
 */
async function peer(
  answer: (lines: string[], n: number) => Answer,
): Promise<{ url: string; bodies: string[][]; keys: string[] }> {
  const bodies: string[][] = []
  const keys: string[] = []
  let requests = 0
  const peerServer = createServer(async (req: IncomingMessage, res) => {
    let text = ''
    for await (const chunk of req) text += chunk
    const lines = text.split('\n')
    keys.push(String(req.headers['idempotency-key']))
    const given = answer(lines, requests++)
    if (given === 'lose') {
      res.socket?.destroy()
      return
    }
    const { status, body } = typeof given === 'number' ? { status: given, body: '{}' } : given
    if (status === 202) bodies.push(lines)
    res.writeHead(status, status === 429 ? { 'retry-after': '0' } : {}).end(body)
  })
  server = peerServer
  await new Promise<void>((resolve) => peerServer.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(peerServer.address() as AddressInfo).port}/logs`, bodies, keys }
}

const lines = (n: number) => Array.from({ length: n }, (_, i) => JSON.stringify({ n: i }))

function captureStderr(): string[] {
  const written: string[] = []
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    written.push(String(chunk))
    return true
  })
  return written
}

describe('SidelogShipper', () => {
  it('sends batches in order and re-sends one answered 429, once', async () => {
    let refused = false
    const { url, bodies } = await peer(() => {
      if (!refused) {
        refused = true
        return 429
      }
      return 202
    })
    const shipper = new SidelogShipper({ url, batchSize: 4 })
    for (const line of lines(10)) await shipper.push(line)
    await shipper.close()
    expect(bodies.map((b) => b.length)).toEqual([4, 4, 2])
    expect(bodies.flat()).toEqual(lines(10))
  })

  it('sends one Idempotency-Key per batch and the same key on every retry of it', async () => {
    const script: Answer[] = [429, 'lose', 503, { status: 500, body: '{"error":"INTERNAL"}' }, 202, 202]
    const { url, bodies, keys } = await peer((_, n) => script[n] ?? 202)
    const shipper = new SidelogShipper({ url, batchSize: 3, maxRetryDelayMs: 10 })
    for (const line of lines(6)) await shipper.push(line)
    await shipper.close()
    expect(bodies.flat()).toEqual(lines(6))
    expect(keys).toHaveLength(6)
    // The first batch took five attempts under one key; the second batch has its own.
    expect(new Set(keys.slice(0, 5)).size).toBe(1)
    expect(keys[5]).not.toBe(keys[0])
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/)
    expect(shipper.stats).toEqual({ sent: 6, spilled: 0, retries: 4 })
  })

  it('does not resend a batch answered 500 SPOOL_WRITE_FAILED: sidelog took it', async () => {
    const stderr = captureStderr()
    const { url, keys } = await peer((_, n) =>
      n === 0 ? { status: 500, body: '{"error":"SPOOL_WRITE_FAILED","message":"disk"}' } : 202,
    )
    const shipper = new SidelogShipper({ url, batchSize: 2 })
    for (const line of lines(4)) await shipper.push(line)
    await shipper.close()
    expect(keys).toHaveLength(2)
    expect(stderr.join('')).toContain('500 SPOOL_WRITE_FAILED); not resending')
    expect(shipper.stats).toMatchObject({ sent: 4, spilled: 0, retries: 0 })
  })

  it('splits a body answered 413 until the halves are taken, each half under its own key', async () => {
    const { url, bodies, keys } = await peer((body) => (body.length > 3 ? 413 : 202))
    const shipper = new SidelogShipper({ url, batchSize: 8 })
    for (const line of lines(8)) await shipper.push(line)
    await shipper.close()
    expect(bodies.every((b) => b.length <= 3)).toBe(true)
    expect(bodies.flat()).toEqual(lines(8))
    expect(new Set(keys).size).toBe(keys.length)
  })

  it('writes a body sidelog refuses for what it is (400) to stderr, and goes on', async () => {
    const { url, bodies } = await peer((_, n) => (n === 0 ? 400 : 202))
    const stderr = captureStderr()
    const shipper = new SidelogShipper({ url, batchSize: 2 })
    for (const line of lines(4)) await shipper.push(line)
    await shipper.close()
    expect(stderr[0]).toContain('sidelog answered 400 {}; writing 2 line(s) here instead')
    expect(stderr.slice(1, 3)).toEqual(lines(2).map((l) => `${l}\n`))
    expect(bodies.flat()).toEqual(lines(4).slice(2))
  })

  it('at close, writes what an unreachable sidelog never took to stderr within closeTimeoutMs', async () => {
    const { url } = await peer(() => 202)
    await new Promise((resolve) => server?.close(resolve))
    server = undefined
    const stderr = captureStderr()
    const shipper = new SidelogShipper({ url, closeTimeoutMs: 300 })
    for (const line of lines(3)) await shipper.push(line)
    await shipper.close()
    expect(stderr[0]).toContain('sidelog unreachable at close; writing 3 line(s) here instead')
    expect(stderr.slice(1, 4)).toEqual(lines(3).map((l) => `${l}\n`))
  })
})
