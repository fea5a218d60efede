// A bounded accumulator for one sink: groups events into batches (flush on count, bytes, age or close) and hands
// them to `deliver` with bounded concurrency. Everything it holds, open, queued or in flight, counts against its
// bounds, so a stalled sink turns into 429s rather than unbounded memory.
import PQueue from 'p-queue'
import { type Batch, countOf, EventRun, FormedBatch, type LogEvent, RunSlice } from '../event.js'

/** Fraction of a bound past which the batcher counts as saturated. */
const HIGH_WATER = 0.9

export interface BatcherOptions {
  readonly instanceId: string
  readonly maxBatchEvents: number
  readonly maxBatchBytes: number
  readonly flushIntervalMs: number
  readonly maxBufferedEvents: number
  readonly maxBufferedBytes: number
  readonly concurrency: number
  /** Delivers or dead-letters the batch; must not reject. The batch stops counting against the bounds after it. */
  readonly deliver: (batch: Batch) => Promise<void>
  /** Called once a delivered batch has stopped counting against the bounds: there is room again. */
  readonly onRoom?: () => void
}

export class Batcher {
  /** The open batch: single events, and requests' runs or the slices of them that fit. */
  private open: (LogEvent | EventRun | RunSlice)[] = []
  private openCount = 0
  private openBytes = 0
  private openedAt = new Date(0)
  private timer: NodeJS.Timeout | undefined
  private seq = 0
  private readonly queue: PQueue
  private held = { events: 0, bytes: 0 }
  /** Batches queued and not started yet: what `abandonQueued` can still take back. */
  private readonly waiting = new Set<Batch>()
  /** Batches being delivered (or dead-lettered) now. */
  private readonly running = new Set<Batch>()

  constructor(private readonly options: BatcherOptions) {
    this.queue = new PQueue({ concurrency: options.concurrency })
  }

  /** The most bytes one batch of this sink holds. */
  get maxBatchBytes(): number {
    return this.options.maxBatchBytes
  }

  /** Events held: in the open batch, queued, or being written. */
  get bufferedEvents(): number {
    return this.held.events
  }

  get bufferedBytes(): number {
    return this.held.bytes
  }

  /**
   * Above the high-water mark of either bound: new requests are refused before their body is even read, so that
   * an overloaded sidecar spends its CPU on delivering, not on parsing requests it would refuse anyway.
   */
  get isSaturated(): boolean {
    return (
      this.held.events > this.options.maxBufferedEvents * HIGH_WATER ||
      this.held.bytes > this.options.maxBufferedBytes * HIGH_WATER
    )
  }

  /** Whether `events` more events of `bytes` total would stay within the bounds. */
  hasRoomFor(events: number, bytes: number): boolean {
    return (
      this.held.events + events <= this.options.maxBufferedEvents &&
      this.held.bytes + bytes <= this.options.maxBufferedBytes
    )
  }

  /** How many more events, and bytes, the bounds allow now. */
  room(): { events: number; bytes: number } {
    return {
      events: this.options.maxBufferedEvents - this.held.events,
      bytes: this.options.maxBufferedBytes - this.held.bytes,
    }
  }

  /** Seal after every offer instead of waiting for count, bytes or age: while shutting down, nothing should wait. */
  eager = false

  /**
   * Adds events, or one request's run of them; the caller checks hasRoomFor first (the pipeline does, for every sink,
   * before offering to any). A batch is sealed once it holds maxBatchEvents or maxBatchBytes, and before an event
   * that would take it past maxBatchBytes: a run is split where its lines would do that.
   */
  offer(events: readonly LogEvent[] | EventRun): void {
    const { maxBatchEvents, maxBatchBytes } = this.options
    if (events instanceof EventRun) {
      this.offerRun(events)
    } else {
      for (const event of events) {
        if (this.openCount > 0 && this.openBytes + event.bytes > maxBatchBytes) this.flush()
        this.append(event, 1, event.bytes)
        if (this.openCount >= maxBatchEvents || this.openBytes >= maxBatchBytes) this.flush()
      }
    }
    if (this.eager) this.flush()
  }

