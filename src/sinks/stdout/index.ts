// The stdout sink's module: one JSON line per entry on sidelog's stdout, for the platform's log collection.
import { batchSettings } from '../../pipeline/batching.js'
import { type BatchDefaults, defineSink } from '../sink.js'

/** One write per batch; a second keeps it prompt in Cloud Logging. */
const BATCH: BatchDefaults = { events: 1_000, bytes: 1024 ** 2, seconds: 1 }

export const stdoutSink = defineSink({
  kind: 'stdout',
  summary:
    "One JSON line per entry on sidelog's stdout, which Cloud Run and Kubernetes collect as structured logs (with severity).",
  batchPrefix: 'STDOUT',
  settings: batchSettings('STDOUT', 'stdout', BATCH),
  batching: () => BATCH,
  async create(context) {
    return (await import('./sink.js')).createStdoutSink(context)
  },
})
