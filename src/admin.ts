// What the platform reads: GET /metrics and GET /ready beside /health on the main listener, and the optional admin
// listener (ADMIN_HOST:ADMIN_PORT) that serves /health, /ready and /metrics only, so that a kubelet or a metrics
// scraper can reach them while /logs stays on SIDELOG_HOST.
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from './config.js'
import type { Metrics } from './metrics/index.js'
import type { Pipeline } from './pipeline/index.js'

export interface Readiness {
  readonly ready: boolean
  /** Why not, one line each: draining, a sink failing, a buffer or the spool too full to take a request. */
  readonly reasons: readonly string[]
}

/**
 * Ready means: a request sent now would be taken and its sinks are delivering. Not ready while draining, while a
 * sink's last attempt failed (/health's `degraded`), or while a request would be refused before it is read (429).
 */
export function readiness(pipeline: Pipeline): Readiness {
  const reasons: string[] = []
  if (pipeline.isShuttingDown) reasons.push('draining: sidelog is shutting down')
  for (const [sink, stats] of Object.entries(pipeline.stats())) {
    if (!stats.healthy) {
      reasons.push(`sink ${sink} is failing: ${stats.last_error?.message ?? 'unknown error'}`)
    }
  }
  if (pipeline.isAccepting) {
    try {
      pipeline.assertNotSaturated()
    } catch (err) {
      reasons.push((err as Error).message)
    }
  }
  return { ready: reasons.length === 0, reasons }
}

export interface MonitoringOptions {
  readonly config: Pick<Config, 'ADMIN_HOST' | 'ADMIN_PORT'>
  readonly logger: Logger
  readonly metrics: Metrics
  readonly pipeline: Pipeline
  /** The whole /health document, as the main listener serves it. */
  readonly health: () => Record<string, unknown>
}

export interface Monitoring {
  /** Adds GET /metrics and GET /ready to a Fastify instance. */
  register(app: FastifyInstance): void
  /** The admin listener, once listening (undefined when ADMIN_PORT is empty). */
  readonly admin: FastifyInstance | undefined
  /** Starts the admin listener if ADMIN_PORT is set; resolves with its address. A busy port fails start-up. */
  listen(): Promise<AddressInfo | undefined>
  close(): Promise<void>
}

export function createMonitoring(options: MonitoringOptions): Monitoring {
  const { config, logger, metrics, pipeline, health } = options
  const register = (app: FastifyInstance) => {
    app.get('/metrics', async (_request, reply) =>
      reply.type(metrics.contentType).send(await metrics.render()),
    )
    app.get('/ready', async (_request, reply) => {
      const state = readiness(pipeline)
      return reply.code(state.ready ? 200 : 503).send(state)
    })
  }

  let admin: FastifyInstance | undefined
  if (config.ADMIN_PORT !== undefined) {
    admin = Fastify({
      // Warnings and errors only: Fastify's own "listening" lines, one per interface, would repeat the line below.
      loggerInstance: logger.child({ listener: 'admin' }, { level: 'warn' }) as FastifyBaseLogger,
      logController: new LogController({ disableRequestLogging: true }),
    })
    admin.get('/health', async () => health())
    register(admin)
    admin.setNotFoundHandler((request, reply) =>
      reply.code(404).send({
        error: 'NOT_FOUND',
        message: `no route ${request.method} ${request.url}; the admin listener serves GET /health, /ready and /metrics (logs go to SIDELOG_PORT)`,
      }),
    )
  }

  return {
    register,
    admin,
    async listen() {
      if (!admin || config.ADMIN_PORT === undefined) return undefined
      try {
        await admin.listen({ host: config.ADMIN_HOST, port: config.ADMIN_PORT })
      } catch (err) {
        throw new Error(
          `admin listener: cannot listen on ${config.ADMIN_HOST}:${config.ADMIN_PORT} (ADMIN_HOST, ADMIN_PORT): ${(err as Error).message}`,
        )
      }
      const address = admin.server.address() as AddressInfo
      logger.info(
        { admin_address: address.address, admin_port: address.port },
        `admin listener (/health, /ready, /metrics) on http://${address.address}:${address.port}`,
      )
      return address
    },
    async close() {
      await admin?.close()
    },
  }
}
