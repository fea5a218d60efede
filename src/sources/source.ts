// The source contract: how an input is built from its settings and wired to the server and the pipeline.
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import type { Enricher } from '../pipeline/enrich.js'
import type { Pipeline } from '../pipeline/index.js'

export interface SourceContext {
  readonly config: Config
  readonly logger: Logger
  readonly server: FastifyInstance
  readonly pipeline: Pipeline
  readonly enrich: Enricher
}

/** A running input. Routes are registered by `create`; work that runs on its own starts in `start`. */
export interface Source {
  readonly kind: string
  /** Called once the server listens. */
  start?(): void
  /** Stops taking input and waits for the step in flight (an accept and its checkpoint) to finish. */
  close?(): Promise<void>
  /** The source's counters, shown in /health under `sources.<kind>`. */
  stats?(): Record<string, unknown>
}

export interface SourceModule {
  readonly kind: string
  /** Whether the configuration turns this source on. */
  enabled(config: Config): boolean
  /** Builds the source; a setting that cannot be used throws a ConfigError here, at start-up. */
  create(context: SourceContext): Promise<Source>
}
