// The pipeline: one lane per sink (lane.ts), fed by one input (memory, or the disk spool: input.ts,
// spool-input.ts); all-or-nothing accept() with the request limits checked first, and the shutdown: a window that
// still takes the app's last entries, then a drain that delivers what it can before a deadline and dead-letters
// (or, with a spool, keeps) the rest.
import type { Logger } from 'pino'
import type { DeadLetterStore } from '../delivery/dead-letter.js'
import type { RetryPolicy } from '../delivery/retry.js'
import { deadlineSignal, timedOut } from '../delivery/timing.js'
import { InputError, ShuttingDownError } from '../errors.js'
import { EventRun, type LogEvent } from '../event.js'
import type { StartedSink } from '../sinks/sink.js'
import type { Recovered, Spool } from '../spool/index.js'
import type { BatcherOptions } from './batcher.js'
import type { BatchLimits } from './batching.js'
import { type LaneInput, MemoryInput } from './input.js'
import { Lane, type PipelineObserver, type SinkStats } from './lane.js'
import { SpoolInput } from './spool-input.js'

export type { DeadLetterClass, PipelineObserver, SinkStats } from './lane.js'

/** Part of the shutdown budget kept back for writing what is left to the dead-letter store. */
const DEAD_LETTER_RESERVE_MS = 1000
/** How long before the budget's end a sink's close is told to stop (load mode then stops following its last job). */
const CLOSE_MARGIN_MS = 150

export interface PipelineOptions {
  readonly sinks: readonly StartedSink[]
  readonly batching: Omit<BatcherOptions, 'deliver'>
  /** Each sink's own batch limits (see batching.ts), over `batching`'s. */
  readonly sinkBatching?: Readonly<Record<string, BatchLimits>>
  readonly retry: RetryPolicy
  readonly deadLetter: DeadLetterStore
  readonly logger: Logger
  /** Retry-After given with a 429. */
  readonly retryAfterMs: number
  /** The disk spool (SPOOL_DIR), if any: accepted entries are appended to it, and every sink's batches journaled. */
  readonly spool?: Spool
  /** Told what the counters cannot say (bytes, why entries were dead-lettered), where they are counted. */
  readonly observer?: PipelineObserver
}

export interface DrainSummary {
  readonly delivered: number
  readonly dead_lettered: number
  readonly dead_letter_failed: number
  readonly timed_out: boolean
  /** With a spool: entries still on disk for the next start (at most, across sinks). */
  readonly left_in_spool?: number
}

export class Pipeline {
  private readonly lanes: Lane[]
  private readonly input: LaneInput
  private readonly spoolInput: SpoolInput | undefined
  /** Aborted when the drain deadline passes: retries stop and what is left goes to the dead-letter store. */
  private readonly deadline = new AbortController()
  private accepting = true
  private shuttingDown = false
  private accepted = 0
  private lastAccepted = 0
  /** Per lane, at the deadline: entries taken back unsent that stay with the input (the spool). */
  private readonly keptAtDeadline = new Map<Lane, number>()
  /** Requests waiting for room (see whenNotSaturated): woken when a batch finishes, or when accepting stops. */
  private readonly waiters = new Set<() => void>()
  /** The entries and bytes of recent accepted requests, averaged (see wakeWaiters). */
  private readonly recentRequest = { events: 0, bytes: 0 }

  constructor(private readonly options: PipelineOptions) {
    const { spool, logger, retryAfterMs, batching } = options
    this.spoolInput = spool
      ? new SpoolInput(spool, {
          logger,
          retryAfterMs,
          maxBatchBytes: batching.maxBatchBytes,
          deadline: this.deadline.signal,
        })
      : undefined
    this.input = this.spoolInput ?? new MemoryInput(retryAfterMs)
    this.lanes = options.sinks.map((sink) => {
      const journal = this.input.journal(sink.name)
      const lane: Lane = new Lane(sink, {
        batching: { ...batching, ...options.sinkBatching?.[sink.name] },
        retry: options.retry,
        deadLetter: options.deadLetter,
        logger,
        deadline: this.deadline.signal,
        ...(options.observer ? { observer: options.observer } : {}),
        ...(journal ? { journal } : {}),
        onRoom: () => {
          this.input.onRoom(lane)
          this.wakeWaiters()
        },
      })
      return lane
    })
    this.input.attach(this.lanes)
  }

