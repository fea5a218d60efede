// The sink contract: what every destination implements, how its folder describes it to the rest of sidelog (its
// settings, its batching, its cross-checks, its factory), and what the pipeline may assume of it.
import type { Writable } from 'node:stream'
import type { TProperties } from '@sinclair/typebox'
import type { Logger } from 'pino'
import type { Batch } from '../event.js'
import type { GoogleAccess } from '../google/settings.js'
import type { SettingsOf } from '../settings/compose.js'

export interface WriteOptions {
  /** Aborted when the attempt times out or shutdown's deadline passes; a sink stops as soon as it can. */
  readonly signal: AbortSignal
}

/**
 * A destination for batches. A sink never sleeps or retries: `write` delivers the whole batch or throws, a
 * PermanentError when retrying cannot help, any other error when it can, or a PartialWriteError when only some
 * events failed (the retry then re-sends just the pending ones, under the same batch name). Retries re-send the same
 * batch, so a write must be idempotent per `batch.name` (the file sink renames onto the same path; a cloud sink uses
 * preconditions or insertIds) or it must not have written anything when it throws.
 *
 * A batch's bytes may live in memory that is reused once the batch is done (slabs.ts), and an attempt that timed out
 * may still be running then: take the JSONL (`batchJsonl`) before the first await, or read `batch.events` (which keeps
 * the memory they point into). A run read too late throws RunMemoryReusedError rather than yield other bytes.
 */
export interface Sink {
  readonly name: string
  write(batch: Batch, options: WriteOptions): Promise<void>
  /**
   * Looks at the destination (the bucket, the table) once at start-up. sidelog runs it under SINK_TIMEOUT and aborts
   * `signal` when that is over. A ConfigError or PermanentError (no such bucket, no permission) stops start-up with
   * its message; any other error (the destination did not answer) starts the sink degraded in /health until a
   * write works.
   */
  check?(signal: AbortSignal): Promise<void>
  /**
   * For a sink that holds work past `write` (the bigquery load mode's staged objects): hand it on now, and resolve
   * when that is finished.
   */
  flush?(): Promise<void>
  /** Counters of the sink's own, shown with its entry in /health. */
  stats?(): Record<string, number>
  /**
   * Lets go of the destination at shutdown. Work the sink still holds is finished or handed on (load mode's last
   * job) before `signal` aborts, at the end of SHUTDOWN_TIMEOUT; after that the pipeline no longer waits.
   */
  close(signal: AbortSignal): Promise<void>
}

/** A sink as the pipeline runs it: what its start-up check found, if the destination did not answer. */
export interface StartedSink extends Sink {
  readonly startupError?: Error
}

/** The settings every sink shares, decoded once: where local files go, how long a write may take, Google access. */
export interface SharedSettings {
  /** DATA_DIR: the file sink's root, and where a sink keeps a journal of its own. */
  readonly dataDir: string
  /** DEAD_LETTER_DIR: where a sink records work it gives up on outside a batch (a failed load job). */
  readonly deadLetterDir: string
  /** SINK_TIMEOUT: one write attempt, or one request of a sink's own, in milliseconds. */
  readonly attemptTimeoutMs: number
  /** RETRY_*: for a sink that retries work of its own past `write` (load jobs), in milliseconds. */
  readonly retry: {
    readonly initialBackoffMs: number
    readonly maxBackoffMs: number
    readonly maxElapsedMs: number
  }
  readonly google: GoogleAccess
}

export type { SettingsOf }

export interface SinkContext<S> {
  /** The sink's own settings, and nothing else's. */
  readonly settings: S
  readonly shared: SharedSettings
  readonly logger: Logger
  /** Where the stdout sink writes; tests pass their own stream. */
  readonly stdout: Writable
}

/** A sink's built-in batch size, before the user's settings and the buffer's bounds (pipeline/batching.ts). */
export interface BatchDefaults {
  readonly events: number
  readonly bytes: number
  readonly seconds: number
}

/**
 * What a sink's folder exports (its index.ts), and all the rest of sidelog knows of it: one line in sinks/index.ts
 * registers it, and config.ts, --help, the README's settings table, the batchers and the contract test take it from
 * there.
 */
export interface SinkModule<P extends TProperties = TProperties> {
  /** Its name in SINKS, in /health, in metrics and in the dead-letter layout. */
  readonly kind: string
  /** One sentence: where it delivers and how a retry lands once. */
  readonly summary: string
  /** Prefix of its batching settings (<PREFIX>_BATCH_SIZE, _BATCH_BYTES, _FLUSH_INTERVAL), which `settings` holds. */
  readonly batchPrefix: string
  /** Its own settings: each with its default, description and what it accepts (settings/fields.ts). */
  readonly settings: P
  /** Its built-in batch size, which may depend on its own settings (load mode batches like gcs). */
  batching(settings: SettingsOf<P>): BatchDefaults
  /** Relations with other settings, checked at start-up only when SINKS names it. */
  check?(settings: SettingsOf<P>, shared: SharedSettings): string[]
  /** Builds the sink (its heavy modules loaded only now); a setting that cannot work throws a ConfigError. */
  create(context: SinkContext<SettingsOf<P>>): Promise<Sink>
}

/** Keeps a sink module's own setting types (for its factory) while checking it against the contract. */
export function defineSink<P extends TProperties>(module: SinkModule<P>): SinkModule<P> {
  return module
}
