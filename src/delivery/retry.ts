// withRetry: the one place that retries a batch. Exponential backoff with full jitter, a timeout per attempt and a
// total budget; the same batch (same names, same event ids) is re-sent on every attempt, narrowed to the events a
// partial write left pending.
import { errorMessage, isPermanent, PartialWriteError, type RejectedEvent } from '../errors.js'
import type { Batch, LogEvent } from '../event.js'
import type { Sink } from '../sinks/sink.js'
import { deadlineSignal, fullJitter, retryAfterOf, sleep, untilAborted } from './timing.js'

export interface RetryPolicy {
  /** Upper bound of the first delay; doubles per attempt up to maxBackoffMs. */
  readonly initialBackoffMs: number
  readonly maxBackoffMs: number
  /** Total time a batch may be retried for, counted from its first attempt. */
  readonly maxElapsedMs: number
  /** One attempt longer than this is aborted and counts as a transient failure. */
  readonly attemptTimeoutMs: number
  /** In [0, 1); tests pass a fixed one. */
  readonly random?: () => number
  /**
   * At the shutdown deadline, how long a write already under way may take to finish: its real outcome decides
   * between delivered and dead-lettered, so a batch that lands in that moment is not also dead-lettered.
   */
  readonly settleOnShutdownMs?: number
}

export type GiveUpReason = 'permanent' | 'budget-exhausted' | 'shutdown'

/** Why (part of) a batch was not delivered: what the dead-letter records say. */
export class DeliveryFailedError extends Error {
  constructor(
    readonly reason: GiveUpReason,
    readonly attempts: number,
    readonly lastError: unknown,
    /** Events still undelivered when retrying stopped: the whole batch, or what a partial write left pending. */
    readonly pending: readonly LogEvent[],
    /** Events the destination refused for good along the way, each with its own reason. */
    readonly rejected: readonly RejectedEvent[] = [],
  ) {
    super(`${reason} after ${attempts} attempt(s): ${errorMessage(lastError)}`)
    this.name = 'DeliveryFailedError'
  }
}

export class AttemptTimeoutError extends Error {
  constructor(ms: number) {
    super(`write attempt timed out after ${ms} ms (SINK_TIMEOUT)`)
    this.name = 'AttemptTimeoutError'
  }
}

export interface RetryHooks {
  onRetry?(error: unknown, attempt: number, delayMs: number): void
}

/** Every event of the batch was delivered, except `rejected`, which the destination refused for good. */
export interface RetryOutcome {
  readonly attempts: number
  readonly rejected: readonly RejectedEvent[]
}

export interface RetryingSink {
  readonly name: string
  /** Resolves once every event is delivered or rejected; rejects with DeliveryFailedError otherwise. */
  write(batch: Batch, options: { signal: AbortSignal }): Promise<RetryOutcome>
}

/** The same batch (same name) narrowed to the events a partial write left pending. */
function narrowed(batch: Batch, events: readonly LogEvent[]): Batch {
  return {
    name: batch.name,
    openedAt: batch.openedAt,
    events,
    bytes: events.reduce((sum, e) => sum + e.bytes, 0),
  }
}

export function withRetry(sink: Sink, policy: RetryPolicy, hooks: RetryHooks = {}): RetryingSink {
  const random = policy.random ?? Math.random
  return {
    name: sink.name,
    async write(batch, { signal }) {
      const startedAt = Date.now()
      const rejected: RejectedEvent[] = []
      let current = batch
      let lastError: unknown = signal.reason
      const giveUp = (reason: GiveUpReason, attempts: number, err: unknown) =>
        new DeliveryFailedError(reason, attempts, err, current.events, rejected)
      for (let attempt = 1; ; attempt++) {
        if (signal.aborted) throw giveUp('shutdown', attempt - 1, lastError)
        try {
          await attemptWrite(sink, current, signal, policy.attemptTimeoutMs, policy.settleOnShutdownMs ?? 500)
          return { attempts: attempt, rejected }
        } catch (err) {
          lastError = err
          if (err instanceof PartialWriteError) {
            rejected.push(...err.rejected)
            if (err.pending.length === 0) return { attempts: attempt, rejected }
            current = narrowed(current, err.pending)
            lastError = err.cause ?? err
          }
          if (signal.aborted) throw giveUp('shutdown', attempt, lastError)
          if (isPermanent(lastError)) throw giveUp('permanent', attempt, lastError)
          // A server that said when to come back (Retry-After on a 429 or 503) is not asked sooner.
          const delayMs = Math.max(
            fullJitter(attempt, policy.initialBackoffMs, policy.maxBackoffMs, random),
            retryAfterOf(lastError) ?? 0,
          )
          if (Date.now() - startedAt + delayMs >= policy.maxElapsedMs) {
            throw giveUp('budget-exhausted', attempt, lastError)
          }
          hooks.onRetry?.(lastError, attempt, delayMs)
          if (!(await sleep(delayMs, signal))) throw giveUp('shutdown', attempt, lastError)
        }
      }
    },
  }
}

/**
 * Runs one write with its own abort signal (aborted on timeout or shutdown) and stops waiting when that signal
 * aborts, even if the sink does not honour it: a hung sink cannot hold a batch past its deadline. At shutdown the
 * write may be past the point of no return (a rename, an upload's last byte): it gets `settleMs` to say how it
 * ended, and only a write that is still undecided then counts as not delivered.
 */
async function attemptWrite(
  sink: Sink,
  batch: Batch,
  outer: AbortSignal,
  timeoutMs: number,
  settleMs: number,
): Promise<void> {
  const attempt = deadlineSignal(timeoutMs, new AttemptTimeoutError(timeoutMs), outer)
  const write = sink.write(batch, { signal: attempt.signal })
  // An abandoned write may still fail later; that is already accounted for, so keep it from going unhandled.
  write.catch(() => {})
  try {
    await untilAborted(write, attempt.signal)
  } catch (err) {
    if (!outer.aborted) throw err
    const giveUp = new AbortController()
    const settled = await Promise.race([
      write.then(
        () => 'delivered' as const,
        () => 'failed' as const,
      ),
      sleep(settleMs, giveUp.signal).then(() => 'undecided' as const),
    ])
    giveUp.abort()
    if (settled === 'delivered') return
    throw err
  } finally {
    attempt.clear()
  }
}
