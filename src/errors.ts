// Error types with stable `code`s: sinks classify, the retry layer decides, the HTTP source maps to status codes.
import type { LogEvent } from './event.js'

/** A failure that retrying cannot fix (bad request, permission denied): the batch goes to the dead-letter store. */
export class PermanentError extends Error {
  readonly code = 'PERMANENT'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'PermanentError'
  }
}

/**
 * A request's run was read after the slab it lives in was reused (see slabs.ts): a hold was let go too early, a bug.
 * Its bytes are another request's now, so neither a retry nor a dead letter can carry them: permanent, and the lane
 * counts its entries as lost, with a fatal log line.
 */
export class RunMemoryReusedError extends PermanentError {
  constructor() {
    super("a request's run was read after its memory was reused: a hold was let go too early")
    this.name = 'RunMemoryReusedError'
  }
}

export function isPermanent(err: unknown): boolean {
  return err instanceof PermanentError
}

/** An event a destination refused for good, with its reason (for the dead-letter record). */
export interface RejectedEvent {
  readonly event: LogEvent
  readonly reason: string
}

/**
 * Part of a batch was not written. `rejected` events never will be (they are dead-lettered, each with its reason);
 * `pending` events may be on another attempt, which re-sends exactly them, with the same ids; every other event of
 * the batch was delivered. `cause` says whether retrying `pending` can help (transient) or not (PermanentError).
 */
export class PartialWriteError extends Error {
  constructor(
    readonly rejected: readonly RejectedEvent[],
    readonly pending: readonly LogEvent[],
    override readonly cause?: unknown,
  ) {
    super(
      `${rejected.length} event(s) rejected, ${pending.length} pending${cause ? `: ${errorMessage(cause)}` : ''}`,
    )
    this.name = 'PartialWriteError'
  }
}

/**
 * The buffer of at least one sink (BUFFER_FULL), or the disk spool (SPOOL_FULL), has no room for the request: the
 * client should retry after `retryAfterMs`.
 */
export class QueueFullError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number,
    readonly code: 'BUFFER_FULL' | 'SPOOL_FULL' | 'INFLIGHT_FULL' = 'BUFFER_FULL',
  ) {
    // Thousands a second under overload, and a stack says nothing about a full buffer: capturing it cost 5% of the CPU.
    const stackTraceLimit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message)
    Error.stackTraceLimit = stackTraceLimit
    this.name = 'QueueFullError'
  }
}

/** sidelog is draining for shutdown and takes no new entries. */
export class ShuttingDownError extends Error {
  readonly code = 'DRAINING'
  constructor() {
    super('sidelog is shutting down and accepts no new entries; send them to the next instance')
    this.name = 'ShuttingDownError'
  }
}

/** Input the client must fix: carries the HTTP status and, where known, which NDJSON line or array index. */
export class InputError extends Error {
  constructor(
    readonly statusCode: 400 | 413 | 415 | 422,
    readonly code: string,
    message: string,
    readonly where: { line?: number; index?: number; position?: number } = {},
  ) {
    super(message)
    this.name = 'InputError'
  }
}

export function bodyTooLarge(limit: number): InputError {
  return new InputError(
    413,
    'BODY_TOO_LARGE',
    `request body is over ${limit} bytes (MAX_BODY_BYTES, measured after gzip decompression): split it`,
  )
}

/** A setting that cannot be used: stops the process at start-up, naming the setting and what it accepts. */
export class ConfigError extends Error {
  readonly code = 'CONFIG'
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name
  // Some clients reject with plain objects (the Cloud Storage resumable uploader: { code, message, errors }).
  const message = (err as { message?: unknown } | null | undefined)?.message
  if (typeof message === 'string' && message !== '') return message
  return String(err)
}

/** The spool could not be written: the entries are in memory and will be delivered, but were not made durable. */
export class SpoolWriteError extends Error {
  readonly code = 'SPOOL_WRITE_FAILED'
}