  /**
   * Takes every event of one request (as a list, or as the one run the http source makes), or none: each sink's
   * buffer (or the spool) must have room for all of them first. The checks and the offer are synchronous, so no other
   * request can interleave between them. With a spool, the returned promise resolves once the entries are on disk:
   * only then may the request be answered 202.
   */
  accept(events: readonly LogEvent[] | EventRun): Promise<void> | undefined {
    if (!this.accepting) throw new ShuttingDownError()
    let count: number
    let bytes = 0
    if (events instanceof EventRun) {
      count = events.count
      bytes = events.bytes
    } else {
      count = events.length
      for (const event of events) bytes += event.bytes
    }
    const { maxBufferedEvents, maxBufferedBytes } = this.options.batching
    if (count > maxBufferedEvents || bytes > maxBufferedBytes) {
      throw new InputError(
        413,
        'REQUEST_TOO_LARGE',
        `request holds ${count} entries of ${bytes} bytes; a sink buffers at most ${maxBufferedEvents} entries and ${maxBufferedBytes} bytes (BUFFER_MAX_EVENTS, BUFFER_MAX_BYTES): split it`,
      )
    }
    const taken = this.input.accept(events, count, bytes)
    // A moving average over the last few requests: how much room a waiting request will take (see wakeWaiters).
    const recent = this.recentRequest
    recent.events += recent.events === 0 ? count : (count - recent.events) / 8
    recent.bytes += recent.bytes === 0 ? bytes : (bytes - recent.bytes) / 8
    // Waiters woken for the room there was have taken it, or not: the next ones go in while there is room.
    if (this.waiters.size > 0 && !this.lanes.some(({ batcher }) => batcher.isSaturated)) this.wakeWaiters()
    this.accepted += count
    this.lastAccepted = performance.now()
    return taken
  }

  /** Hands a restart's unfinished work (read back from the spool) to each sink. */
  replay(recovered: ReadonlyMap<string, Recovered>): void {
    this.spoolInput?.replay(recovered)
  }

  /** The most entries one request may hold: what one sink's buffer can take at all. */
  get maxRequestEntries(): number {
    return this.options.batching.maxBufferedEvents
  }

  /**
   * Throws unless `entries` more could be taken now (bytes are checked again by accept()): lets a source refuse a
   * request before it spends work on enriching its entries.
   */
  assertRoomFor(entries: number): void {
    if (entries > this.maxRequestEntries) {
      throw new InputError(
        413,
        'REQUEST_TOO_LARGE',
        `request holds ${entries} entries; a sink buffers at most ${this.maxRequestEntries} (BUFFER_MAX_EVENTS): split it`,
      )
    }
    this.input.assertRoomFor(entries)
  }

  /** Throws QueueFullError if a request would be refused anyway: lets a source refuse it before reading it. */
  assertNotSaturated(): void {
    this.input.assertNotSaturated()
  }

  /**
   * Whether assertNotSaturated would throw. A source that only needs to know (to wait, or to leave the request to
   * another path) asks this: at saturation an error per request, with its message and stack, was made and dropped
   * up to three times over for every request that then waited and was taken.
   */
  isSaturated(): boolean {
    return this.input.isSaturated()
  }

