// Builds and wires sinks → batchers → pipeline → server. Starts downstream first and stops upstream first.
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { hostname } from 'node:os'
import type { Writable } from 'node:stream'
import { getHeapStatistics } from 'node:v8'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { type Config, heapProblem } from './config.js'
import { ConfigError } from './errors.js'
import { createEnricher } from './pipeline/enrich.js'
import { type DrainSummary, Pipeline } from './pipeline/index.js'
import { createServer } from './server.js'
import { createDeadLetterStore } from './sinks/dead-letter.js'
import { sinkFactories } from './sinks/index.js'
import type { Sink } from './sinks/sink.js'
import { registerHttpSource } from './sources/http.js'
import { derivedIdsInSpool, IdempotencyStore } from './sources/idempotency.js'
import { Spool } from './spool/index.js'

/** Retry-After for a 429: the buffer frees as batches are written, usually within a second. */
const RETRY_AFTER_MS = 1000
/** Part of SHUTDOWN_TIMEOUT kept back for writing undelivered batches to the dead-letter store. */
const DEAD_LETTER_RESERVE_MS = 1000

export interface AppOptions {
  readonly logger: Logger
  readonly stdout?: Writable
  /** Names batches and objects; unique per process unless a test fixes it. */
  readonly instanceId?: string
  /** V8's heap limit; the real one unless a test gives another. */
  readonly heapLimitBytes?: number
}

export interface App {
  readonly server: FastifyInstance
  readonly pipeline: Pipeline
  readonly instanceId: string
  /** Listens on SIDELOG_HOST:SIDELOG_PORT; resolves with the bound address. */
  start(): Promise<AddressInfo>
  /** Stops accepting, delivers within SHUTDOWN_TIMEOUT, dead-letters the rest, closes sinks. */
  close(): Promise<DrainSummary>
}

export async function createApp(config: Config, options: AppOptions): Promise<App> {
  const { logger } = options
  const heap = heapProblem(config, options.heapLimitBytes ?? getHeapStatistics().heap_size_limit)
  if (heap) throw new ConfigError(heap)
  const instanceId = options.instanceId ?? randomBytes(6).toString('hex')
  const startedAt = Date.now()

  const sinks: Sink[] = []
  for (const kind of config.SINKS) {
    sinks.push(await sinkFactories[kind]({ config, logger, stdout: options.stdout ?? process.stdout }))
  }

  const spool = config.SPOOL_DIR
    ? await Spool.open({
        dir: config.SPOOL_DIR,
        fsync: config.SPOOL_FSYNC,
        maxBytes: config.SPOOL_MAX_BYTES,
        maxEntryBytes: config.MAX_ENTRY_BYTES,
        sinks: sinks.map((sink) => sink.name),
        logger,
      })
    : undefined

  const pipeline = new Pipeline({
    sinks,
    ...(spool ? { spool } : {}),
    batching: {
      instanceId,
      maxBatchEvents: config.BATCH_SIZE,
      maxBatchBytes: config.BATCH_BYTES,
      flushIntervalMs: config.FLUSH_INTERVAL * 1000,
      maxBufferedEvents: config.BUFFER_MAX_EVENTS,
      maxBufferedBytes: config.BUFFER_MAX_BYTES,
      concurrency: config.SINK_CONCURRENCY,
    },
    retry: {
      initialBackoffMs: config.RETRY_INITIAL_BACKOFF * 1000,
      maxBackoffMs: config.RETRY_MAX_BACKOFF * 1000,
      maxElapsedMs: config.RETRY_MAX_ELAPSED * 1000,
      attemptTimeoutMs: config.SINK_TIMEOUT * 1000,
    },
    deadLetter: createDeadLetterStore(config.DEAD_LETTER_DIR),
    logger,
    retryAfterMs: RETRY_AFTER_MS,
  })
  const idempotency = await IdempotencyStore.open({
    maxKeys: config.IDEMPOTENCY_MAX_KEYS,
    windowMs: config.IDEMPOTENCY_WINDOW * 1000,
    ...(config.SPOOL_DIR ? { dir: config.SPOOL_DIR, fsync: config.SPOOL_FSYNC } : {}),
    logger,
  })
  // Keyed entries the last run took without journaling their key (it died in between) are known by their ids.
  if (spool) idempotency.adoptSpooled(await derivedIdsInSpool(spool))
  // Before listening: what the last run accepted and did not finish goes out first.
  if (spool) pipeline.replay(await spool.recover())

  const server = createServer({
    logger,
    bodyLimit: config.MAX_BODY_BYTES,
    health: () => {
      const sinkStats = pipeline.stats()
      const failing = Object.values(sinkStats).some((s) => !s.healthy)
      return {
        status: pipeline.isAccepting ? (failing ? 'degraded' : 'healthy') : 'draining',
        buffer_size: pipeline.bufferedEvents,
        lines_processed: pipeline.acceptedEvents,
        uptime_s: Math.round((Date.now() - startedAt) / 1000),
        instance: instanceId,
        sinks: sinkStats,
        idempotency: idempotency.stats(),
      }
    },
  })
  registerHttpSource(server, {
    pipeline,
    maxBodyBytes: config.MAX_BODY_BYTES,
    idempotency,
    enrich: createEnricher({
      service: config.K_SERVICE,
      revision: config.K_REVISION,
      host: hostname(),
      labels: config.LABELS,
      maxEntryBytes: config.MAX_ENTRY_BYTES,
    }),
  })

  return {
    server,
    pipeline,
    instanceId,
    async start() {
      await server.listen({ host: config.SIDELOG_HOST, port: config.SIDELOG_PORT })
      return server.server.address() as AddressInfo
    },
    async close() {
      const budgetMs = config.SHUTDOWN_TIMEOUT * 1000
      const reserveMs = Math.min(DEAD_LETTER_RESERVE_MS, budgetMs / 4)
      // Refuse new entries first (503), so nothing is accepted that the drain below would not see.
      pipeline.stopAccepting()
      const serverClosed = server.close()
      const summary = await pipeline.drain(budgetMs - reserveMs)
      // Whatever connection is still open (a slow upload) holds nothing accepted: do not wait for it.
      server.server.closeAllConnections()
      await serverClosed
      await spool?.close()
      await idempotency.close()
      return summary
    },
  }
}
