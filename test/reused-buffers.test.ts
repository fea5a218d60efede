import { describe, expect, it } from 'vitest'
import { ReusedBuffers } from '../src/reused-buffers.js'

describe('ReusedBuffers', () => {
  it('never hands out a Buffer that another upload holds, and reuses one once it is given back', () => {
    const pool = new ReusedBuffers(2, 64)
    const a = pool.take(10)
    const b = pool.take(10)
    expect(b).not.toBe(a)
    expect(a.length).toBe(64)
    pool.giveBack(a)
    expect(pool.take(50)).toBe(a)
    // Too small for this batch: a new one, and the small one stays for later.
    pool.giveBack(b)
    const big = pool.take(100)
    expect(big).not.toBe(b)
    expect(big.length).toBe(100)
    expect(pool.take(10)).toBe(b)
  })

  it('keeps at most maxFree, the largest ones, and refuses a Buffer given back twice', () => {
    const pool = new ReusedBuffers(1, 16)
    const small = pool.take(16)
    const large = pool.take(32)
    pool.giveBack(small)
    pool.giveBack(large)
    expect(pool.take(16)).toBe(large)
    pool.giveBack(large)
    expect(() => pool.giveBack(large)).toThrow(/given back twice/)
  })
})
