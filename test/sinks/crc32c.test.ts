// The CRC32C given to the Cloud Storage client (src/google/crc32c.ts, WebAssembly) against the client's own: the
// same value for any bytes fed in any pieces, in the form Cloud Storage answers (base64, big-endian).
import { CRC32C } from '@google-cloud/storage'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Crc32c } from '../../src/google/crc32c.js'

describe('Crc32c', () => {
  it('agrees with the storage client CRC32C on any bytes, fed in any pieces', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }), (pieces) => {
        const native = new Crc32c()
        const reference = new CRC32C()
        for (const piece of pieces) {
          native.update(Buffer.from(piece))
          reference.update(Buffer.from(piece))
        }
        expect(native.toString()).toBe(reference.toString())
        expect(native.validate(reference.toString())).toBe(true)
      }),
    )
  })

  // crc32c.ts hashes in WebAssembly, 256 KiB at a time through the module's memory, 16 bytes a step.
  it('agrees with the storage client on uploads larger than a piece of its memory, whole or in odd pieces', () => {
    const data = Buffer.alloc(700_001)
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24
    const reference = new CRC32C()
    reference.update(data)
    const whole = new Crc32c()
    whole.update(data)
    expect(whole.toString()).toBe(reference.toString())
    const pieces = new Crc32c()
    for (let at = 0, size = 1; at < data.length; at += size, size = size * 3 + 7) {
      pieces.update(data.subarray(at, Math.min(at + size, data.length)))
    }
    expect(pieces.toString()).toBe(reference.toString())
    // CRC32C's check value: 0xE3069283 for "123456789".
    const check = new Crc32c()
    check.update(Buffer.from('123456789'))
    expect(Buffer.from(check.toString(), 'base64').toString('hex')).toBe('e3069283')
  })

  it('gives the documented value, and refuses another', () => {
    const crc = new Crc32c()
    crc.update(Buffer.from('data'))
    // The example in the client's CRC32CValidator documentation.
    expect(crc.toString()).toBe('rth90Q==')
    expect(crc.validate('DkjKuA==')).toBe(false)
  })
})
