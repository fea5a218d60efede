// Cloud Storage sink: each batch becomes one JSONL object (optionally gzip), written with ifGenerationMatch=0 under
// a name fixed per batch, so a retried batch yields exactly one object and never overwrites another.
import { promisify } from 'node:util'
import { gzip } from 'node:zlib'
import { type Bucket, Storage } from '@google-cloud/storage'
import type { Logger } from 'pino'
import { type Config, gcsBucket, googleAuthOptions } from '../config.js'
import { withTimeout } from '../delivery/timing.js'
import { ConfigError, errorMessage, PermanentError } from '../errors.js'
import { classifyGoogleError, statusOf } from './google-errors.js'
import { encodeJsonlBuffer, objectName } from './jsonl.js'
import type { Sink, SinkFactory } from './sink.js'

const gzipAsync = promisify(gzip)

/** 408, 429, 5xx, time-outs and resets are transient; other 4xx are permanent. */
export function classifyGcsError(err: unknown): unknown {
  return classifyGoogleError(err, 'Cloud Storage')
}

/**
 * The bucket named by LOG_BUCKET, checked: a missing bucket or no permission is a ConfigError (start-up stops); an
 * unreachable one comes back as `startupError` and writes retry.
 */
export async function openBucket(
  config: Config,
  logger: Logger,
): Promise<{ bucket: Bucket; startupError?: Error }> {
  const bucketName = gcsBucket(config)
  const storage = new Storage({
    ...googleAuthOptions(config),
    ...(config.GCS_ENDPOINT ? { apiEndpoint: config.GCS_ENDPOINT } : {}),
    // sidelog's retry layer owns timing and deadlines; the client's own retries (up to 600 s) would hide them.
    retryOptions: { autoRetry: false, maxRetries: 0 },
  })
  const bucket = storage.bucket(bucketName)
  try {
    await withTimeout(
      bucket.getMetadata(),
      config.SINK_TIMEOUT * 1000,
      `no answer within ${config.SINK_TIMEOUT} s`,
    )
    return { bucket }
  } catch (err) {
    const classified = classifyGcsError(err)
    if (classified instanceof PermanentError) {
      const hint =
        statusOf(err) === 403
          ? ' (the service account needs storage.buckets.get on it, e.g. Storage Legacy Bucket Reader, besides Storage Object Creator)'
          : ''
      throw new ConfigError(
        `LOG_BUCKET=${bucketName}: the bucket cannot be used: ${errorMessage(classified)}${hint}`,
      )
    }
    logger.warn({ bucket: bucketName, err }, 'bucket unverified at start-up; writes will retry')
    return {
      bucket,
      startupError: new Error(`bucket ${bucketName} could not be checked at start-up: ${errorMessage(err)}`),
    }
  }
}

export interface SaveOptions {
  readonly resumableThreshold: number
  readonly contentEncoding?: 'gzip'
}

/**
 * Creates the object `name` unless it exists, and never overwrites it: a retry of a batch whose earlier attempt
 * landed answers 412, which only this batch can cause (its name is its own), so it counts as stored. Throws a
 * PermanentError for answers a retry cannot change.
 */
export async function createObject(
  bucket: Bucket,
  name: string,
  data: Buffer,
  options: SaveOptions,
): Promise<void> {
  try {
    await bucket.file(name).save(data, {
      resumable: data.length > options.resumableThreshold,
      preconditionOpts: { ifGenerationMatch: 0 },
      contentType: 'application/x-ndjson',
      metadata: options.contentEncoding ? { contentEncoding: options.contentEncoding } : {},
      // MD5 is hashed natively; the client's CRC32C is JavaScript, and took 16% of the CPU at 4 MiB objects.
      validation: 'md5',
    })
  } catch (err) {
    if (statusOf(err) === 412) return
    throw classifyGcsError(err)
  }
}

export const createGcsSink: SinkFactory = async ({ config, logger }) => {
  const { bucket, startupError } = await openBucket(config, logger)
  const compress = config.GCS_COMPRESSION === 'gzip'
  const extension = compress ? '.jsonl.gz' : '.jsonl'
  const sink: Sink = {
    name: 'gcs',
    ...(startupError ? { startupError } : {}),
    async write(batch, { signal }) {
      const jsonl = encodeJsonlBuffer(batch.events)
      const name = objectName(batch, config.GCS_PREFIX, extension, config.GCS_LAYOUT)
      const body = compress ? await gzipAsync(jsonl) : jsonl
      // An attempt given up before its upload starts publishes nothing. Once started, an upload cannot be taken
      // back: if it lands after all, the next attempt meets it (412) and counts it delivered.
      signal.throwIfAborted()
      await createObject(bucket, name, body, {
        resumableThreshold: config.GCS_RESUMABLE_THRESHOLD,
        ...(compress ? { contentEncoding: 'gzip' as const } : {}),
      })
    },
    async close() {},
  }
  return sink
}
