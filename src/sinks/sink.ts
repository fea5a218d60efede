// The sink contract: what every destination implements, and what the pipeline may assume of it.
import type { Writable } from 'node:stream'
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import type { Batch } from '../event.js'

export interface WriteOptions {
  /** Aborted when the attempt times out or shutdown's deadline passes; a sink stops as soon as it can. */
  readonly signal: AbortSignal
}

/**
 * A destination for batches. A sink never sleeps or retries: `write` delivers the whole batch or throws, a
 * PermanentError when retrying cannot help, any other error when it can, or a PartialWriteError when only some
 * events failed (the retry then re-sends just the pending ones, under the same batch name). Retries re-send the same batch, so a
 * write must be idempotent per `batch.name` (the file sink renames onto the same path; a cloud sink uses
 * preconditions or insertIds) or it must not have written anything when it throws.
 */
export interface Sink {
  readonly name: string
  /** A transient problem met at start-up (the destination was unreachable): /health shows it until a write works. */
  readonly startupError?: Error
  write(batch: Batch, options: WriteOptions): Promise<void>
  /**
   * For a sink that holds work past `write` (the bigquery load mode's staged objects): hand it on now, and resolve
   * when that is finished.
   */
  flush?(): Promise<void>
  /** Counters of the sink's own, shown with its entry in /health. */
  stats?(): Record<string, number>
  close(): Promise<void>
}

export interface SinkContext {
  readonly config: Config
  readonly logger: Logger
  /** Where the stdout sink writes; tests pass their own stream. */
  readonly stdout: Writable
}

/** Builds a sink and checks its destination: a bad setting throws here, at start-up, never later. */
export type SinkFactory = (context: SinkContext) => Promise<Sink>
