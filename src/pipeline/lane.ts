// One sink's lane: its bounded batcher, the retry layer around the sink, the dead-letter store for what cannot be
// delivered, and the counters /health and /metrics read. A lane knows nothing of where its entries come from (memory
// or the spool); an input offers them, and may journal the lane's batches (see LaneJournal).
import type { Logger } from 'pino'
import type { DeadLetterStore } from '../delivery/dead-letter.js'
import { FailureLog } from '../delivery/failure-log.js'
import { DeliveryFailedError, type GiveUpReason, type RetryPolicy, withRetry } from '../delivery/retry.js'
import { fullJitter, sleep } from '../delivery/timing.js'
import { errorMessage, type RejectedEvent } from '../errors.js'
import { type Batch, countOf } from '../event.js'
import type { StartedSink } from '../sinks/sink.js'
import { Batcher, type BatcherOptions } from './batcher.js'

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
  /**
   * Acknowledged entries this sink could not read back: with a spool, because their records were damaged; without,
   * because their memory was reused under them (a bug, logged as fatal).
   */
  lost_events: number
  buffered_events: number
  buffered_bytes: number
  /** False from a failed attempt until the next successful write. */
  healthy: boolean
  last_error: { message: string; at: string } | null
  last_delivery_at: string | null
}

export type LaneStats = Omit<SinkStats, 'buffered_events' | 'buffered_bytes'>

/** Where an input records a lane's batches: sealed before the first write, done once delivered or dead-lettered. */
export interface LaneJournal {
  sealed(batch: Batch): Promise<void>
  done(batch: Batch): Promise<void>
}

export interface LaneOptions {
  readonly batching: Omit<BatcherOptions, 'deliver' | 'onRoom'>
  readonly retry: RetryPolicy
  readonly deadLetter: DeadLetterStore
  readonly logger: Logger
  readonly observer?: PipelineObserver
  /** Aborted at the shutdown deadline: retries stop and what is left goes to the dead-letter store. */
  readonly deadline: AbortSignal
  readonly journal?: LaneJournal
  /** A batch finished and stopped counting against the bounds: there is room again. */
  readonly onRoom?: () => void
}

export class Lane {
  readonly batcher: Batcher
  readonly stats: LaneStats
  private readonly retrying: ReturnType<typeof withRetry>
  /** One line when the sink starts failing, one per interval with a count, one when it recovers. */
  private readonly failures: FailureLog
  /** Entries of batches whose seal could not be journaled by the shutdown deadline: they stay in the spool. */
  keptUnsealed = 0

