// Builds and wires sinks → batchers → pipeline → server. Starts downstream first and stops upstream first.
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { hostname } from 'node:os'
import type { Writable } from 'node:stream'
import { getHeapStatistics } from 'node:v8'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { createMonitoring } from './admin.js'
import { type Config, heapProblem } from './config.js'
import { openDeadLetterStore } from './delivery/dead-letters.js'
import { deadlineSignal, sleep } from './delivery/timing.js'
import { ConfigError } from './errors.js'
import { createMetrics } from './metrics/index.js'
import { batchingFor } from './pipeline/batching.js'
import { createEnricher } from './pipeline/enrich.js'
import { type DrainSummary, Pipeline } from './pipeline/index.js'
import { createServer } from './server.js'
import { sinkModule, startSinks } from './sinks/index.js'
import { type HttpSource, registerHttpSource } from './sources/http.js'
import { derivedIdsInSpool, IdempotencyStore } from './sources/idempotency/index.js'
import { createSources } from './sources/index.js'
import { Spool } from './spool/index.js'

/** Retry-After for a 429: the buffer frees as batches are written, usually within a second. */
const RETRY_AFTER_MS = 1000

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
  /** The last resort before a hard exit: what is still held is dead-lettered synchronously. Returns how many. */
  deadLetterNow(): number
}

