import { describe, expect, it } from 'vitest'
import { EventRun } from '../src/event.js'
import { SlabPool } from '../src/slabs.js'

/** A one-line run of `text` written into the pool, as the enricher writes a request. */
function runIn(pool: SlabPool, text: string): EventRun {
  const line = `${text}\n`
  const taken = pool.take(Buffer.byteLength(line))
  if (!taken) throw new Error('too large for a slab')
  taken.chunk.write(line)
  return new EventRun(taken.chunk, 1, ['id'], taken.slab)
}

describe('SlabPool', () => {
  it('writes runs one after another into a slab, and starts another when one is full', () => {
    const pool = new SlabPool({ slabBytes: 64, maxFree: 4 })
    const a = runIn(pool, 'a'.repeat(9))
    const b = runIn(pool, 'b'.repeat(9))
    expect(pool.stats.made).toBe(1)
    expect(b.chunk.buffer).toBe(a.chunk.buffer)
    expect(b.chunk.byteOffset).toBe(a.chunk.byteOffset + 10)
    for (let i = 0; i < 6; i++) runIn(pool, 'c'.repeat(9))
    expect(pool.stats.made).toBe(2)
    // Over a quarter of a slab: a Buffer of its own.
    expect(pool.take(17)).toBeUndefined()
  })

  it('reuses a slab only once every run in it has been let go and the pool has moved on', () => {
    const pool = new SlabPool({ slabBytes: 32, maxFree: 4 })
    const first = runIn(pool, 'first--')
    const second = runIn(pool, 'second-')
    first.release()
    runIn(pool, 'third--').release()
    runIn(pool, 'fourth-').release()
    // The first slab is full; the next run starts a second one. `second` still holds the first.
    const fifth = runIn(pool, 'fifth--')
    expect(pool.stats).toEqual({ made: 2, reused: 0 })
    expect(second.chunk.toString()).toBe('second-\n')
    second.release()
    // Now the first slab is empty: it goes back to the pool and is written into again once the second is full.
    for (let i = 0; i < 4; i++) runIn(pool, `more-${i}-`)
    expect(pool.stats.reused).toBe(1)
    expect(fifth.chunk.toString()).toBe('fifth--\n')
  })

  it('never reuses a slab whose events were taken out: they may outlive every hold', () => {
    const pool = new SlabPool({ slabBytes: 32, maxFree: 4 })
    const run = runIn(pool, 'kept---')
    const [event] = run.events()
    run.release()
    for (let i = 0; i < 20; i++) runIn(pool, `next-${i % 10}-`).release()
    expect(event?.line).toBe('kept---')
  })

  it('throws when a run is read after its slab was reused (a hold let go too early), instead of giving other bytes', () => {
    const pool = new SlabPool({ slabBytes: 32, maxFree: 4 })
    const run = runIn(pool, 'early--')
    run.release()
    for (let i = 0; i < 8; i++) runIn(pool, `later-${i}`).release()
    expect(pool.stats.reused).toBeGreaterThan(0)
    expect(() => run.copy(Buffer.alloc(8), 0, 0, 8)).toThrow(/read after its memory was reused/)
    expect(() => run.events()).toThrow(/read after its memory was reused/)
  })

  it('keeps at most maxFree emptied slabs; the rest are left to the garbage collector', () => {
    const reuse = (maxFree: number) => {
      const pool = new SlabPool({ slabBytes: 64, maxFree })
      // Twelve runs of 16 bytes: three full slabs, all let go.
      for (const run of Array.from({ length: 12 }, (_, i) => runIn(pool, `run-${i}`.padEnd(15, '-'))))
        run.release()
      for (let i = 0; i < 5; i++) runIn(pool, `new-${i}`.padEnd(15, '-'))
      return pool.stats
    }
    expect(reuse(4)).toEqual({ made: 3, reused: 2 })
    expect(reuse(1)).toEqual({ made: 4, reused: 1 })
  })
})
