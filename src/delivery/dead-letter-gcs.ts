// The Cloud Storage dead-letter store: one JSONL object per write under DEAD_LETTER_GCS_PREFIX in LOG_BUCKET, lines as
// the directory store writes them, created with ifGenerationMatch=0 as the gcs sink's objects are, so nothing is
// ever overwritten. It outlives the instance. A write is bounded (SINK_TIMEOUT, and at shutdown the deadline) and
// fails rather than hangs, so the next store in DEAD_LETTER (stderr) still gets the entries in time; it cannot write
// synchronously, so the last resort before a hard exit always goes to the next store.
import type { Bucket } from '@google-cloud/storage'
import { createObject } from '../google/storage.js'
import { objectName } from '../jsonl.js'
import { type DeadLetterStore, encodeDeadLetters } from './dead-letter.js'
import { deadlineSignal, untilAborted } from './timing.js'

export interface GcsDeadLetterOptions {
  readonly bucket: Bucket
  /** Ends in `/` (or is empty): objects are `<prefix><sink>/YYYY/MM/DD/HHMMSS-<batch>.<instance>-<n>.jsonl`. */
  readonly prefix: string
  /** This process's id: a batch re-sent after a restart is dead-lettered under a name of its own, never a 412. */
  readonly instanceId: string
  /** The longest one write may take (SINK_TIMEOUT). */
  readonly timeoutMs: number
  readonly resumableThreshold: number
  /** How long before the shutdown deadline a write gives up, to leave the next store its turn. */
  readonly shutdownMarginMs?: number
}

const DEFAULT_SHUTDOWN_MARGIN_MS = 250

export function createGcsDeadLetterStore(options: GcsDeadLetterOptions): DeadLetterStore {
  const { bucket, prefix, instanceId, timeoutMs, resumableThreshold } = options
  const margin = options.shutdownMarginMs ?? DEFAULT_SHUTDOWN_MARGIN_MS
  let written = 0
  /** Aborted when the time for network writes before the shutdown deadline has run out. */
  const shutdown = new AbortController()
  let giveUpAt = Number.POSITIVE_INFINITY

  /** `write`, or a rejection once `ms` pass or shutdown's time runs out, whichever comes first. */
  const bounded = async (write: Promise<void>, ms: number): Promise<void> => {
    const limit = deadlineSignal(
      ms,
      new Error(`Cloud Storage did not answer within ${ms} ms`),
      shutdown.signal,
    )
    try {
      await untilAborted(write, limit.signal)
    } finally {
      limit.clear()
      // A write given up on may still land later: its entries are then in two stores (a duplicate on replay, never a
      // loss). Its rejection has no one left to hear it.
      write.catch(() => {})
    }
  }

  return {
    destination: `gs://${bucket.name}/${prefix}`,
    async open() {},
    async write(batch, items, record) {
      const ms = Math.min(timeoutMs, giveUpAt - Date.now())
      if (ms <= 0 || shutdown.signal.aborted) {
        throw new Error('no time left before the shutdown deadline for a Cloud Storage write')
      }
      const name = objectName(batch, `${prefix}${record.sink}/`, `.${instanceId}-${++written}.jsonl`)
      const data = Buffer.from(encodeDeadLetters(items, record))
      await bounded(createObject(bucket, name, data, { resumableThreshold }), ms)
      return `gs://${bucket.name}/${name}`
    },
    writeNow() {
      throw new Error('Cloud Storage cannot be written synchronously')
    },
    beginShutdown(deadlineAt) {
      giveUpAt = Math.min(giveUpAt, deadlineAt - margin)
      const timer = setTimeout(
        () => shutdown.abort(new Error('Cloud Storage did not answer before the shutdown deadline')),
        Math.max(0, giveUpAt - Date.now()),
      )
      timer.unref()
    },
  }
}
