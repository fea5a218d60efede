// The registry of sinks: adding a sink is one new file and one line here (and its name in config's SINK_KINDS).
// Each sink's module is loaded only when that sink is configured: the Google Cloud clients alone take about 25 MiB
// of memory, which a sidelog writing files should not pay.
import type { SinkKind } from '../config.js'
import type { SinkFactory } from './sink.js'

/** A factory that loads its module on first use. */
function loadedOnUse(load: () => Promise<SinkFactory>): SinkFactory {
  return async (context) => (await load())(context)
}

export const sinkFactories = {
  file: loadedOnUse(async () => (await import('./file.js')).createFileSink),
  stdout: loadedOnUse(async () => (await import('./stdout.js')).createStdoutSink),
  gcs: loadedOnUse(async () => (await import('./gcs.js')).createGcsSink),
  bigquery: loadedOnUse(async () => (await import('./bigquery.js')).createBigQuerySink),
} satisfies Record<SinkKind, SinkFactory>