  constructor(
    readonly sink: StartedSink,
    private readonly options: LaneOptions,
  ) {
    this.stats = {
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
    this.failures = new FailureLog(options.logger, sink.name)
    this.retrying = withRetry(sink, options.retry, {
      onRetry: (err, attempt, delayMs) => {
        this.stats.retries++
        this.noteError(err)
        this.failures.failed(err, attempt, delayMs)
      },
    })
    this.batcher = new Batcher({
      ...options.batching,
      deliver: (batch) => this.run(batch),
      ...(options.onRoom ? { onRoom: options.onRoom } : {}),
    })
  }

  get name(): string {
    return this.sink.name
  }

  noteError(err: unknown): void {
    this.stats.healthy = false
    this.stats.last_error = { message: errorMessage(err), at: new Date().toISOString() }
  }

  /** Journaled before the first write: after a crash the batch is re-sent under its name, and meets itself. */
  private async run(batch: Batch): Promise<void> {
    const { journal, logger } = this.options
    if (journal && !(await this.seal(journal, batch))) {
      this.keptUnsealed += countOf(batch)
      return
    }
    await this.deliver(batch)
    // Not synced, and harmless to lose: a batch re-sent under its name lands once.
    await journal
      ?.done(batch)
      .catch((err: unknown) =>
        logger.error({ sink: this.name, batch: batch.name, err }, 'spool: batch not journaled as done'),
      )
  }

  /**
   * Journals the batch as sealed, again and again (with the retry backoff) while the journal cannot be written: a
   * batch sent without its seal could, after a crash, be sent twice or hide the entries of another. False if the
   * shutdown deadline comes first: its entries then stay in the spool for the next start.
   */
  private async seal(journal: LaneJournal, batch: Batch): Promise<boolean> {
    const { retry, deadline, logger } = this.options
    for (let attempt = 1; ; attempt++) {
      try {
        await journal.sealed(batch)
        return true
      } catch (err) {
        this.noteError(err)
        if (attempt === 1) {
          logger.error(
            { sink: this.name, batch: batch.name, err },
            'spool: batch not journaled as sealed; it is not sent until it is',
          )
        }
        if (deadline.aborted) return false
        await sleep(fullJitter(attempt, retry.initialBackoffMs, retry.maxBackoffMs, retry.random), deadline)
      }
    }
  }

  /** One batch through the retry layer; what is not delivered goes to the dead-letter store. Never rejects. */
  private async deliver(batch: Batch): Promise<void> {
    const { stats } = this
    let undelivered: RejectedEvent[]
    let attempts: number
    let classes: Partial<Record<DeadLetterClass, number>>
    try {
      const outcome = await this.retrying.write(batch, { signal: this.options.deadline })
      undelivered = [...outcome.rejected]
      attempts = outcome.attempts
      classes = { rejected: outcome.rejected.length }
      stats.delivered_batches++
      this.failures.recovered()
      stats.healthy = true
      stats.last_delivery_at = new Date().toISOString()
    } catch (err) {
      let failure: DeliveryFailedError
      try {
        failure =
          err instanceof DeliveryFailedError
            ? err
            : new DeliveryFailedError('permanent', 0, err, batch.events)
      } catch (unmade) {
        // The batch's events cannot be made (RunMemoryReusedError: a bug), so there is nothing to dead-letter. Say so
        // loudly and count them, rather than leave them uncounted.
        const count = countOf(batch)
        stats.lost_events += count
        this.noteError(unmade)
        this.options.logger.fatal(
          { sink: this.name, batch: batch.name, events: count, err: unmade },
          'entries lost: their bytes could not be read back to deliver or dead-letter them',
        )
        return
      }
      if (failure.reason !== 'shutdown') this.noteError(failure.lastError)
      undelivered = [
        ...failure.rejected,
        ...failure.pending.map((event) => ({ event, reason: failure.message })),
      ]
      attempts = failure.attempts
      classes = { rejected: failure.rejected.length, [failure.reason]: failure.pending.length }
    }
    const delivered = countOf(batch) - undelivered.length
    stats.delivered_events += delivered
    if (this.options.observer?.onDelivered) {
      let bytes = batch.bytes
      for (const { event } of undelivered) bytes -= event.bytes
      this.options.observer.onDelivered(this.name, delivered, bytes)
    }
    if (undelivered.length > 0) await this.deadLetter(batch, undelivered, attempts, classes)
  }

  /** Writes entries to the dead-letter store, counted; if the store fails, they go on a fatal log line. */
  async deadLetter(
    batch: Batch,
    items: readonly RejectedEvent[],
    attempts: number,
    classes: Partial<Record<DeadLetterClass, number>>,
  ): Promise<void> {
    const { logger, deadLetter, observer } = this.options
    const reasons = [...new Set(items.map((item) => item.reason))]
    const log = {
      sink: this.name,
      batch: batch.name,
      events: items.length,
      attempts,
      reasons: reasons.slice(0, 5),
    }
    try {
      const path = await deadLetter.write(batch, items, { sink: this.name, attempts })
      this.stats.dead_lettered_events += items.length
      observer?.onDeadLettered?.(this.name, classes)
      logger.error({ ...log, path }, 'entries not delivered; dead-lettered')
    } catch (err) {
      this.stats.dead_letter_failed_events += items.length
      logger.fatal(
        { ...log, err, entries: items.map((item) => item.event.line) },
        'entries not delivered and the dead-letter store failed; they are in this log line',
      )
    }
  }

  /**
   * At the deadline: the batches no write has started, taken back. With `keep`, they stay with the input (the spool
   * holds them for the next start) and their count is returned; otherwise they are dead-lettered in one write.
   */
  async abandon(keep: boolean): Promise<number> {
    const batches = this.batcher.abandonQueued()
    const events = batches.flatMap((batch) => batch.events)
    if (events.length === 0 || keep) return events.length
    const first = batches[0] as Batch
    const batch: Batch = {
      name: `${first.name}-shutdown`,
      openedAt: first.openedAt,
      events,
      bytes: events.reduce((sum, e) => sum + e.bytes, 0),
    }
    const reason = 'not delivered before the shutdown deadline (SHUTDOWN_TIMEOUT)'
    await this.deadLetter(
      batch,
      events.map((event) => ({ event, reason })),
      0,
      { shutdown: events.length },
    )
    return 0
  }

  /**
   * The last resort before a hard exit: every entry this lane still holds, written to the dead-letter store
   * synchronously, or, if that fails, on a fatal log line. Returns how many.
   */
  deadLetterNow(): number {
    const { logger, deadLetter, observer } = this.options
    const events = this.batcher.unfinished().flatMap((batch) => batch.events)
    if (events.length === 0) return 0
    const reason = 'still held when the process had to exit (SHUTDOWN_TIMEOUT overran)'
    const items = events.map((event) => ({ event, reason }))
    const batch: Batch = { name: `last-resort-${process.pid}`, openedAt: new Date(), events, bytes: 0 }
    try {
      const path = deadLetter.writeNow(batch, items, { sink: this.name, attempts: 0 })
      this.stats.dead_lettered_events += events.length
      observer?.onDeadLettered?.(this.name, { shutdown: events.length })
      logger.error({ sink: this.name, events: events.length, path }, 'last resort: dead-lettered')
    } catch (err) {
      this.stats.dead_letter_failed_events += events.length
      logger.fatal(
        { sink: this.name, err, entries: events.map((event) => event.line) },
        'last resort: the dead-letter store failed; the entries are in this log line',
      )
    }
    return events.length
  }

  snapshot(): SinkStats & Record<string, unknown> {
    return {
      ...this.stats,
      ...this.sink.stats?.(),
      buffered_events: this.batcher.bufferedEvents,
      buffered_bytes: this.batcher.bufferedBytes,
    }
  }
}
