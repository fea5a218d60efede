#!/usr/bin/env node
// The process edge: reads process.env and argv, installs signal handling, sets the exit code. Nothing else does.
import closeWithGrace from 'close-with-grace'
import { createApp } from './app.js'
import { type Config, helpText, loadConfig } from './config.js'
import { ConfigError, errorMessage } from './errors.js'
import { createLogger } from './logger.js'

/** Past SHUTDOWN_TIMEOUT, how long close-with-grace waits before it exits 1 anyway. */
const HARD_EXIT_MARGIN_MS = 1500

async function main(): Promise<void> {
  if (process.argv[2] === 'top') {
    const { runTop } = await import('./top/cli.js')
    process.exitCode = await runTop(process.argv.slice(3))
    return
  }
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(`${helpText()}\n`)
    return
  }

  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    process.stderr.write(`sidelog: ${errorMessage(err)}\n`)
    process.exit(1)
  }

  const logger = createLogger(config)

  let app: Awaited<ReturnType<typeof createApp>>
  try {
    app = await createApp(config, { logger })
  } catch (err) {
    const hint = err instanceof ConfigError ? 'invalid configuration' : 'start-up failed'
    logger.fatal({ err: errorMessage(err) }, hint)
    process.exit(1)
  }

  closeWithGrace(
    {
      delay: config.SHUTDOWN_TIMEOUT * 1000 + HARD_EXIT_MARGIN_MS,
      logger: { error: (message: unknown) => logger.error({ detail: String(message) }, 'shutdown problem') },
    },
    async ({ signal, err }) => {
      if (err) logger.error({ err }, 'unexpected error; draining before exit')
      logger.info({ signal }, 'draining')
      const summary = await app.close()
      logger.info(
        summary,
        `stopped: ${summary.delivered} entries delivered, ${summary.dead_lettered} dead-lettered`,
      )
    },
  )

  try {
    const address = await app.start()
    logger.info(
      { address: address.address, port: address.port, sinks: config.SINKS, instance: app.instanceId },
      `listening on http://${address.address}:${address.port}`,
    )
  } catch (err) {
    logger.fatal({ err: errorMessage(err) }, `cannot listen on ${config.SIDELOG_HOST}:${config.SIDELOG_PORT}`)
    process.exit(1)
  }
}

await main()
