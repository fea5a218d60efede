// The registry of sources beside POST /logs: adding an input is one folder and one line here. app.ts creates the
// enabled ones, starts them once it listens and closes them first on shutdown.
import { otlpSource } from './otlp/index.js'
import type { Source, SourceContext, SourceModule } from './source.js'
import { tailSource } from './tail/index.js'

export const sourceModules = {
  otlp: otlpSource,
  tail: tailSource,
} satisfies Record<string, SourceModule>

export interface Sources {
  start(): void
  /** Stops every source and waits for what each has in flight. */
  close(): Promise<void>
  /** Each running source's counters, by kind. */
  stats(): Record<string, Record<string, unknown>>
}

export async function createSources(context: SourceContext): Promise<Sources> {
  const running: Source[] = []
  for (const module of Object.values(sourceModules)) {
    if (module.enabled(context.config)) running.push(await module.create(context))
  }
  return {
    start() {
      for (const source of running) source.start?.()
    },
    async close() {
      await Promise.all(
        running.map((source) =>
          source
            .close?.()
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
