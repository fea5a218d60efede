// The gcs sink's module: JSONL objects in Cloud Storage, in LOG_BUCKET (a Google setting it shares with load mode
// and the gcs dead-letter store).
import { defineSink } from '../sink.js'
import { GCS_BATCH, gcsSettings } from './settings.js'

export const gcsSink = defineSink({
  kind: 'gcs',
  summary:
    'JSONL objects (optionally gzip) in LOG_BUCKET, created with ifGenerationMatch=0 under a name fixed per batch, so a retry never makes a second object.',
  batchPrefix: 'GCS',
  settings: gcsSettings,
  batching: () => GCS_BATCH,
  check: (_, shared) =>
    shared.google.bucket ? [] : ['SINKS includes gcs, so LOG_BUCKET (or GCS_BUCKET) must name the bucket'],
  async create(context) {
    return (await import('./sink.js')).createGcsSink(context)
  },
})
