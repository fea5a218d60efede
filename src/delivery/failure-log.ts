// Failure logging for a sink in trouble: the first failed attempt is logged at once, later ones are counted and
// summed up in one line per interval, and the first success after them says the sink recovered. An outage of
// minutes with many batches retrying is a handful of lines, each with the last error (stack and cause kept).
import type { Logger } from 'pino'

/** At most one "still failing" line per sink this often. */
export const FAILURE_SUMMARY_INTERVAL_MS = 30_000

export class FailureLog {
  /** Failed attempts since the sink last delivered. */
  private total = 0
  /** Failed attempts since the last line. */
  private unlogged = 0
  private lastLoggedAt = Number.NEGATIVE_INFINITY

  constructor(
    private readonly logger: Logger,
    private readonly sink: string,
    private readonly intervalMs = FAILURE_SUMMARY_INTERVAL_MS,
  ) {}

  failed(err: unknown, attempt: number, delayMs: number): void {
    this.total++
    this.unlogged++
    const now = performance.now()
    if (now - this.lastLoggedAt < this.intervalMs) return
    const first = this.total === 1
    this.logger.warn(
      {
        sink: this.sink,
        err,
        attempt,
        delay_ms: delayMs,
        failed_attempts: this.unlogged,
        failing_since_ms: 0,
      },
      first
        ? 'write failed; retrying'
        : `still failing: ${this.unlogged} failed attempts since the last line`,
    )
    this.unlogged = 0
    this.lastLoggedAt = now
  }

  recovered(): void {
    if (this.total === 0) return
    this.logger.info(
      { sink: this.sink, failed_attempts: this.total },
      'delivering again after failed attempts',
    )
    this.total = 0
    this.unlogged = 0
    this.lastLoggedAt = Number.NEGATIVE_INFINITY
  }
}
