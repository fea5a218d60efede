// The registry of sources beside POST /logs. Adding an input is one folder, src/sources/<kind>/, whose index.ts
// exports a SourceModule (source.ts: its settings, when it is on, its cross-checks, its factory), and one line
// below; config.ts, --help and the README's settings tables take it from here. app.ts creates the enabled ones,
// starts them once it listens and closes them first on shutdown. (POST /logs itself is http.ts: it is always on.)
import type { Config } from '../config.js'
import { composeSettings, ownSettings } from '../settings/compose.js'
import { otlpSource } from './otlp/index.js'
import type { Source, SourceContext, SourceModule, SourceShared } from './source.js'
import { tailSource } from './tail/index.js'

export const sourceModules = {
  otlp: otlpSource,
  tail: tailSource,
}

export type SourceKind = keyof typeof sourceModules
export const SOURCE_KINDS = Object.keys(sourceModules) as SourceKind[]

/** Every source's own settings, for config's schema. */
export const sourceSettings = composeSettings(sourceModules)

/** The module of `kind`, with its settings' types erased. */
export function sourceModule(kind: SourceKind): SourceModule {
  return sourceModules[kind] as unknown as SourceModule
}

/** The cross-checks of every source its settings turn on. */
export function checkSourceSettings(config: Config): string[] {
  return SOURCE_KINDS.flatMap((kind) => {
    const module = sourceModule(kind)
    const settings = ownSettings(module.settings, config)
    if (!module.enabled(settings)) return []
    return module.check?.(settings, { maxEntryBytes: config.MAX_ENTRY_BYTES }) ?? []
  })
}

function sourceShared(config: Config): SourceShared {
  return {
    dataDir: config.DATA_DIR,
    spoolDir: config.SPOOL_DIR,
    durable: config.SPOOL_DIR !== '' && config.SPOOL_FSYNC !== 'never',
    maxBodyBytes: config.MAX_BODY_BYTES,
    bufferMaxEvents: config.BUFFER_MAX_EVENTS,
    bufferMaxBytes: config.BUFFER_MAX_BYTES,
    project: config.GOOGLE_CLOUD_PROJECT || config.BQ_PROJECT,
  }
}

export interface Sources {
  start(): void
  /** Stops every source and waits for what each has in flight, at most until `signal` aborts. */
  close(signal: AbortSignal): Promise<void>
  /** Each running source's counters, by kind. */
  stats(): Record<string, Record<string, unknown>>
}

export async function createSources(
  config: Config,
  context: Omit<SourceContext<unknown>, 'settings' | 'shared'>,
): Promise<Sources> {
  const shared = sourceShared(config)
  const running: Source[] = []
  for (const kind of SOURCE_KINDS) {
    const module = sourceModule(kind)
    const settings = ownSettings(module.settings, config)
    if (module.enabled(settings)) running.push(await module.create({ ...context, settings, shared }))
  }
  return {
    start() {
      for (const source of running) source.start?.()
    },
    async close(signal) {
      await Promise.all(
        running.map((source) =>
          source
            .close?.(signal)
            .catch((err: unknown) =>
              context.logger.error({ source: source.kind, err }, 'source close failed'),
            ),
        ),
      )
    },
    stats() {
      return Object.fromEntries(running.flatMap((s) => (s.stats ? [[s.kind, s.stats()]] : [])))
    },
  }
}
