// The CRC32C given to the Cloud Storage client (src/google/crc32c.ts: native where @node-rs/crc32 loads, WebAssembly
// elsewhere), each of the two against the client's own: the same value for any bytes fed in any pieces, in the form
// Cloud Storage answers (base64, big-endian).
import { CRC32C } from '@google-cloud/storage'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Crc32c, crc32cFor, crc32cOf, nativeUpdate, wasmUpdate } from '../../src/google/crc32c.js'

const native = nativeUpdate()

it('hashes a megabyte upload natively on this machine, and a small one (a gzip object) in WebAssembly', () => {
  // The platforms sidelog ships for (linux x64 and arm64, glibc and musl) all have a binary.
  expect(native).toBeTypeOf('function')
  expect(crc32cFor(1.6 * 1024 * 1024)).toBe('native')
  expect(crc32cFor(256 * 1024)).toBe('native')
  expect(crc32cFor(256 * 1024 - 1)).toBe('wasm')
  expect(crc32cFor(53 * 1024)).toBe('wasm')
})

it('gives the same CRC32C whichever hashes each piece', () => {
  const data = Buffer.alloc(700_001)
  for (let i = 0; i < data.length; i++) data[i] = (i * 40503) >>> 7
  const reference = new CRC32C()
  reference.update(data)
  expect(crc32cOf(data)).toBe(reference.toString())
  const mixed = new Crc32c()
  for (const [from, to] of [
    [0, 10],
    [10, 300_000],
    [300_000, 300_100],
    [300_100, 700_001],
  ] as const) {
    mixed.update(data.subarray(from, to))
  }
  expect(mixed.toString()).toBe(reference.toString())
})

describe.each([
  ['native', native],
  ['WebAssembly', wasmUpdate],
])('Crc32c, %s', (_kind, using) => {
  // Checked above; a machine without the binary still tests the WebAssembly one, and fails the test above.
  if (using === undefined) return
  it('agrees with the storage client CRC32C on any bytes, fed in any pieces', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }), (pieces) => {
        const ours = new Crc32c(using)
        const reference = new CRC32C()
        for (const piece of pieces) {
          ours.update(Buffer.from(piece))
          reference.update(Buffer.from(piece))
        }
        expect(ours.toString()).toBe(reference.toString())
        expect(ours.validate(reference.toString())).toBe(true)
      }),
    )
  })

  // The WebAssembly one hashes 256 KiB at a time through the module's memory, 16 bytes a step.
  it('agrees with the storage client on uploads larger than a piece of its memory, whole or in odd pieces', () => {
    const data = Buffer.alloc(700_001)
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24
    const reference = new CRC32C()
    reference.update(data)
    const whole = new Crc32c(using)
    whole.update(data)
    expect(whole.toString()).toBe(reference.toString())
    const pieces = new Crc32c(using)
    for (let at = 0, size = 1; at < data.length; at += size, size = size * 3 + 7) {
      pieces.update(data.subarray(at, Math.min(at + size, data.length)))
    }
    expect(pieces.toString()).toBe(reference.toString())
    // CRC32C's check value: 0xE3069283 for "123456789".
    const check = new Crc32c(using)
    check.update(Buffer.from('123456789'))
    expect(Buffer.from(check.toString(), 'base64').toString('hex')).toBe('e3069283')
  })

  it('gives the documented value, and refuses another', () => {
    const crc = new Crc32c(using)
    crc.update(Buffer.from('data'))
    // The example in the client's CRC32CValidator documentation.
    expect(crc.toString()).toBe('rth90Q==')
    expect(crc.validate('DkjKuA==')).toBe(false)
  })
})
