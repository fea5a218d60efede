// The pipeline: one lane per sink (bounded batcher → retrying sink → dead-letter store), all-or-nothing accept(),
// per-sink counters, and a drain that delivers what it can before a deadline and dead-letters the rest.
import type { Logger } from 'pino'
import type { DeadLetterStore } from '../delivery/dead-letter.js'
import { DeliveryFailedError, type GiveUpReason, type RetryPolicy, withRetry } from '../delivery/retry.js'
import {
  errorMessage,
  InputError,
  QueueFullError,
  type RejectedEvent,
  ShuttingDownError,
  SpoolWriteError,
} from '../errors.js'
import type { Batch, LogEvent } from '../event.js'
import type { Sink } from '../sinks/sink.js'
import { type Recovered, recordToEvent, type Spool } from '../spool/index.js'
import type { LogReader } from '../spool/segment-log.js'
import { Batcher, type BatcherOptions } from './batcher.js'
import type { BatchLimits } from './batching.js'

/** Part of the shutdown budget kept back for writing what is left to the dead-letter store. */
const DEAD_LETTER_RESERVE_MS = 1000

export interface PipelineOptions {
  readonly sinks: readonly Sink[]
  readonly batching: Omit<BatcherOptions, 'deliver'>
  /** Batch limits of a sink, by sink name, where they differ from `batching`'s (see batching.ts). */
  readonly sinkBatching?: Readonly<Record<string, BatchLimits>>
  readonly retry: RetryPolicy
  readonly deadLetter: DeadLetterStore
  readonly logger: Logger
  /** Retry-After given with a 429. */
  readonly retryAfterMs: number
  /** The disk spool (SPOOL_DIR), if any: accepted entries are appended to it, and every sink's batches journaled. */
  readonly spool?: Spool
  /** Told what the counters below cannot say (bytes, why entries were dead-lettered), where they are counted. */
  readonly observer?: PipelineObserver
}

/** Why entries went to the dead-letter store: the retry layer's reason, a row the destination refused, or the spool. */
export type DeadLetterClass = GiveUpReason | 'rejected' | 'spool-write-failed'

export interface PipelineObserver {
  /** Entries of one batch delivered (counted in `delivered_events` at the same moment), and their bytes. */
  onDelivered?(sink: string, events: number, bytes: number): void
  /** Entries written to the dead-letter store (counted in `dead_lettered_events` at the same moment), by class. */
  onDeadLettered?(sink: string, counts: Partial<Record<DeadLetterClass, number>>): void
}

export interface SinkStats {
  delivered_events: number
  delivered_batches: number
  retries: number
  dead_lettered_events: number
  /** Events that could be neither delivered nor written to the dead-letter store (their lines are in a fatal log). */
  dead_letter_failed_events: number
  /** With a spool: acknowledged entries this sink could not read back because their records were damaged. */
  lost_events: number
  buffered_events: number
  buffered_bytes: number
  /** False from a failed attempt until the next successful write. */
  healthy: boolean
  last_error: { message: string; at: string } | null
  last_delivery_at: string | null
}

export interface DrainSummary {
  readonly delivered: number
  readonly dead_lettered: number
  readonly dead_letter_failed: number
  readonly timed_out: boolean
  /** With a spool: entries still on disk for the next start (at most, across sinks). */
  readonly left_in_spool?: number
  /** Entries written synchronously to the dead-letter store (or stderr) just before a hard exit. */
  readonly last_resort?: number
}

interface Lane {
  readonly sink: Sink
  readonly batcher: Batcher
  readonly stats: Omit<SinkStats, 'buffered_events' | 'buffered_bytes'>
  /** With a spool: where this sink reads entries it has not taken into memory yet. */
  reader?: LogReader
  /** The read from disk under way, if any (one at a time per sink). */
  pumping?: Promise<void>
  /** Set when more may have become readable since the read under way began: it reads again before it ends. */
  pumpAgain?: boolean
  /** With a spool, at the deadline: entries taken back from memory unsent, which stay in the spool. */
  leftInMemory: number
}

