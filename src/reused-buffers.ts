// Batch-sized Buffers reused once the write that used them has settled: the gcs sink's uploads, the file sink's files
// (lent to the writer thread and handed back, see atomic-file.ts). A new Buffer per batch (1 to 1.6 MiB by default)
// lived as long as its write, long enough to be freed only by a full collection, and V8 counts new Buffers' bytes
// against the old generation's limit until then (see slabs.ts); each also cost the kernel a fresh page per 4 KiB.
// Reused, they cost no new memory in the steady state. A Buffer comes back only when the write that used it has
// settled, so no two writes ever share one.

export class ReusedBuffers {
  private readonly free: Buffer[] = []

  constructor(
    /** Buffers kept for reuse at most (SINK_CONCURRENCY is how many writes of a sink run at once). */
    private readonly maxFree: number,
    /** The smallest Buffer made: batches of a sink vary in size, and a bigger one serves the smaller ones too. */
    private readonly minBytes = 1024 * 1024,
  ) {}

  /** A Buffer of at least `bytes`, the caller's alone until it gives it back. */
  take(bytes: number): Buffer {
    for (let i = this.free.length - 1; i >= 0; i--) {
      const buffer = this.free[i] as Buffer
      if (buffer.length >= bytes) {
        this.free.splice(i, 1)
        return buffer
      }
    }
    return Buffer.allocUnsafeSlow(Math.max(bytes, this.minBytes))
  }

  /** Only once nothing reads `buffer` any more: the write (or the compression) that used it has settled. */
  giveBack(buffer: Buffer): void {
    // By memory, not by object: a lent Buffer comes back as a new view of the same memory.
    if (this.free.some((free) => free.buffer === buffer.buffer))
      throw new Error('a reused buffer was given back twice')
    if (this.free.length < this.maxFree) {
      this.free.push(buffer)
      return
    }
    // Full: keep the larger ones, which serve every batch.
    let smallest = 0
    for (let i = 1; i < this.free.length; i++) {
      if ((this.free[i] as Buffer).length < (this.free[smallest] as Buffer).length) smallest = i
    }
    if ((this.free[smallest] as Buffer).length < buffer.length) this.free[smallest] = buffer
  }
}
