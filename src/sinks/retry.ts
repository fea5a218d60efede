// withRetry: the one place that sleeps or loops. Exponential backoff with full jitter, a timeout per attempt and a
// total budget; the same batch (same names, same event ids) is re-sent on every attempt.
import { errorMessage, isPermanent } from '../errors.js'
import type { Batch } from '../event.js'
import type { Sink } from './sink.js'

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
}

export type GiveUpReason = 'permanent' | 'budget-exhausted' | 'shutdown'

/** Why a batch was not delivered: what the dead-letter record says. */
export class DeliveryFailedError extends Error {
  constructor(
    readonly reason: GiveUpReason,
    readonly attempts: number,
    readonly lastError: unknown,
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

export interface RetryingSink {
  readonly name: string
  /** Resolves with the number of attempts once delivered; rejects with DeliveryFailedError otherwise. */
  write(batch: Batch, options: { signal: AbortSignal }): Promise<number>
}

export function withRetry(sink: Sink, policy: RetryPolicy, hooks: RetryHooks = {}): RetryingSink {
  const random = policy.random ?? Math.random
  return {
    name: sink.name,
    async write(batch, { signal }) {
      const startedAt = Date.now()
      let lastError: unknown = signal.reason
      for (let attempt = 1; ; attempt++) {
        if (signal.aborted) throw new DeliveryFailedError('shutdown', attempt - 1, lastError)
        try {
          await attemptWrite(sink, batch, signal, policy.attemptTimeoutMs)
          return attempt
        } catch (err) {
          lastError = err
          if (signal.aborted) throw new DeliveryFailedError('shutdown', attempt, err)
          if (isPermanent(err)) throw new DeliveryFailedError('permanent', attempt, err)
          const ceiling = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (attempt - 1))
          const delayMs = Math.floor(random() * ceiling)
          if (Date.now() - startedAt + delayMs >= policy.maxElapsedMs) {
            throw new DeliveryFailedError('budget-exhausted', attempt, err)
          }
          hooks.onRetry?.(err, attempt, delayMs)
          if (!(await sleep(delayMs, signal))) throw new DeliveryFailedError('shutdown', attempt, err)
        }
      }
    },
  }
}

/**
 * Runs one write with its own abort signal (aborted on timeout or shutdown) and stops waiting when that signal
 * aborts, even if the sink does not honour it: a hung sink cannot hold a batch past its deadline.
 */
async function attemptWrite(sink: Sink, batch: Batch, outer: AbortSignal, timeoutMs: number): Promise<void> {
  const controller = new AbortController()
  const onOuterAbort = () => controller.abort(outer.reason)
  outer.addEventListener('abort', onOuterAbort, { once: true })
  const timer = setTimeout(() => controller.abort(new AttemptTimeoutError(timeoutMs)), timeoutMs)
  try {
    const aborted = new Promise<never>((_, reject) => {
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true })
    })
    const write = sink.write(batch, { signal: controller.signal })
    // An abandoned write may still fail later; that is already accounted for, so keep it from going unhandled.
    write.catch(() => {})
    await Promise.race([write, aborted])
  } finally {
    clearTimeout(timer)
    outer.removeEventListener('abort', onOuterAbort)
  }
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. Uses the global timer so fake timers drive it. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false)
    const onAbort = () => {
      clearTimeout(timer)
      resolve(false)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve(true)
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
