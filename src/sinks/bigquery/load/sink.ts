// BigQuery load mode as a sink: no streaming cost. Each batch is staged as one row-shaped JSONL object in LOG_BUCKET
// (created with ifGenerationMatch=0 under its batch's name, as the gcs sink does) and handed to the loader, which
// puts the staged objects into load jobs (loader.ts) and journals them (journal.ts). A batch counts as delivered once
// its object is staged: the entries are then durable in Cloud Storage.
import { resolve } from 'node:path'
import { ConfigError } from '../../../errors.js'
import { bucketOf, checkBucket, createObject } from '../../../google/storage.js'
import { objectName } from '../../../jsonl.js'
import type { Sink, SinkContext } from '../../sink.js'
import type { BigQuerySettings } from '../settings.js'
import { type TableHandle, toRow } from '../table.js'
import { LoadJournal } from './journal.js'
import { Loader } from './loader.js'

export async function createLoadSink(
  { settings, shared, logger }: SinkContext<BigQuerySettings>,
  table: TableHandle,
): Promise<Sink> {
  const bucket = bucketOf(shared.google)
  const journal = new LoadJournal(resolve(shared.dataDir, 'bigquery-load.journal'), logger)
  const rememberMs = shared.retry.maxElapsedMs + shared.attemptTimeoutMs
  const recovered = await journal.recover(rememberMs)
  const loader = new Loader({
    table,
    bucketName: bucket.name,
    journal,
    deadLetterDir: resolve(shared.deadLetterDir),
    intervalMs: settings.BQ_LOAD_INTERVAL * 1000,
    initialBackoffMs: shared.retry.initialBackoffMs,
    maxBackoffMs: shared.retry.maxBackoffMs,
    rememberMs,
    logger,
  })
  loader.start(recovered)
  let droppedFields = 0

  return {
    name: 'bigquery',
    async check() {
      // Both, so that a bucket that cannot be used stops start-up even while BigQuery does not answer.
      const failures = (await Promise.allSettled([table.check(), checkBucket(bucket)])).flatMap((r) =>
        r.status === 'rejected' ? [r.reason as unknown] : [],
      )
      if (failures.length > 0) throw failures.find((err) => err instanceof ConfigError) ?? failures[0]
    },
    stats: () => ({
      dropped_fields: droppedFields,
      ...loader.stats,
      pending_objects: loader.pendingObjects,
    }),
    async write(batch, { signal }) {
      const opened = await table.get()
      let data = ''
      let dropped = 0
      for (const event of batch.events) {
        const shaped = toRow(JSON.parse(event.line) as Record<string, unknown>, opened.plan, 'value')
        data += `${JSON.stringify(shaped.row)}\n`
        dropped += shaped.dropped
      }
      const name = objectName(batch, settings.BQ_LOAD_PREFIX)
      await createObject(bucket, name, Buffer.from(data), {
        resumableThreshold: shared.google.resumableThreshold,
      })
      // An attempt the retry layer has given up on is retried (and staged then) or dead-lettered: staging it here
      // too would load its entries twice.
      signal.throwIfAborted()
      droppedFields += dropped
      await loader.stage(name)
    },
    flush: () => loader.flush(),
    close: (signal) => loader.close(signal),
  }
}
