// The one place for waiting: abortable sleeps, time-outs, full-jitter backoff and a server's Retry-After. Every
// sink, the retry layer, the drain and load mode's job loop use these rather than timers of their own. Timers are
// the global ones, so fake timers drive them in tests.

/** Resolves true after `ms`, or false as soon as `signal` aborts (at once if it already has). */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false)
    const onAbort = () => {
      clearTimeout(timer)
      resolve(false)
    }
    const timer = setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort)
        resolve(true)
      },
      Math.max(0, ms),
    )
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Waits for `promise` at most `ms`; true if the time ran out first. Never rejects. */
export async function timedOut(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const cancel = new AbortController()
  const finished = promise.then(
    () => false,
    () => false,
  )
  const result = await Promise.race([finished, sleep(ms, cancel.signal).then((slept) => slept)])
  cancel.abort()
  return result
}

/**
 * A signal that aborts with `reason` once `ms` have passed, or with `parent`'s reason as soon as `parent` aborts.
 * `clear()` lets go of the timer and of `parent` once the work it bounds is over.
 */
export function deadlineSignal(
  ms: number,
  reason: unknown,
  parent?: AbortSignal,
): { readonly signal: AbortSignal; clear(): void } {
  const controller = new AbortController()
  const onParent = () => controller.abort(parent?.reason)
  if (parent?.aborted) onParent()
  else parent?.addEventListener('abort', onParent, { once: true })
  const timer = setTimeout(() => controller.abort(reason), Math.max(0, ms))
  return {
    signal: controller.signal,
    clear() {
      clearTimeout(timer)
      parent?.removeEventListener('abort', onParent)
    },
  }
}

/** `promise`, or a rejection with `signal`'s reason as soon as it aborts (the work itself is not stopped). */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}

/** Waits for `promise` until `signal` aborts; true if the signal came first. Never rejects. */
export function abortedFirst(promise: Promise<unknown>, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(true)
  return new Promise((resolve) => {
    const onAbort = () => resolve(true)
    const settled = () => {
      signal.removeEventListener('abort', onAbort)
      resolve(false)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(settled, settled)
  })
}

/** `promise`, or a rejection with `message` once `ms` have passed. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  const cancel = new AbortController()
  try {
    return await Promise.race([
      promise,
      sleep(ms, cancel.signal).then((slept) => {
        if (slept) throw new Error(message)
        return promise
      }),
    ])
  } finally {
    cancel.abort()
  }
}

/** Exponential backoff with full jitter: a random delay below initial × 2^(attempt-1), capped at `maxMs`. */
export function fullJitter(
  attempt: number,
  initialMs: number,
  maxMs: number,
  random: () => number = Math.random,
) {
  const ceiling = Math.min(maxMs, initialMs * 2 ** (attempt - 1))
  return Math.floor(random() * ceiling)
}

/**
 * How long a server asked to be left alone (a Retry-After on a 429 or 503), in ms, when the error carries it: as
 * `retryAfterMs`, or in the headers of the response a Google client attached (a plain object or a Headers).
 * Seconds or an HTTP date are both understood.
 */
export function retryAfterOf(err: unknown, now = Date.now()): number | undefined {
  const e = err as { retryAfterMs?: unknown; response?: { headers?: unknown } } | undefined
  if (typeof e?.retryAfterMs === 'number') return e.retryAfterMs
  const headers = e?.response?.headers as
    | { get?: (name: string) => string | null; [name: string]: unknown }
    | undefined
  const value = typeof headers?.get === 'function' ? headers.get('retry-after') : headers?.['retry-after']
  if (typeof value !== 'string' || value.trim() === '') return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}
