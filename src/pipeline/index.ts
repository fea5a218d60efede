// The pipeline: one lane per sink (bounded batcher → retrying sink → dead-letter store), all-or-nothing accept(),
// per-sink counters, and a drain that delivers what it can before a deadline and dead-letters the rest.
import type { Logger } from 'pino'
import {
  errorMessage,
  InputError,
  QueueFullError,
  type RejectedEvent,
  ShuttingDownError,
  SpoolWriteError,
} from '../errors.js'
import type { Batch, LogEvent } from '../event.js'
import type { DeadLetterStore } from '../sinks/dead-letter.js'
import { DeliveryFailedError, type RetryPolicy, withRetry } from '../sinks/retry.js'
import type { Sink } from '../sinks/sink.js'
import type { Recovered, Spool } from '../spool/index.js'
import { Batcher, type BatcherOptions } from './batcher.js'

export interface PipelineOptions {
  readonly sinks: readonly Sink[]
  readonly batching: Omit<BatcherOptions, 'deliver'>
  readonly retry: RetryPolicy
  readonly deadLetter: DeadLetterStore
  readonly logger: Logger
  /** Retry-After given with a 429. */
  readonly retryAfterMs: number
  /** The disk spool (SPOOL_DIR), if any: accepted entries are appended to it, and every sink's batches journaled. */
  readonly spool?: Spool
}

export interface SinkStats {
  delivered_events: number
  delivered_batches: number
  retries: number
  dead_lettered_events: number
  /** Events that could be neither delivered nor written to the dead-letter store (their lines are in a fatal log). */
  dead_letter_failed_events: number
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
}

interface Lane {
  readonly sink: Sink
  readonly batcher: Batcher
  readonly stats: Omit<SinkStats, 'buffered_events' | 'buffered_bytes'>
}

export class Pipeline {
  private readonly lanes: Lane[]
  /** Aborted when the drain deadline passes: retries stop and what is left goes to the dead-letter store. */
  private readonly deadline = new AbortController()
  private accepting = true
  private accepted = 0

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
    const batcher = new Batcher({ ...this.options.batching, deliver })
    return { sink, batcher, stats }
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
    try {
      const outcome = await retrying.write(batch, { signal: this.deadline.signal })
      undelivered = [...outcome.rejected]
      attempts = outcome.attempts
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
    }
    stats.delivered_events += batch.events.length - undelivered.length
    if (undelivered.length > 0) await this.deadLetter(sink.name, batch, undelivered, attempts, stats)
  }

  private async deadLetter(
    sink: string,
    batch: Batch,
    items: readonly RejectedEvent[],
    attempts: number,
    stats: Lane['stats'],
  ) {
    const reasons = [...new Set(items.map((item) => item.reason))]
    const log = { sink, batch: batch.name, events: items.length, attempts, reasons: reasons.slice(0, 5) }
    try {
      const path = await this.options.deadLetter.write(batch, items, { sink, attempts })
      stats.dead_lettered_events += items.length
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
    for (const { sink, batcher } of this.lanes) {
      if (!batcher.hasRoomFor(events.length, bytes)) throw this.fullError(sink.name, batcher)
    }
    const { spool } = this.options
    if (spool && !spool.hasRoomFor(bytes, events.length)) {
      throw new QueueFullError(
        `the spool is full (${spool.bytes} bytes of SPOOL_MAX_BYTES); retry later`,
        this.options.retryAfterMs,
        'SPOOL_FULL',
      )
    }
    // Numbered and on their way to disk before any sink sees them, so every batch knows its place in the log.
    const written = spool?.append(events)
    for (const { batcher } of this.lanes) batcher.offer(events)
    this.accepted += events.length
    return written?.catch((err: unknown) => {
      throw new SpoolWriteError(`the spool could not be written: ${errorMessage(err)}`)
    })
  }

  /** Hands a restart's unfinished work back to each sink: its sealed batches as they were, then the rest. */
  replay(recovered: ReadonlyMap<string, Recovered>): void {
    for (const { sink, batcher } of this.lanes) {
      const work = recovered.get(sink.name)
      if (!work) continue
      for (const batch of work.batches) batcher.enqueue(batch)
      if (work.entries.length > 0) batcher.offer(work.entries)
      if (work.batches.length + work.entries.length > 0) {
        this.options.logger.info(
          { sink: sink.name, batches: work.batches.length, entries: work.entries.length },
          'spool: re-sending what the last run had not delivered',
        )
      }
    }
  }

  /** Throws QueueFullError if any sink is saturated: lets the HTTP source refuse a request before reading it. */
  assertNotSaturated(): void {
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
    return Math.max(0, ...this.lanes.map((lane) => lane.batcher.bufferedEvents))
  }

  stats(): Record<string, SinkStats & Record<string, unknown>> {
    return Object.fromEntries(
      this.lanes.map(({ sink, batcher, stats }) => [
        sink.name,
        {
          ...stats,
          ...sink.stats?.(),
          buffered_events: batcher.bufferedEvents,
          buffered_bytes: batcher.bufferedBytes,
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

  /**
   * Stops accepting, flushes every batcher and waits for delivery until `deadlineMs` from now; then aborts retries
   * and in-flight writes so that what is left goes to the dead-letter store, and closes the sinks.
   */
  async drain(deadlineMs: number): Promise<DrainSummary> {
    this.stopAccepting()
    const idle = Promise.all(this.lanes.map((lane) => lane.batcher.close()))
    let timer: NodeJS.Timeout | undefined
    const timedOut = await Promise.race([
      idle.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), deadlineMs)
      }),
    ])
    clearTimeout(timer)
    if (timedOut) {
      this.deadline.abort(new Error(`shutdown deadline reached (SHUTDOWN_TIMEOUT)`))
      await idle
    }
    await Promise.all(
      this.lanes.map(({ sink }) =>
        sink
          .close()
          .catch((err) =>
            this.options.logger.error({ sink: sink.name, err: errorMessage(err) }, 'close failed'),
          ),
      ),
    )
    let delivered = 0
    let deadLettered = 0
    let deadLetterFailed = 0
    for (const { stats } of this.lanes) {
      delivered += stats.delivered_events
      deadLettered += stats.dead_lettered_events
      deadLetterFailed += stats.dead_letter_failed_events
    }
    return {
      delivered,
      dead_lettered: deadLettered,
      dead_letter_failed: deadLetterFailed,
      timed_out: timedOut,
    }
  }
}
