// The scan's WebAssembly memory (scan-json.ts) follows the bodies it is given: grown for a large one, let go of
// after it, and nothing outside the bytes given is ever scanned. That the committed module is what scan-json.wat
// assembles to is test/wasm-modules.test.ts's.
import { describe, expect, it } from 'vitest'
import { JsonScanner } from '../../src/ingest/scan-json.js'

describe('the scan in WebAssembly', () => {
  it('scans a body larger than its memory, then lets that memory go', () => {
    const scanner = new JsonScanner(['msg'])
    const memory = () => (scanner as unknown as { scan: { memory: WebAssembly.Memory } }).scan.memory
    const small = Buffer.from('{"msg":"a"}')
    expect(scanner.object(small, 0)).toBe(small.length)
    const kept = memory().buffer.byteLength
    // 3 MiB of one string, then its end: the whole of it is scanned.
    const large = Buffer.from(`{"pad":"${'x'.repeat(3 * 1024 ** 2)}","msg":"end"}`)
    expect(scanner.object(large, 0)).toBe(large.length)
    expect(large.toString('utf8', scanner.valueStart(0), scanner.valueEnd(0))).toBe('"end"')
    expect(memory().buffer.byteLength).toBeGreaterThan(3 * 1024 ** 2)
    scanner.forget()
    expect(memory().buffer.byteLength).toBe(kept)
    // The fields are still known to the fresh memory.
    expect(scanner.object(small, 0)).toBe(small.length)
    expect(scanner.has(0)).toBe(true)
  })

  it('scans nothing from outside the bytes it was given, whatever an earlier body left in its memory', () => {
    const scanner = new JsonScanner(['msg'])
    expect(scanner.object(Buffer.from('{"a":1}          {"msg":"stale","level":1}'), 0)).toBe(7)
    const small = Buffer.from('{"a":1}')
    for (const p of [7, 17, 100, -1, -4096, 0.5, Number.NaN])
      expect(scanner.object(small, p), `from ${p}`).toBe(-1)
    expect(scanner.object(small, 0)).toBe(7)
  })

  it('never reads past the bytes it was given: a body cut anywhere is refused, whatever lay beyond it before', () => {
    const scanner = new JsonScanner(['msg'])
    const whole = Buffer.from('{"msg":"a\\u00e9b","n":-1.5e+3,"t":true,"f":false,"z":null,"a":[1,{"b":[]}]}')
    expect(scanner.object(whole, 0)).toBe(whole.length)
    for (let cut = 1; cut < whole.length; cut++) {
      // The whole object was in the memory just before: a scan that read past the cut would find its rest there.
      scanner.object(whole, 0)
      expect(scanner.object(whole.subarray(0, cut), 0), `cut at ${cut}`).toBe(-1)
    }
  })
})