  /**
   * A run goes into the open batch whole when all of it fits. Otherwise its lines are measured and it is cut where
   * separate events would be, each batch's share of it one slice.
   */
  private offerRun(run: EventRun): void {
    const { maxBatchEvents, maxBatchBytes } = this.options
    const { bytes: runBytes } = run
    // An empty request (`[]`) holds nothing: it must neither sit in the open batch nor start its age timer.
    if (run.count === 0) return
    if (this.openCount + run.count <= maxBatchEvents && this.openBytes + runBytes <= maxBatchBytes) {
      // The whole run is the batch's part: held, with no slice object of its own.
      run.hold()
      this.append(run, run.count, runBytes)
      if (this.openCount >= maxBatchEvents || this.openBytes >= maxBatchBytes) this.flush()
      return
    }
    // The slice being measured: `count` lines of `bytes` from line `from`, byte `start`.
    let from = 0
    let start = 0
    let count = 0
    let bytes = 0
    const cut = () => {
      if (count === 0) return
      this.append(this.slice(run, from, count, start, bytes), count, bytes)
      from += count
      start += bytes
      count = 0
      bytes = 0
    }
    for (let at = 0; at < runBytes; ) {
      const lineBytes = run.lineEnd(at) - at
      at += lineBytes
      if (this.openCount + count > 0 && this.openBytes + bytes + lineBytes > maxBatchBytes) {
        cut()
        this.flush()
      }
      count++
      bytes += lineBytes
      if (this.openCount + count >= maxBatchEvents || this.openBytes + bytes >= maxBatchBytes) {
        cut()
        this.flush()
      }
    }
    cut()
  }

  /** A batch's share of a run, which holds the run until the batch is done (see FormedBatch.letGo). */
  private slice(run: EventRun, from: number, count: number, start: number, bytes: number): RunSlice {
    run.hold()
    return new RunSlice(run, from, count, start, bytes)
  }

  /** Adds a part of `count` events and `bytes` to the open batch, opening it (and its age timer) if need be. */
  private append(part: LogEvent | EventRun | RunSlice, count: number, bytes: number): void {
    if (this.openCount === 0) {
      this.openedAt = new Date()
      this.timer = setTimeout(() => this.flush(), this.options.flushIntervalMs)
      this.timer.unref()
    }
    this.open.push(part)
    this.openCount += count
    this.openBytes += bytes
    this.held.events += count
    this.held.bytes += bytes
  }

  /** Seals the open batch, if any, and queues it for delivery. */
  flush(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.openCount === 0) return
    const batch = new FormedBatch(
      `${this.options.instanceId}-${String(++this.seq).padStart(6, '0')}`,
      this.openedAt,
      this.open,
      this.openCount,
      this.openBytes,
    )
    this.open = []
    this.openCount = 0
    this.openBytes = 0
    this.dispatch(batch)
  }

  /**
   * Queues a batch formed elsewhere (a spool's batch re-sent after a restart, under its original name) for delivery;
   * it counts against the bounds like any other.
   */
  enqueue(batch: Batch): void {
    this.held.events += countOf(batch)
    this.held.bytes += batch.bytes
    this.dispatch(batch)
  }

  private dispatch(queued: Batch): void {
    this.waiting.add(queued)
    // p-queue keeps the tasks it has started in its array until it compacts them, up to 100 while it is busy: a task
    // that held its batch would keep that many delivered batches in memory (100 MiB of 1 MiB batches).
    const slot: { batch?: Batch } = { batch: queued }
    void this.queue.add(async () => {
      const batch = slot.batch as Batch
      slot.batch = undefined
      if (!this.waiting.delete(batch)) return // abandoned: the caller took it back
      this.running.add(batch)
      try {
        await this.options.deliver(batch)
      } finally {
        this.running.delete(batch)
        this.release(batch)
        // Its runs' memory may be reused. An attempt that timed out may still be running; the sinks copy a batch's
        // bytes when a write starts, and a run read after its memory was reused throws rather than yield other bytes.
        if (batch instanceof FormedBatch) batch.letGo()
      }
    })
  }

  private release(batch: Batch): void {
    this.held.events -= countOf(batch)
    this.held.bytes -= batch.bytes
    this.options.onRoom?.()
  }

  /**
   * Takes back every batch not started yet, the open one included (sealed first): at a shutdown deadline they are
   * dead-lettered together, in one write, instead of one at a time behind the writes in flight. Their runs are not
   * let go: the caller writes their events out after this returns.
   */
  abandonQueued(): Batch[] {
    this.flush()
    const batches = [...this.waiting]
    this.waiting.clear()
    for (const batch of batches) this.release(batch)
    return batches
  }

  /** Every batch this batcher still holds (open, queued, in flight): for the last resort before a hard exit. */
  unfinished(): Batch[] {
    const open: Batch[] =
      this.openCount > 0
        ? [
            new FormedBatch(
              `${this.options.instanceId}-open`,
              this.openedAt,
              this.open,
              this.openCount,
              this.openBytes,
            ),
          ]
        : []
    return [...open, ...this.waiting, ...this.running]
  }

  /** Resolves when nothing is queued or being written (the open batch is not flushed: call flush() first). */
  onIdle(): Promise<void> {
    return this.queue.onIdle()
  }

  /** Flushes the open batch and resolves once every batch is delivered or dead-lettered. */
  async close(): Promise<void> {
    this.flush()
    await this.queue.onIdle()
  }
}
