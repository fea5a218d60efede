#!/usr/bin/env -S node --max-semi-space-size=1 --max-old-space-size=128
// The process edge: reads process.env and argv, installs signal handling, sets the exit code. Nothing else does.
import closeWithGrace from 'close-with-grace'
import { createApp } from './app.js'
import { type Config, helpText, loadConfig } from './config.js'
import { ConfigError, errorMessage } from './errors.js'
import { createLogger } from './logger.js'

/** Past SHUTDOWN_TIMEOUT, how long close-with-grace waits before it exits 1 anyway. */
const HARD_EXIT_MARGIN_MS = 1500

/** Set once the app is built: what SIGUSR1 flushes. */
let flushNow: (() => void) | undefined

async function main(): Promise<void> {
  // First of all: until a listener exists, Node answers SIGUSR1 by opening its debugger on 127.0.0.1:9229, which
  // the app beside sidelog (same network namespace) could attach to.
  process.on('SIGUSR1', () => flushNow?.())
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
    logger.fatal({ err }, hint)
    process.exit(1)
  }

  const grace = closeWithGrace(
    {
      delay: config.SHUTDOWN_TIMEOUT * 1000 + HARD_EXIT_MARGIN_MS,
      // Signals are handled below: a second one must not cut the drain short.
      skip: ['SIGTERM', 'SIGINT'],
      logger: { error: (message: unknown) => logger.error({ detail: String(message) }, 'shutdown problem') },
      onTimeout: () => {
        // The drain overran its budget: nothing it still holds may vanish with the process.
        const written = app.deadLetterNow()
        logger.fatal({ last_resort: written }, 'shutdown overran SHUTDOWN_TIMEOUT; exiting')
      },
    },
    async ({ err }) => {
      if (err) logger.error({ err }, 'unexpected error; draining before exit')
      const summary = await app.close()
      logger.info(
        summary,
        `stopped: ${summary.delivered} entries delivered, ${summary.dead_lettered} dead-lettered`,
      )
    },
  )

  let signalled = false
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (signalled) {
        logger.warn(
          { signal },
          'already draining; the signal is ignored (the drain ends within SHUTDOWN_TIMEOUT)',
        )
        return
      }
      signalled = true
      logger.info({ signal }, 'draining')
      void grace.close()
    })
  }

  // SIGUSR1: deliver what is buffered now (an operator before a deploy, or looking for an entry), as Fluentd does.
  let flushing = false
  flushNow = () => {
    if (signalled) return
    if (flushing) {
      logger.warn(
        { signal: 'SIGUSR1' },
        'a flush is still running (load mode waits for its job); not starting another',
      )
      return
    }
    flushing = true
    const buffered = app.pipeline.bufferedEvents
    logger.info({ signal: 'SIGUSR1', buffered }, 'flushing every open batch now')
    app.pipeline.flushNow().then(
      () => {
        flushing = false
        logger.info({ signal: 'SIGUSR1', buffered: app.pipeline.bufferedEvents }, 'flushed')
      },
      (err: unknown) => {
        flushing = false
        logger.error({ err }, 'flush on SIGUSR1 failed')
      },
    )
  }

  try {
    const address = await app.start()
    logger.info(
      { address: address.address, port: address.port, sinks: config.SINKS, instance: app.instanceId },
      `listening on http://${address.address}:${address.port}`,
    )
  } catch (err) {
    logger.fatal({ err }, `cannot listen on ${config.SIDELOG_HOST}:${config.SIDELOG_PORT}`)
    process.exit(1)
  }
}

await main()