  /**
   * Waits, at most `maxWaitMs`, until a request would not be refused before its body is read; rejects with the
   * refusal (QueueFullError, or ShuttingDownError once accepting stops) if it still would be by then. Only a buffer
   * full in memory, of sinks that are delivering, is waited on: their batches finish and make room within moments,
   * so a burst above what the sink writes at once is taken a little later instead of refused. A full spool, or a
   * sink that is failing, is refused at once, as a wait would not change the answer. No entry of the request is held
   * meanwhile: its body is not read yet (the source counts what Node buffers of it, see sources/http.ts).
   */
  async whenNotSaturated(maxWaitMs: number): Promise<void> {
    const deadline = performance.now() + maxWaitMs
    for (;;) {
      if (!this.accepting) throw new ShuttingDownError()
      if (!this.input.isSaturated()) return
      const left = deadline - performance.now()
      // The refusal (it throws: the input is saturated).
      if (left <= 0 || this.spoolInput || !this.saturatedLanesDelivering()) this.input.assertNotSaturated()
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer)
          this.waiters.delete(wake)
          resolve()
        }
        const timer = setTimeout(wake, left)
        this.waiters.add(wake)
      })
    }
  }

  /** Whether every sink whose buffer is saturated is delivering (its last attempt did not fail). */
  private saturatedLanesDelivering(): boolean {
    return this.lanes.every((lane) => !lane.batcher.isSaturated || lane.stats.healthy)
  }

  /**
   * Wakes the requests waiting for room, in the order they came, as many as the room can take at the size requests
   * have lately been: waking them all would have every one read and parse its body to find, for most, that the
   * first few took the room (a 100-entry request at a time into a 500-row batch's room, in the bigquery bench).
   */
  private wakeWaiters(all = false): void {
    if (this.waiters.size === 0) return
    let wakes = this.waiters.size
    if (!all) {
      // At least one entry and one byte a request: before any request is taken there is no size to go by.
      const events = Math.max(1, this.recentRequest.events)
      const bytes = Math.max(1, this.recentRequest.bytes)
      let room = Number.POSITIVE_INFINITY
      for (const { batcher } of this.lanes) {
        const free = batcher.room()
        room = Math.min(room, free.events / events, free.bytes / bytes)
      }
      wakes = Math.min(wakes, Math.max(1, Math.floor(room)))
    }
    for (const wake of [...this.waiters].slice(0, wakes)) wake()
  }

  get isAccepting(): boolean {
    return this.accepting
  }

  /** Entries accepted since start. */
  get acceptedEvents(): number {
    return this.accepted
  }

  /** The most any one sink holds: entries accepted and not yet delivered or dead-lettered everywhere. */
  get bufferedEvents(): number {
    return Math.max(0, ...this.lanes.map((lane) => lane.batcher.bufferedEvents + this.input.backlog(lane)))
  }

  stats(): Record<string, SinkStats & Record<string, unknown>> {
    return Object.fromEntries(
      this.lanes.map((lane) => [
        lane.name,
        { ...lane.snapshot(), ...(this.spoolInput ? { spooled_events: this.input.backlog(lane) } : {}) },
      ]),
    )
  }

  /**
   * SIGUSR1 (as Fluentd's): seals every sink's open batch now, without waiting for its count, bytes or age, waits
   * until every batch queued or being written has been written (or given up on), then asks every sink that holds
   * work past its writes (load mode's staged objects) to hand it on. Resolves when all of that is done.
   */
  async flushNow(): Promise<void> {
    await Promise.all(
      this.lanes.map(async ({ batcher }) => {
        batcher.flush()
        await batcher.onIdle()
      }),
    )
    await Promise.all(this.lanes.map(({ sink }) => sink.flush?.()))
  }

  /** Stops accepting (new requests get 503); what is already accepted is still delivered by drain(). */
  stopAccepting(): void {
    this.accepting = false
    this.wakeWaiters(true)
  }

  /** When an entry was last taken (performance.now()): the shutdown's accept window ends after a quiet spell. */
  get lastAcceptedAt(): number {
    return this.lastAccepted
  }

  /**
   * The first step of a shutdown: still taking entries (the app beside it is logging its own shutdown), but every
   * batch is sealed at once and what is open now goes out, so the drain that follows has little left to do.
   */
  beginShutdown(): void {
    this.shuttingDown = true
    for (const { batcher } of this.lanes) {
      batcher.eager = true
      batcher.flush()
    }
  }

  /** From SIGTERM on, accepting or not. */
  get isShuttingDown(): boolean {
    return this.shuttingDown || !this.accepting
  }

  /** The input's own trouble (a spool write that failed, while no later one has succeeded). */
  get spoolProblem(): { message: string; at: string } | undefined {
    return this.input.problem
  }

  /**
   * Stops accepting, flushes every batcher and delivers until `budgetMs` less a reserve; then aborts retries, gives
   * the writes under way a moment to say how they ended, and dead-letters what is left in one write per sink (with a
   * spool, what no write had started stays there for the next start); then closes the sinks, by `budgetMs`.
   */
  async drain(budgetMs: number): Promise<DrainSummary> {
    const startedAt = performance.now()
    this.stopAccepting()
    const reserveMs = Math.min(DEAD_LETTER_RESERVE_MS, budgetMs / 4)
    // With a spool, what is still on disk is delivered too, until the deadline; past it, it stays in the spool.
    const idle = Promise.all(
      this.lanes.map(async (lane) => {
        await this.input.catchUp(lane, this.deadline.signal)
        await lane.batcher.close()
      }),
    )
    const deadlinePassed = await timedOut(idle, budgetMs - reserveMs)
    if (deadlinePassed) {
      this.deadline.abort(new Error('shutdown deadline reached (SHUTDOWN_TIMEOUT)'))
      await Promise.all(
        this.lanes.map(async (lane) =>
          this.keptAtDeadline.set(lane, await lane.abandon(this.input.keepsUnsent)),
        ),
      )
      await idle
    }
    const closeBy = startedAt + budgetMs
    // Sinks are told the budget's end by a signal, a moment before it, so that what they do then still fits.
    const budgetOver = deadlineSignal(
      closeBy - CLOSE_MARGIN_MS - performance.now(),
      new Error('shutdown deadline reached (SHUTDOWN_TIMEOUT)'),
    )
    await Promise.all(
      this.lanes.map(async ({ sink }) => {
        const closed = sink
          .close(budgetOver.signal)
          .catch((err) => this.options.logger.error({ sink: sink.name, err }, 'close failed'))
        if (await timedOut(closed, closeBy - performance.now())) {
          this.options.logger.error(
            { sink: sink.name },
            'close did not finish inside SHUTDOWN_TIMEOUT; not waiting',
          )
        }
      }),
    )
    budgetOver.clear()
    return this.summary(deadlinePassed)
  }

  /**
   * The last resort before a hard exit (the drain overran its budget): every entry a sink still holds is written to
   * the dead-letter store synchronously, or, if that fails, to stderr in a fatal log line. Returns how many.
   */
  deadLetterNow(): number {
    if (this.input.keepsUnsent) {
      // With a spool everything still held is on disk: sealed batches are re-sent under their names after a restart,
      // the rest is read again. Dead-lettering it here would deliver it twice.
      this.options.logger.error(
        { held: this.bufferedEvents },
        'last resort: entries still held stay in the spool for the next start',
      )
      return 0
    }
    let total = 0
    for (const lane of this.lanes) total += lane.deadLetterNow()
    return total
  }

  private summary(timedOutAtDeadline: boolean): DrainSummary {
    let delivered = 0
    let deadLettered = 0
    let deadLetterFailed = 0
    for (const { stats } of this.lanes) {
      delivered += stats.delivered_events
      deadLettered += stats.dead_lettered_events
      deadLetterFailed += stats.dead_letter_failed_events
    }
    const left = (lane: Lane) =>
      this.input.backlog(lane) + (this.keptAtDeadline.get(lane) ?? 0) + lane.keptUnsealed
    return {
      delivered,
      dead_lettered: deadLettered,
      dead_letter_failed: deadLetterFailed,
      timed_out: timedOutAtDeadline,
      ...(this.spoolInput ? { left_in_spool: Math.max(0, ...this.lanes.map(left)) } : {}),
    }
  }
}
