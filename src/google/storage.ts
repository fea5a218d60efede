// Cloud Storage as sidelog uses it, for the gcs sink, load mode's staging and the gcs dead-letter store: a client
// that leaves retries to sidelog, a bucket check that tells a setting to fix from a network that may come back, and
// objects created under a fixed name and never overwritten.
import { type Bucket, Storage } from '@google-cloud/storage'
import { ConfigError, errorMessage, PermanentError } from '../errors.js'
import { Crc32c, crc32cOf } from './crc32c.js'
import { classifyGoogleError, statusOf } from './errors.js'
import type { GoogleAccess } from './settings.js'

/**
 * Cloud Storage's answer to an upload whose bytes do not match the hash given with it (400, "Provided CRC32C ...
 * doesn't match calculated CRC32C ..."): they were damaged on the way, and sending them again is the remedy.
 */
const HASH_MISMATCH = /doesn't match calculated (CRC32C|MD5)/i

/** 408, 429, 5xx, time-outs, resets and a hash mismatch are transient; other 4xx are permanent. */
export function classifyGcsError(err: unknown): unknown {
  if (statusOf(err) === 400 && HASH_MISMATCH.test(errorMessage(err))) return err
  return classifyGoogleError(err, 'Cloud Storage')
}

/** The bucket named by LOG_BUCKET, not yet checked (see checkBucket). */
export function bucketOf(google: GoogleAccess): Bucket {
  const storage = new Storage({
    ...google.auth,
    ...(google.storageEndpoint ? { apiEndpoint: google.storageEndpoint } : {}),
    // sidelog's retry layer owns timing and deadlines; the client's own retries (up to 600 s) would hide them.
    retryOptions: { autoRetry: false, maxRetries: 0 },
    // For any validation the client does itself (downloads): crc32c.ts's, not its own byte-at-a-time CRC32C.
    crc32cGenerator: () => new Crc32c(),
  })
  return storage.bucket(google.bucket)
}

/**
 * Looks the bucket up: a missing bucket or no permission throws a ConfigError (start-up stops); an unreachable
 * Cloud Storage throws the client's error, which the caller treats as passing.
 */
export async function checkBucket(bucket: Bucket): Promise<void> {
  try {
    await bucket.getMetadata()
  } catch (err) {
    const classified = classifyGcsError(err)
    if (!(classified instanceof PermanentError)) throw err
    const hint =
      statusOf(err) === 403
        ? ' (the service account needs storage.buckets.get on it, e.g. Storage Legacy Bucket Reader, besides Storage Object Creator)'
        : ''
    throw new ConfigError(
      `LOG_BUCKET=${bucket.name}: the bucket cannot be used: ${errorMessage(classified)}${hint}`,
    )
  }
}

export interface SaveOptions {
  readonly resumableThreshold: number
  readonly contentEncoding?: 'gzip'
}

/**
 * Creates the object `name` unless it exists, and never overwrites it: a retry of a batch whose earlier attempt
 * landed answers 412, which only this batch can cause (its name is its own), so it counts as stored. That holds only
 * if no damaged object can ever land under the name, so the upload carries the CRC32C of its bytes and Cloud Storage
 * checks it before it creates the object: damaged bytes are refused (400, retried), never stored. (The client's own
 * validation checks after the object exists, and deletes it on a mismatch; without permission to delete, which
 * Storage Object Creator does not give, the damaged object stayed and the retry's 412 counted it as stored.) Throws a
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
      metadata: {
        ...(options.contentEncoding ? { contentEncoding: options.contentEncoding } : {}),
        // The CRC32C (crc32c.ts: native for an upload from 256 KiB, else WebAssembly) costs a twentieth of what the
        // client's MD5 did (22% of the main thread).
        crc32c: crc32cOf(data),
      },
      // Cloud Storage checks the hash above; the client hashing the stream again would only check it after the fact.
      validation: false,
    })
  } catch (err) {
    if (statusOf(err) === 412) return
    throw classifyGcsError(err)
  }
}
