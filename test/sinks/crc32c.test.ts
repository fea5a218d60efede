// The CRC32C given to the Cloud Storage client (src/google/crc32c.ts) against the client's own: the same value
// for any bytes fed in any pieces, in the form Cloud Storage answers (base64, big-endian).
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

  it('gives the documented value, and refuses another', () => {
    const crc = new Crc32c()
    crc.update(Buffer.from('data'))
    // The example in the client's CRC32CValidator documentation.
    expect(crc.toString()).toBe('rth90Q==')
    expect(crc.validate('DkjKuA==')).toBe(false)
  })
})
