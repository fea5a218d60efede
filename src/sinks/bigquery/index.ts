// The bigquery sink's module: rows in a BigQuery table, streamed (insertAll, insertId = event_id) or, in load mode,
// staged as objects in LOG_BUCKET and loaded by free load jobs.
import { defineSink } from '../sink.js'
import { bigquerySettings, LOAD_BATCH, STREAM_BATCH } from './settings.js'

export const bigquerySink = defineSink({
  kind: 'bigquery',
  summary:
    'Rows in BQ_DATASET.BQ_TABLE: streamed with insertAll (insertId = event_id, so BigQuery drops a re-sent row), or staged in LOG_BUCKET and loaded by load jobs whose id is derived from their objects.',
  batchPrefix: 'BQ',
  settings: bigquerySettings,
  batching: (settings) => (settings.BQ_MODE === 'load' ? LOAD_BATCH : STREAM_BATCH),
  check(settings, shared) {
    const problems: string[] = []
    if (!settings.BQ_DATASET || !settings.BQ_TABLE) {
      problems.push('SINKS includes bigquery, so BQ_DATASET and BQ_TABLE must be set')
    }
    if (settings.BQ_ENDPOINT && !settings.BQ_PROJECT) {
      problems.push(
        'BQ_ENDPOINT is set, so BQ_PROJECT must be too: an emulator has no credentials to take it from',
      )
    }
    if (settings.BQ_MODE === 'load' && !shared.google.bucket) {
      problems.push(
        'BQ_MODE is load, so LOG_BUCKET (or GCS_BUCKET) must name the bucket that stages the loads',
      )
    }
    return problems
  },
  async create(context) {
    const { tableOf } = await import('./table.js')
    const table = tableOf(context.settings, context.shared, context.logger)
    if (context.settings.BQ_MODE === 'load') {
      return (await import('./load/sink.js')).createLoadSink(context, table)
    }
    return (await import('./stream.js')).createStreamSink(table)
  },
})
