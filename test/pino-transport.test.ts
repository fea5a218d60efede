// The pino transport's shipper against a scripted HTTP peer (sidelog's own answers are covered by the examples
// test, which runs the transport against the real process under 429s): order, 413 splitting, and what happens to
// lines that cannot be delivered.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { SidelogShipper } from '../src/pino-transport.js'

let server: Server | undefined

afterEach(async () => {
  vi.restoreAllMocks()
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)))
  server = undefined
})

/** A peer that answers the n-th request with `answer(lines, n)`, recording the lines of the bodies it takes. */
async function peer(
  answer: (lines: string[], n: number) => number,
): Promise<{ url: string; bodies: string[][] }> {
  const bodies: string[][] = []
  let requests = 0
  const peerServer = createServer(async (req: IncomingMessage, res) => {
    let text = ''
    for await (const chunk of req) text += chunk
    const lines = text.split('\n')
    const status = answer(lines, requests++)
    if (status === 202) bodies.push(lines)
    res.writeHead(status, status === 429 ? { 'retry-after': '0' } : {}).end('{}')
  })
  server = peerServer
  await new Promise<void>((resolve) => peerServer.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(peerServer.address() as AddressInfo).port}/logs`, bodies }
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

  it('splits a body answered 413 until the halves are taken', async () => {
    const { url, bodies } = await peer((body) => (body.length > 3 ? 413 : 202))
    const shipper = new SidelogShipper({ url, batchSize: 8 })
    for (const line of lines(8)) await shipper.push(line)
    await shipper.close()
    expect(bodies.every((b) => b.length <= 3)).toBe(true)
    expect(bodies.flat()).toEqual(lines(8))
  })

  it('writes a body sidelog refuses for what it is (400) to stderr, and goes on', async () => {
    const { url, bodies } = await peer((_, n) => (n === 0 ? 400 : 202))
    const stderr = captureStderr()
    const shipper = new SidelogShipper({ url, batchSize: 2 })
    for (const line of lines(4)) await shipper.push(line)
    await shipper.close()
    expect(stderr[0]).toContain('sidelog answered 400; writing 2 line(s) here instead')
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