export class Pipeline {
  private readonly lanes: Lane[]
  /** Aborted when the drain deadline passes: retries stop and what is left goes to the dead-letter store. */
  private readonly deadline = new AbortController()
  private accepting = true
  private accepted = 0
  /** The last failed spool append, until one succeeds: /health is degraded meanwhile. */
  private spoolFailure: { message: string; at: string } | undefined

  constructor(private readonly options: PipelineOptions) {
    this.lanes = options.sinks.map((sink) => this.createLane(sink))
  }

  private createLane(sink: Sink): Lane {
    const { logger } = this.options
    const stats: Lane['stats'] = {
      delivered_events: 0,
      delivered_batches: 0,
      retries: 0,
      dead_lettered_events: 0,
      dead_letter_failed_events: 0,
      lost_events: 0,
      healthy: sink.startupError === undefined,
      last_error: sink.startupError
        ? { message: errorMessage(sink.startupError), at: new Date().toISOString() }
        : null,
      last_delivery_at: null,
    }
    const noteError = (err: unknown) => {
      stats.healthy = false
      stats.last_error = { message: errorMessage(err), at: new Date().toISOString() }
    }
    const retrying = withRetry(sink, this.options.retry, {
      onRetry(err, attempt, delayMs) {
        stats.retries++
        noteError(err)
        logger.warn(
          { sink: sink.name, attempt, delay_ms: delayMs, err: errorMessage(err) },
          'write failed; retrying',
        )
      },
    })
    const cursor = this.options.spool?.cursor(sink.name)
    const journal = (step: 'sealed' | 'done', batch: Batch) =>
      cursor?.[step](batch).catch((err: unknown) =>
        logger.error(
          { sink: sink.name, batch: batch.name, err: errorMessage(err) },
          `spool: batch not journaled as ${step}`,
        ),
      )
    const deliver = async (batch: Batch) => {
      // Journaled before the first write: after a crash the batch is re-sent under this name, and meets itself.
      await journal('sealed', batch)
      await this.deliver(batch, sink, retrying, stats, noteError)
      await journal('done', batch)
      await this.options.spool
        ?.release()
        .catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'spool: segments not released'))
    }
    // Room freed: a sink that fell behind reads on from the spool.
    const onRoom = () => {
      if (lane.reader) void this.pump(lane)
    }
    const batcher = new Batcher({
      ...this.options.batching,
      ...this.options.sinkBatching?.[sink.name],
      deliver,
      onRoom,
    })
    const lane: Lane = { sink, batcher, stats, leftInMemory: 0 }
    if (this.options.spool) lane.reader = this.readerFor(lane, this.options.spool.next)
    return lane
  }

  /** A reader of the spool for one sink; damage it skips is counted against that sink and logged, never silent. */
  private readerFor(lane: Lane, fromSeq: number): LogReader {
    const spool = this.options.spool as Spool
    return spool.reader(fromSeq, (damage) => {
      lane.stats.lost_events += damage.lostRecords
      lane.stats.last_error = {
        message: `spool: ${damage.lostRecords} entries lost to a damaged record (${damage.problem})`,
        at: new Date().toISOString(),
      }
      this.options.logger.error(
        {
          sink: lane.sink.name,
          segment: damage.segment,
          byte_offset: damage.byteOffset,
          problem: damage.problem,
          lost_events: damage.lostRecords,
        },
        'spool: damaged records skipped; the entries around them go on',
      )
    })
  }

  /**
   * Reads entries this sink has not taken yet from the spool into its batcher, as far as its bounds allow: with a
   * spool, the backlog waits on disk and memory holds only what the batcher holds. A call while a read is under way
   * makes that read go round once more, so entries made durable meanwhile are never left waiting for another call.
   */
  private pump(lane: Lane): Promise<void> {
    const { reader } = lane
    if (!reader) return Promise.resolve()
    lane.pumpAgain = true
    if (lane.pumping) return lane.pumping
    const run = (async () => {
      try {
        while (lane.pumpAgain) {
          lane.pumpAgain = false
          for (;;) {
            const room = lane.batcher.room()
            const maxBatchBytes =
              this.options.sinkBatching?.[lane.sink.name]?.maxBatchBytes ??
              this.options.batching.maxBatchBytes
            if (room.events <= 0 || room.bytes <= maxBatchBytes / 4) break
            const records = await reader.read(room.events, room.bytes)
            if (records.length === 0) break
            lane.batcher.offer(records.map(recordToEvent))
          }
        }
      } catch (err) {
        lane.pumpAgain = false
        this.options.logger.error({ sink: lane.sink.name, err }, 'spool: read failed')
      }
    })()
    lane.pumping = run
    void run.finally(() => {
      if (lane.pumping === run) lane.pumping = undefined
    })
    return run
  }

  /** One batch through the retry layer; what is not delivered goes to the dead-letter store. Never rejects. */
  private async deliver(
    batch: Batch,
    sink: Sink,
    retrying: ReturnType<typeof withRetry>,
    stats: Lane['stats'],
    noteError: (err: unknown) => void,
  ): Promise<void> {
    let undelivered: RejectedEvent[]
    let attempts: number
    let classes: Partial<Record<DeadLetterClass, number>>
    try {
      const outcome = await retrying.write(batch, { signal: this.deadline.signal })
      undelivered = [...outcome.rejected]
      attempts = outcome.attempts
      classes = { rejected: outcome.rejected.length }
      stats.delivered_batches++
      stats.healthy = true
      stats.last_delivery_at = new Date().toISOString()
    } catch (err) {
      const failure =
        err instanceof DeliveryFailedError ? err : new DeliveryFailedError('permanent', 0, err, batch.events)
      if (failure.reason !== 'shutdown') noteError(failure.lastError)
      undelivered = [
        ...failure.rejected,
        ...failure.pending.map((event) => ({ event, reason: failure.message })),
      ]
      attempts = failure.attempts
      classes = { rejected: failure.rejected.length, [failure.reason]: failure.pending.length }
    }
    stats.delivered_events += batch.events.length - undelivered.length
    if (this.options.observer?.onDelivered) {
      let bytes = batch.bytes
      for (const { event } of undelivered) bytes -= event.bytes
      this.options.observer.onDelivered(sink.name, batch.events.length - undelivered.length, bytes)
    }
    if (undelivered.length > 0) await this.deadLetter(sink.name, batch, undelivered, attempts, stats, classes)
  }

  private async deadLetter(
    sink: string,
    batch: Batch,
    items: readonly RejectedEvent[],
    attempts: number,
    stats: Lane['stats'],
    classes: Partial<Record<DeadLetterClass, number>>,
  ) {
    const reasons = [...new Set(items.map((item) => item.reason))]
    const log = { sink, batch: batch.name, events: items.length, attempts, reasons: reasons.slice(0, 5) }
    try {
      const path = await this.options.deadLetter.write(batch, items, { sink, attempts })
      stats.dead_lettered_events += items.length
      this.options.observer?.onDeadLettered?.(sink, classes)
      this.options.logger.error({ ...log, path }, 'entries not delivered; dead-lettered')
    } catch (err) {
      stats.dead_letter_failed_events += items.length
      this.options.logger.fatal(
        { ...log, dead_letter_error: errorMessage(err), entries: items.map((item) => item.event.line) },
        'entries not delivered and the dead-letter store failed; they are in this log line',
      )
    }
  }

  /**
   * Takes every event of one request, or none: each sink's buffer (and the spool) must have room for all of them
   * first. The checks and the offer are synchronous, so no other request can interleave between them. With a
   * spool, the returned promise resolves once the entries are on disk: only then may the request be answered 202.
   */
  accept(events: readonly LogEvent[]): Promise<void> | undefined {
    if (!this.accepting) throw new ShuttingDownError()
    let bytes = 0
    for (const event of events) bytes += event.bytes
    const { maxBufferedEvents, maxBufferedBytes } = this.options.batching
    if (events.length > maxBufferedEvents || bytes > maxBufferedBytes) {
      throw new InputError(
        413,
        'REQUEST_TOO_LARGE',
        `request holds ${events.length} entries of ${bytes} bytes; a sink buffers at most ${maxBufferedEvents} entries and ${maxBufferedBytes} bytes (BUFFER_MAX_EVENTS, BUFFER_MAX_BYTES): split it`,
      )
    }
    const { spool } = this.options
    if (spool) return this.acceptToSpool(spool, events, bytes)
    for (const { sink, batcher } of this.lanes) {
      if (!batcher.hasRoomFor(events.length, bytes)) throw this.fullError(sink.name, batcher)
    }
    for (const { batcher } of this.lanes) batcher.offer(events)
    this.accepted += events.length
    return undefined
  }

  /**
   * With a spool, only the spool bounds what is accepted: entries are numbered and appended, and no sink sees them
   * before they are durable. Then a sink that is keeping up takes them from memory, and one that is behind reads them
   * from disk when it has room.
   */
  private acceptToSpool(spool: Spool, events: readonly LogEvent[], bytes: number): Promise<void> {
    if (!spool.hasRoomFor(bytes, events.length)) {
      throw new QueueFullError(
        `the spool is full (${spool.bytes} bytes of SPOOL_MAX_BYTES); retry later`,
        this.options.retryAfterMs,
        'SPOOL_FULL',
      )
    }
    const { firstSeq, written } = spool.append(events)
    this.accepted += events.length
    // Appends settle in sequence order, so each sink is offered the entries in the order they were numbered.
    const handOver = (): Lane[] => {
      const behind: Lane[] = []
      for (const lane of this.lanes) {
        const { reader, batcher } = lane
        if (reader && !lane.pumping && reader.next === firstSeq && batcher.hasRoomFor(events.length, bytes)) {
          batcher.offer(events)
          reader.skip(events.length)
        } else {
          behind.push(lane)
        }
      }
      return behind
    }
    return written.then(
      () => {
        this.spoolFailure = undefined
        for (const lane of handOver()) void this.pump(lane)
      },
      async (err: unknown) => {
        // Not durable: the sinks that are keeping up take them from memory; the others would have read them from
        // the log, where they are not: they go to those sinks' dead-letter store, so every sink accounts for them.
        const reason = `the spool could not be written: ${errorMessage(err)}`
        this.spoolFailure = { message: reason, at: new Date().toISOString() }
        this.options.logger.error({ err, entries: events.length }, 'spool: append failed')
        const batch: Batch = {
          name: `spool-failed-${firstSeq}-${firstSeq + events.length - 1}`,
          openedAt: new Date(),
          events,
          bytes,
        }
        for (const lane of handOver()) {
          if (lane.reader && lane.reader.next === firstSeq) lane.reader.skip(events.length)
          await this.deadLetter(
            lane.sink.name,
            batch,
            events.map((event) => ({ event, reason })),
            0,
            lane.stats,
            { 'spool-write-failed': events.length },
          )
        }
        throw new SpoolWriteError(reason)
      },
    )
  }

  /** Hands a restart's unfinished work back to each sink: its sealed batches as they were; the rest it reads. */
  replay(recovered: ReadonlyMap<string, Recovered>): void {
    const { spool } = this.options
    for (const lane of this.lanes) {
      const work = recovered.get(lane.sink.name)
      if (!work || !spool) continue
      for (const batch of work.batches) lane.batcher.enqueue(batch)
      lane.stats.lost_events += work.missing
      lane.reader = this.readerFor(lane, work.resumeFrom)
      const waiting = spool.next - work.resumeFrom
      if (work.batches.length + waiting > 0) {
        this.options.logger.info(
          { sink: lane.sink.name, batches: work.batches.length, entries: waiting },
          'spool: re-sending what the last run had not delivered',
        )
      }
      void this.pump(lane)
    }
  }

  /** The most entries one request may hold: what one sink's buffer can take at all. */
  get maxRequestEntries(): number {
    return this.options.batching.maxBufferedEvents
  }

  /**
   * Throws QueueFullError unless every sink has room for `entries` more now (bytes are checked again by accept()):
   * lets a source refuse a request before it spends work on enriching its entries.
   */
  assertRoomFor(entries: number): void {
    if (entries > this.maxRequestEntries) {
      throw new InputError(
        413,
        'REQUEST_TOO_LARGE',
        `request holds ${entries} entries; a sink buffers at most ${this.maxRequestEntries} (BUFFER_MAX_EVENTS): split it`,
      )
    }
    if (this.options.spool) return
    for (const { sink, batcher } of this.lanes) {
      if (!batcher.hasRoomFor(entries, 0)) throw this.fullError(sink.name, batcher)
    }
  }

  /** Throws QueueFullError if any sink is saturated: lets the HTTP source refuse a request before reading it. */
  assertNotSaturated(): void {
    const { spool } = this.options
    if (spool) {
      // With a spool the sinks' buffers fill from disk as they have room: only the spool itself can be full.
      if (spool.isSaturated) {
        throw new QueueFullError(
          `the spool is nearly full (${spool.bytes} bytes of SPOOL_MAX_BYTES); retry later`,
          this.options.retryAfterMs,
          'SPOOL_FULL',
        )
      }
      return
    }
    for (const { sink, batcher } of this.lanes) {
      if (batcher.isSaturated) throw this.fullError(sink.name, batcher)
    }
  }

  private fullError(sink: string, batcher: Batcher): QueueFullError {
    return new QueueFullError(
      `the buffer of sink "${sink}" is full (${batcher.bufferedEvents} entries, ${batcher.bufferedBytes} bytes held); retry later`,
      this.options.retryAfterMs,
    )
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
    return Math.max(0, ...this.lanes.map((lane) => lane.batcher.bufferedEvents + this.spooledEvents(lane)))
  }

  /** Entries in the spool this sink has not read into memory yet. */
  private spooledEvents(lane: Lane): number {
    return lane.reader && this.options.spool ? Math.max(0, this.options.spool.next - lane.reader.next) : 0
  }

  /** Reads and delivers this sink's whole backlog from the spool (for a drain): stops at the deadline. */
  private async catchUp(lane: Lane): Promise<void> {
    const { reader } = lane
    const { spool } = this.options
    if (!reader || !spool) return
    while (this.spooledEvents(lane) > 0 && !this.deadline.signal.aborted) {
      const before = reader.next
      // Entries still being appended become readable once written.
      await spool.settled()
      await this.pump(lane)
      lane.batcher.flush()
      await lane.batcher.onIdle()
      // Nothing read and nothing held: what is left is not in the log (a failed append); do not spin on it.
      if (reader.next === before && lane.batcher.bufferedEvents === 0) break
    }
  }

  stats(): Record<string, SinkStats & Record<string, unknown>> {
    return Object.fromEntries(
      this.lanes.map((lane) => [
        lane.sink.name,
        {
          ...lane.stats,
          ...lane.sink.stats?.(),
          buffered_events: lane.batcher.bufferedEvents,
          buffered_bytes: lane.batcher.bufferedBytes,
          ...(lane.reader ? { spooled_events: this.spooledEvents(lane) } : {}),
        },
      ]),
    )
  }

  /** Seals every sink's open batch now, without waiting for its count, bytes or age. */
  flushAll(): void {
    for (const { batcher } of this.lanes) batcher.flush()
  }

  /** Asks every sink that holds work past its writes (see Sink.flush) to finish it now. */
  async flushSinks(): Promise<void> {
    await Promise.all(this.lanes.map(({ sink }) => sink.flush?.()))
  }

  /** Resolves when no sink has a batch queued or being written. */
  async onIdle(): Promise<void> {
    await Promise.all(this.lanes.map((lane) => lane.batcher.onIdle()))
  }

  /** Stops accepting (new requests get 503); what is already accepted is still delivered by drain(). */
  stopAccepting(): void {
    this.accepting = false
  }

  /** The last spool append that failed, while no later one has succeeded. */
  get spoolProblem(): { message: string; at: string } | undefined {
    return this.spoolFailure
  }

  /**
   * Stops accepting, flushes every batcher and delivers until `budgetMs` less a reserve; then aborts retries, gives the
   * writes under way a moment to say how they ended, and dead-letters what is left in one write per sink (with a
   * spool, what no write had started stays there for the next start); then closes the sinks, by `budgetMs`.
   */
  async drain(budgetMs: number): Promise<DrainSummary> {
    const startedAt = Date.now()
    this.stopAccepting()
    const reserveMs = Math.min(DEAD_LETTER_RESERVE_MS, budgetMs / 4)
    // With a spool, what is still on disk is delivered too, until the deadline; past it, it stays in the spool.
    const idle = Promise.all(
      this.lanes.map(async (lane) => {
        await this.catchUp(lane)
        await lane.batcher.close()
      }),
    )
    const timedOut = await withinMs(idle, budgetMs - reserveMs)
    if (timedOut) {
      this.deadline.abort(new Error('shutdown deadline reached (SHUTDOWN_TIMEOUT)'))
      await Promise.all(this.lanes.map((lane) => this.abandon(lane)))
      await idle
    }
    const closeBy = startedAt + budgetMs
    await Promise.all(
      this.lanes.map(async ({ sink }) => {
        const closed = sink
          .close()
          .catch((err) => this.options.logger.error({ sink: sink.name, err }, 'close failed'))
        if (await withinMs(closed, closeBy - Date.now())) {
          this.options.logger.error(
            { sink: sink.name },
            'close did not finish inside SHUTDOWN_TIMEOUT; not waiting',
          )
        }
      }),
    )
    return this.summary(timedOut)
  }

  /** At the deadline: the batches no write has started go out together, instead of one by one behind the rest. */
  private async abandon(lane: Lane): Promise<void> {
    const batches = lane.batcher.abandonQueued()
    const events = batches.flatMap((batch) => batch.events)
    if (events.length === 0) return
    if (this.options.spool) {
      // Not sealed, so on disk and not journaled: the next start on this spool reads them again.
      lane.leftInMemory += events.length
      return
    }
    const batch: Batch = {
      name: `${batches[0]?.name}-shutdown`,
      openedAt: batches[0]?.openedAt ?? new Date(),
      events,
      bytes: events.reduce((sum, e) => sum + e.bytes, 0),
    }
    const reason = 'not delivered before the shutdown deadline (SHUTDOWN_TIMEOUT)'
    await this.deadLetter(
      lane.sink.name,
      batch,
      events.map((event) => ({ event, reason })),
      0,
      lane.stats,
      { shutdown: events.length },
    )
  }

  /**
   * The last resort before a hard exit (the drain overran its budget): every entry a sink still holds is written to
   * the dead-letter store synchronously, or, if that fails, to stderr in a fatal log line. Returns how many.
   */
  deadLetterNow(): number {
    let total = 0
    for (const lane of this.lanes) {
      const events = lane.batcher.unfinished().flatMap((batch) => batch.events)
      if (events.length === 0) continue
      total += events.length
      const reason = 'still held when the process had to exit (SHUTDOWN_TIMEOUT overran)'
      const items = events.map((event) => ({ event, reason }))
      const batch: Batch = {
        name: `last-resort-${process.pid}`,
        openedAt: new Date(),
        events,
        bytes: 0,
      }
      try {
        const path = this.options.deadLetter.writeNow(batch, items, { sink: lane.sink.name, attempts: 0 })
        lane.stats.dead_lettered_events += events.length
        this.options.observer?.onDeadLettered?.(lane.sink.name, { shutdown: events.length })
        this.options.logger.error(
          { sink: lane.sink.name, events: events.length, path },
          'last resort: dead-lettered',
        )
      } catch (err) {
        lane.stats.dead_letter_failed_events += events.length
        this.options.logger.fatal(
          { sink: lane.sink.name, err, entries: events.map((event) => event.line) },
          'last resort: the dead-letter store failed; the entries are in this log line',
        )
      }
    }
    return total
  }

  private summary(timedOut: boolean): DrainSummary {
    let delivered = 0
    let deadLettered = 0
    let deadLetterFailed = 0
    for (const { stats } of this.lanes) {
      delivered += stats.delivered_events
      deadLettered += stats.dead_lettered_events
      deadLetterFailed += stats.dead_letter_failed_events
    }
    const leftInSpool = Math.max(0, ...this.lanes.map((lane) => this.spooledEvents(lane) + lane.leftInMemory))
    return {
      delivered,
      dead_lettered: deadLettered,
      dead_letter_failed: deadLetterFailed,
      timed_out: timedOut,
      ...(this.options.spool ? { left_in_spool: leftInSpool } : {}),
    }
  }
}

/** Waits for `promise` at most `ms`; true if the time ran out first. */
async function withinMs(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = await Promise.race([
    promise.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), Math.max(0, ms))
    }),
  ])
  clearTimeout(timer)
  return timedOut
}
