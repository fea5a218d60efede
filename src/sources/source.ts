// The source contract: how an input's folder describes it (its settings, its cross-checks, when it is on) and how
// it is built and wired to the server and the pipeline.
import type { TProperties } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Enricher } from '../pipeline/enrich.js'
import type { Pipeline } from '../pipeline/index.js'
import type { SettingsOf } from '../settings/compose.js'
import type { Spool } from '../spool/index.js'

/** The settings every source may read besides its own, decoded. */
export interface SourceShared {
  /** DATA_DIR and SPOOL_DIR ('' without a spool): where a source keeps its checkpoints. */
  readonly dataDir: string
  readonly spoolDir: string
  /** Whether a checkpoint is fsynced (with a spool, unless SPOOL_FSYNC=never). */
  readonly durable: boolean
  readonly maxBodyBytes: number
  readonly bufferMaxEvents: number
  readonly bufferMaxBytes: number
  /** GOOGLE_CLOUD_PROJECT, else BQ_PROJECT: the project of Cloud Logging's trace field. */
  readonly project: string
}

export interface SourceContext<S> {
  /** The source's own settings, and nothing else's. */
  readonly settings: S
  readonly shared: SourceShared
  readonly logger: Logger
  readonly server: FastifyInstance
  readonly pipeline: Pipeline
  readonly enrich: Enricher
  /** The disk spool the pipeline writes to (SPOOL_DIR), for a source that checkpoints against it. */
  readonly spool?: Spool
}

/** A running input. Routes are registered by `create`; work that runs on its own starts in `start`. */
export interface Source {
  readonly kind: string
  /** Called once the server listens. */
  start?(): void
  /**
   * Stops taking input and waits for the step in flight (an accept and its checkpoint) to finish, at most until
   * `signal` aborts (the shutdown budget is over).
   */
  close?(signal: AbortSignal): Promise<void>
  /** The source's counters, shown in /health under `sources.<kind>`. */
  stats?(): Record<string, unknown>
}

/**
 * What a source's folder exports (its index.ts): one line in sources/index.ts registers it, and config.ts, --help
 * and the README's settings table take it from there.
 */
export interface SourceModule<P extends TProperties = TProperties> {
  readonly kind: string
  /** One sentence: what it takes in. */
  readonly summary: string
  /** Its own settings: each with its default, description and what it accepts (settings/fields.ts). */
  readonly settings: P
  /** Whether its settings turn it on. */
  enabled(settings: SettingsOf<P>): boolean
  /** Relations with other settings, checked at start-up when it is on. */
  check?(settings: SettingsOf<P>, shared: { readonly maxEntryBytes: number }): string[]
  /** Builds the source (its modules loaded only now); a setting that cannot be used throws a ConfigError. */
  create(context: SourceContext<SettingsOf<P>>): Promise<Source>
}

/** Keeps a source module's own setting types (for its factory) while checking it against the contract. */
export function defineSource<P extends TProperties>(module: SourceModule<P>): SourceModule<P> {
  return module
}
