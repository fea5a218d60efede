// Cloud Storage sink: each batch becomes one JSONL object (optionally gzip), written with ifGenerationMatch=0 under
// a name fixed per batch, so a retried batch yields exactly one object and never overwrites another.
import { promisify } from 'node:util'
import { gzip } from 'node:zlib'
import { bucketOf, checkBucket, createObject } from '../../google/storage.js'
import { batchJsonlInto, objectName } from '../../jsonl.js'
import { ReusedBuffers } from '../../reused-buffers.js'
import type { Sink, SinkContext } from '../sink.js'
import type { GcsSettings } from './settings.js'

const gzipAsync = promisify(gzip)

/** As many as the uploads a sink runs at once by default (SINK_CONCURRENCY). */
const UPLOAD_BUFFERS_KEPT = 4

export async function createGcsSink({ settings, shared }: SinkContext<GcsSettings>): Promise<Sink> {
  const bucket = bucketOf(shared.google)
  const compress = settings.GCS_COMPRESSION === 'gzip'
  const extension = compress ? '.jsonl.gz' : '.jsonl'
  const uploads = new ReusedBuffers(UPLOAD_BUFFERS_KEPT)
  return {
    name: 'gcs',
    check: () => checkBucket(bucket),
    async write(batch, { signal }) {
      // Taken before the first await: the batch's memory may be reused once the batch is done (see Sink).
      let buffer: Buffer | undefined = uploads.take(batch.bytes)
      const giveBack = () => {
        if (buffer) uploads.giveBack(buffer)
        buffer = undefined
      }
      try {
        const jsonl = batchJsonlInto(batch, buffer)
        const name = objectName(batch, settings.GCS_PREFIX, extension, settings.GCS_LAYOUT)
        let body = jsonl
        if (compress) {
          body = await gzipAsync(jsonl)
          // The compressed object is a Buffer of its own: the JSONL's is free once gzip has read it.
          giveBack()
        }
        // An attempt given up before its upload starts publishes nothing. Once started, an upload cannot be taken
        // back: if it lands after all, the next attempt meets it (412) and counts it delivered.
        signal.throwIfAborted()
        await createObject(bucket, name, body, {
          resumableThreshold: shared.google.resumableThreshold,
          ...(compress ? { contentEncoding: 'gzip' as const } : {}),
        })
      } finally {
        // Only now has the upload (or the gzip) settled and stopped reading it: an attempt that timed out keeps its
        // Buffer until then.
        giveBack()
      }
    },
    async close() {},
  }
}
