// The dead-letter stores DEAD_LETTER names, tried in order: a write that one store cannot take (an error, or a network
// write out of time) goes to the next, so each entry lands in one store. Built and checked at start-up.
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import { ConfigError } from '../errors.js'
import { googleAccess } from '../google/settings.js'
import { createDeadLetterStore, type DeadLetterStore } from './dead-letter.js'
import { createStderrDeadLetterStore, type LineWriter } from './dead-letter-stderr.js'
import { withTimeout } from './timing.js'

export interface DeadLetterContext {
  readonly logger: Logger
  readonly instanceId: string
  /** Where the stderr store writes; the process's stderr unless a test gives its own. */
  readonly stderr?: LineWriter
}

/** Tries `stores` in order for each write; throws only when every one of them failed. */
export function chainDeadLetterStores(stores: readonly DeadLetterStore[], logger: Logger): DeadLetterStore {
  const [only] = stores
  if (stores.length === 1 && only) return only
  const each = async <T>(attempt: (store: DeadLetterStore) => Promise<T>, sink: string): Promise<T> => {
    let lastError: unknown
    for (const [i, store] of stores.entries()) {
      try {
        return await attempt(store)
      } catch (err) {
        lastError = err
        const next = stores[i + 1]
        if (next) {
          logger.warn(
            { err, sink, store: store.destination, next: next.destination },
            'dead-letter store failed; writing to the next one',
          )
        }
      }
    }
    throw lastError
  }
  return {
    destination: stores.map((store) => store.destination).join(', then '),
    async open() {
      await Promise.all(stores.map((store) => store.open()))
    },
    write(batch, items, record) {
      return each((store) => store.write(batch, items, record), record.sink)
    },
    writeNow(batch, items, record) {
      let lastError: unknown
      for (const store of stores) {
        try {
          return store.writeNow(batch, items, record)
        } catch (err) {
          lastError = err
        }
      }
      throw lastError
    },
    beginShutdown(deadlineAt) {
      for (const store of stores) store.beginShutdown?.(deadlineAt)
    },
  }
}

/**
 * The stores DEAD_LETTER lists, opened: the directory is made and cleaned, the bucket looked up (a missing bucket or
 * no permission stops start-up, as for the gcs sink; an unreachable one is tried at each write).
 */
export async function openDeadLetterStore(
  config: Config,
  context: DeadLetterContext,
): Promise<DeadLetterStore> {
  const { logger } = context
  const stores: DeadLetterStore[] = []
  const google = googleAccess(config)
  const timeoutMs = config.SINK_TIMEOUT * 1000
  for (const kind of config.DEAD_LETTER) {
    if (kind === 'dir') stores.push(createDeadLetterStore(config.DEAD_LETTER_DIR))
    if (kind === 'stderr') stores.push(createStderrDeadLetterStore(context.stderr))
    if (kind === 'gcs') {
      // Loaded only for DEAD_LETTER=gcs: the Cloud Storage client is about 25 MiB a sidelog writing files should not pay.
      const { bucketOf, checkBucket } = await import('../google/storage.js')
      const { createGcsDeadLetterStore } = await import('./dead-letter-gcs.js')
      const bucket = bucketOf(google)
      try {
        await withTimeout(checkBucket(bucket), timeoutMs, `no answer within ${config.SINK_TIMEOUT} s`)
      } catch (err) {
        if (err instanceof ConfigError) throw err
        logger.warn(
          { bucket: bucket.name, err },
          'dead-letter bucket unverified at start-up; writes will try it',
        )
      }
      stores.push(
        createGcsDeadLetterStore({
          bucket,
          prefix: config.DEAD_LETTER_GCS_PREFIX,
          instanceId: context.instanceId,
          timeoutMs,
          resumableThreshold: google.resumableThreshold,
        }),
      )
    }
  }
  // Cloud Storage cannot be written synchronously: the last resort before a hard exit needs a store after it.
  if (config.DEAD_LETTER.at(-1) === 'gcs') stores.push(createStderrDeadLetterStore(context.stderr))
  const store = chainDeadLetterStores(stores, logger)
  await store.open()
  logger.info(
    {
      dead_letter: store.destination,
      ...(config.DEAD_LETTER.includes('gcs') ? { bucket: google.bucket } : {}),
    },
    `dead letters go to ${store.destination}`,
  )
  return store
}
