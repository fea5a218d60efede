// Memory for requests' enriched lines, reused instead of allocated per request. Imports nothing from src.
//
// Why: V8 counts the bytes of every Buffer made since its last full collection against the old generation's limit,
// and a buffered request's Buffer lives long enough (until its batch is delivered) to be freed only by a full
// collection. A new Buffer per request therefore started a full collection every 70 to 80 ms at saturation, most of
// the garbage collector's CPU. Lines written into slabs that come back to the pool once every request in them is
// delivered allocate nothing new in the steady state (the bench's 100-entry NDJSON load, 6 s: 73 to 84 full
// collections became 6 to 8, and the CPU per request went from 406 to 492 µs to 311 to 316; see the README).
//
// Safety: a slab is reused only when every run written into it has been let go by everything that held it (see
// EventRun.hold/release). Whoever takes events out of a run (ChunkEvents, which may outlive any batch: BigQuery rows,
// the spool, dead letters) pins its slab for good, and it is then left to the garbage collector like any Buffer. A
// run whose slab was reused anyway (a bug) throws instead of yielding another request's bytes: see Slab.generation.

/** One slab: runs are written one after another from `used`; it is reused once `holds` falls to 0. */
export class Slab {
  used = 0
  /** Runs written into it that are not let go yet, plus one while the pool is still writing into it. */
  holds = 1
  /** Reused never again: some run's events were taken out, and may outlive every hold. */
  pinned = false
  /** How many times it was reused: a run remembers the generation it was written in. */
  generation = 0
  constructor(
    readonly buffer: Buffer,
    private readonly pool: SlabPool,
  ) {}

  /** A run in it (or the pool itself) lets go of it; emptied and not pinned, it goes back to the pool for reuse. */
  letGo(): void {
    this.holds--
    if (this.holds < 0) throw new Error('slab let go more often than it was held')
    if (this.holds > 0 || this.pinned) return
    this.generation++
    this.used = 0
    this.holds = 1
    this.pool.giveBack(this)
  }
}

export interface SlabPoolOptions {
  /** Size of each slab. */
  readonly slabBytes: number
  /** Slabs kept for reuse at most; beyond that an emptied slab is left to the garbage collector. */
  readonly maxFree: number
}

export class SlabPool {
  private current: Slab | undefined
  private readonly free: Slab[] = []
  /** Slabs made, and slabs reused: what the tests check the pool's rules by. */
  readonly stats = { made: 0, reused: 0 }

  constructor(private readonly options: SlabPoolOptions) {}

  /**
   * `size` bytes for a run in a slab, which the run holds until it is let go (Slab.letGo); undefined for a run too
   * large to share a slab (over a quarter of one), which gets a Buffer of its own.
   */
  take(size: number): { slab: Slab; chunk: Buffer } | undefined {
    const { slabBytes } = this.options
    if (size > slabBytes / 4) return undefined
    let slab = this.current
    if (slab === undefined || slab.used + size > slabBytes) {
      slab?.letGo()
      slab = this.free.pop()
      if (slab === undefined) {
        // Its own allocation, never a slice of Node's shared 8 KiB pool, which other short-lived Buffers share.
        slab = new Slab(Buffer.allocUnsafeSlow(slabBytes), this)
        this.stats.made++
      } else {
        this.stats.reused++
      }
      this.current = slab
    }
    const chunk = slab.buffer.subarray(slab.used, slab.used + size)
    slab.used += size
    slab.holds++
    return { slab, chunk }
  }

  /** An emptied slab, kept for reuse unless enough are kept already. */
  giveBack(slab: Slab): void {
    if (this.free.length < this.options.maxFree) this.free.push(slab)
  }
}
