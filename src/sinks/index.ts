// The registry of sinks. Adding a sink is one folder, src/sinks/<kind>/, whose index.ts exports a SinkModule
// (sink.ts: its settings, batching, cross-checks and factory), and one line below. config.ts, --help, the README's
// settings table, the batchers and the contract test take every sink from here. Each sink's implementation is
// loaded only when SINKS names it: the Google Cloud clients alone take about 25 MiB of memory, which a sidelog
// writing files should not pay.
import type { Writable } from 'node:stream'
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import { withTimeout } from '../delivery/timing.js'
import { ConfigError, errorMessage, PermanentError } from '../errors.js'
import { googleAccess } from '../google/settings.js'
import { checkBatchingSettings } from '../pipeline/batching.js'
import { composeSettings, ownSettings } from '../settings/compose.js'
import { bigquerySink } from './bigquery/index.js'
import { fileSink } from './file/index.js'
import { gcsSink } from './gcs/index.js'
import type { SharedSettings, Sink, SinkModule, StartedSink } from './sink.js'
import { stdoutSink } from './stdout/index.js'

export const sinkModules = {
  file: fileSink,
  stdout: stdoutSink,
  gcs: gcsSink,
  bigquery: bigquerySink,
}

export type SinkKind = keyof typeof sinkModules
export const SINK_KINDS = Object.keys(sinkModules) as SinkKind[]

/** Every sink's own settings, for config's schema. */
export const sinkSettings = composeSettings(sinkModules)

/** The module of `kind`, with its settings' types erased: what the code that runs every sink alike needs. */
export function sinkModule(kind: SinkKind): SinkModule {
  return sinkModules[kind] as unknown as SinkModule
}

/** The settings every sink shares, decoded from the configuration. */
function sharedSettings(config: Config): SharedSettings {
  return {
    dataDir: config.DATA_DIR,
    deadLetterDir: config.DEAD_LETTER_DIR,
    attemptTimeoutMs: config.SINK_TIMEOUT * 1000,
    retry: {
      initialBackoffMs: config.RETRY_INITIAL_BACKOFF * 1000,
      maxBackoffMs: config.RETRY_MAX_BACKOFF * 1000,
      maxElapsedMs: config.RETRY_MAX_ELAPSED * 1000,
    },
    google: googleAccess(config),
  }
}

/** The cross-checks of every sink SINKS names: its own, and its batching against the buffers. */
export function checkSinkSettings(config: Config): string[] {
  const shared = sharedSettings(config)
  const problems = config.SINKS.flatMap((kind) => {
    const module = sinkModule(kind)
    const settings = ownSettings(module.settings, config)
    return [...(module.check?.(settings, shared) ?? []), ...checkBatchingSettings(module, settings, config)]
  })
  return [...new Set(problems)]
}

export interface StartSinksOptions {
  readonly logger: Logger
  /** Where the stdout sink writes. */
  readonly stdout: Writable
}

/**
 * Builds every sink SINKS names, each from its own settings, and runs its start-up check under SINK_TIMEOUT: a
 * destination that refuses for good stops start-up (ConfigError); one that does not answer starts degraded.
 */
export async function startSinks(config: Config, options: StartSinksOptions): Promise<StartedSink[]> {
  const shared = sharedSettings(config)
  const started: StartedSink[] = []
  for (const kind of config.SINKS) {
    const module = sinkModule(kind)
    const sink = await module.create({
      settings: ownSettings(module.settings, config),
      shared,
      logger: options.logger,
      stdout: options.stdout,
    })
    const startupError = await checkAtStartup(sink, shared.attemptTimeoutMs, options.logger)
    started.push(startupError ? Object.create(sink, { startupError: { value: startupError } }) : sink)
  }
  return started
}

/** Runs `sink.check` under `timeoutMs`; returns the error of a destination that did not answer. */
async function checkAtStartup(sink: Sink, timeoutMs: number, logger: Logger): Promise<Error | undefined> {
  if (!sink.check) return undefined
  const controller = new AbortController()
  try {
    await withTimeout(sink.check(controller.signal), timeoutMs, `no answer within ${timeoutMs / 1000} s`)
    return undefined
  } catch (err) {
    controller.abort(err)
    if (err instanceof ConfigError) throw err
    if (err instanceof PermanentError) throw new ConfigError(`${sink.name} sink: ${err.message}`)
    logger.warn(
      { sink: sink.name, err },
      'destination not reached at start-up; starting degraded, writes will retry',
    )
    return new Error(
      `the ${sink.name} sink's destination could not be reached at start-up: ${errorMessage(err)}`,
      {
        cause: err,
      },
    )
  }
}