export async function createApp(config: Config, options: AppOptions): Promise<App> {
  const { logger } = options
  const heap = heapProblem(config, options.heapLimitBytes ?? getHeapStatistics().heap_size_limit)
  if (heap) throw new ConfigError(heap)
  const instanceId = options.instanceId ?? randomBytes(6).toString('hex')
  const startedAt = Date.now()

  const metrics = createMetrics(config)
  const sinks = (await startSinks(config, { logger, stdout: options.stdout ?? process.stdout })).map((sink) =>
    metrics.instrument(sink),
  )

  const deadLetter = await openDeadLetterStore(config, { logger, instanceId })

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
      // Every sink has its own limits below; these are the file sink's, for a sink without an entry there.
      ...batchingFor(sinkModule('file'), config, config),
      maxBufferedEvents: config.BUFFER_MAX_EVENTS,
      maxBufferedBytes: config.BUFFER_MAX_BYTES,
      concurrency: config.SINK_CONCURRENCY,
    },
    sinkBatching: Object.fromEntries(
      config.SINKS.map((kind) => [kind, batchingFor(sinkModule(kind), config, config)]),
    ),
    retry: {
      initialBackoffMs: config.RETRY_INITIAL_BACKOFF * 1000,
      maxBackoffMs: config.RETRY_MAX_BACKOFF * 1000,
      maxElapsedMs: config.RETRY_MAX_ELAPSED * 1000,
      attemptTimeoutMs: config.SINK_TIMEOUT * 1000,
      // A quarter of the drain's dead-letter reserve (see Pipeline.drain).
      settleOnShutdownMs: Math.min(250, (config.SHUTDOWN_TIMEOUT * 1000) / 16),
    },
    deadLetter,
    logger,
    retryAfterMs: RETRY_AFTER_MS,
    observer: metrics.observer,
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

  // Set once the http source is registered (below); /health and /metrics read it only when asked.
  let http: HttpSource | undefined
  const server = createServer({
    logger,
    bodyLimit: config.MAX_BODY_BYTES,
    requestTimeoutMs: config.REQUEST_TIMEOUT * 1000,
    maxConnections: config.MAX_CONNECTIONS,
    health: () => {
      const sinkStats = pipeline.stats()
      const spoolProblem = pipeline.spoolProblem
      const failing = spoolProblem !== undefined || Object.values(sinkStats).some((s) => !s.healthy)
      return {
        status: pipeline.isShuttingDown ? 'draining' : failing ? 'degraded' : 'healthy',
        ...(spool
          ? {
              spool: {
                bytes: spool.bytes,
                damaged_at_open: spool.damagedAtOpen,
                last_error: spoolProblem ?? null,
              },
            }
          : {}),
        buffer_size: pipeline.bufferedEvents,
        inflight_bytes: http?.inflightBytes ?? 0,
        lines_processed: pipeline.acceptedEvents,
        uptime_s: Math.round((Date.now() - startedAt) / 1000),
        instance: instanceId,
        sinks: sinkStats,
        sources: sources.stats(),
        idempotency: idempotency.stats(),
      }
    },
  })
  metrics.bind({
    pipeline,
    refused: server.refusedRequests,
    inflightBytes: () => http?.inflightBytes ?? 0,
    ...(spool ? { spool } : {}),
  })
  const monitoring = createMonitoring({ config, logger, metrics, pipeline, health: server.healthDocument })
  monitoring.register(server)
  const enrich = createEnricher({
    service: config.K_SERVICE,
    revision: config.K_REVISION,
    host: hostname(),
    labels: config.LABELS,
    maxEntryBytes: config.MAX_ENTRY_BYTES,
    project: config.GOOGLE_CLOUD_PROJECT || config.BQ_PROJECT,
  })
  http = registerHttpSource(server, {
    pipeline,
    maxBodyBytes: config.MAX_BODY_BYTES,
    maxInflightBytes: config.MAX_INFLIGHT_BYTES,
    retryAfterMs: RETRY_AFTER_MS,
    fullWaitMs: config.BUFFER_FULL_WAIT * 1000,
    enrich,
    idempotency,
  })
  const sources = await createSources(config, {
    logger,
    server,
    pipeline,
    enrich,
    ...(spool ? { spool } : {}),
  })

  return {
    server,
    pipeline,
    instanceId,
    async start() {
      await server.listen({ host: config.SIDELOG_HOST, port: config.SIDELOG_PORT })
      await monitoring.listen()
      sources.start()
      return server.server.address() as AddressInfo
    },
    deadLetterNow: () => pipeline.deadLetterNow(),
    async close() {
      // A monotonic clock: the wall clock can jump (and tests freeze it).
      const startedAt = performance.now()
      // Dead-letter writes to the network give up in time for the next store (stderr) before the deadline.
      deadLetter.beginShutdown?.(Date.now() + config.SHUTDOWN_TIMEOUT * 1000)
      // The app beside sidelog got its SIGTERM at about the same time and is logging its own shutdown: take those
      // entries (flushed at once) until it goes quiet, or SHUTDOWN_ACCEPT is over.
      pipeline.beginShutdown()
      const windowMs = Math.min(config.SHUTDOWN_ACCEPT, config.SHUTDOWN_TIMEOUT / 2) * 1000
      await acceptWindow(pipeline, startedAt, windowMs, config.SHUTDOWN_QUIET * 1000)
      // Then refuse new entries (503), so nothing is accepted that the drain below would not see.
      pipeline.stopAccepting()
      // A source's step in flight (the tail's accept and its checkpoint) finishes before the drain, in at most a
      // quarter of what is left of the budget, so that the drain keeps the rest.
      const leftMs = config.SHUTDOWN_TIMEOUT * 1000 - (performance.now() - startedAt)
      const sourcesBy = deadlineSignal(
        leftMs / 4,
        new Error('the sources took their share of SHUTDOWN_TIMEOUT'),
      )
      await sources.close(sourcesBy.signal)
      sourcesBy.clear()
      const budgetMs = config.SHUTDOWN_TIMEOUT * 1000 - (performance.now() - startedAt)
      const serverClosed = server.close()
      const summary = await pipeline.drain(budgetMs)
      // Whatever connection is still open (a slow upload) holds nothing accepted: do not wait for it.
      server.closeEveryConnection()
      await serverClosed
      await monitoring.close()
      await spool?.close()
      await idempotency.close()
      return summary
    },
  }
}

/**
 * Resolves once `windowMs` has passed since `startedAt`, or sooner once no entry has come for `quietMs` (times from
 * performance.now(), which a test cannot freeze and the wall clock cannot make jump).
 */
async function acceptWindow(
  pipeline: Pipeline,
  startedAt: number,
  windowMs: number,
  quietMs: number,
): Promise<void> {
  if (windowMs <= 0) return
  for (;;) {
    const now = performance.now()
    const windowLeft = startedAt + windowMs - now
    const quietLeft = Math.max(pipeline.lastAcceptedAt, startedAt) + quietMs - now
    const wait = Math.min(windowLeft, quietLeft)
    if (wait <= 0) return
    await sleep(Math.min(wait, 100))
  }
}
