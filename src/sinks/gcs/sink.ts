// Cloud Storage sink: each batch becomes one JSONL object (optionally gzip), written with ifGenerationMatch=0 under
// a name fixed per batch, so a retried batch yields exactly one object and never overwrites another.
import { promisify } from 'node:util'
import { gzip } from 'node:zlib'
import { bucketOf, checkBucket, createObject } from '../../google/storage.js'
import { batchJsonl, objectName } from '../../jsonl.js'
import type { Sink, SinkContext } from '../sink.js'
import type { GcsSettings } from './settings.js'

const gzipAsync = promisify(gzip)

export async function createGcsSink({ settings, shared }: SinkContext<GcsSettings>): Promise<Sink> {
  const bucket = bucketOf(shared.google)
  const compress = settings.GCS_COMPRESSION === 'gzip'
  const extension = compress ? '.jsonl.gz' : '.jsonl'
  return {
    name: 'gcs',
    check: () => checkBucket(bucket),
    async write(batch, { signal }) {
      const jsonl = batchJsonl(batch)
      const name = objectName(batch, settings.GCS_PREFIX, extension, settings.GCS_LAYOUT)
      const body = compress ? await gzipAsync(jsonl) : jsonl
      // An attempt given up before its upload starts publishes nothing. Once started, an upload cannot be taken
      // back: if it lands after all, the next attempt meets it (412) and counts it delivered.
      signal.throwIfAborted()
      await createObject(bucket, name, body, {
        resumableThreshold: shared.google.resumableThreshold,
        ...(compress ? { contentEncoding: 'gzip' as const } : {}),
      })
    },
    async close() {},
  }
}
