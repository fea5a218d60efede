// The bigquery sink's own settings (credentials, and load mode's bucket, are Google settings, in src/google/).
import { Type } from '@sinclair/typebox'
import { PROJECT_ACCEPTS, PROJECT_PATTERN } from '../../google/settings.js'
import { batchSettings } from '../../pipeline/batching.js'
import { seconds } from '../../settings/fields.js'
import type { BatchDefaults, SettingsOf } from '../sink.js'

/** insertAll takes 500 rows per request (10 MB at most). */
export const STREAM_BATCH: BatchDefaults = { events: 500, bytes: 5 * 1024 ** 2, seconds: 5 }
/** Load mode stages objects, which read and bill like the gcs sink's. */
export const LOAD_BATCH: BatchDefaults = { events: 100_000, bytes: 4 * 1024 ** 2, seconds: 30 }

export const bigquerySettings = {
  BQ_PROJECT: Type.String({
    default: '',
    pattern: PROJECT_PATTERN,
    description: "Project of the bigquery sink's dataset (default: the credentials' project).",
    accepts: PROJECT_ACCEPTS,
  }),
  BQ_DATASET: Type.String({
    default: '',
    pattern: '^[A-Za-z0-9_]{0,1024}$',
    description: 'Dataset of the bigquery sink.',
    accepts: 'a dataset id: letters, digits and underscores',
  }),
  BQ_TABLE: Type.String({
    default: '',
    pattern: '^[A-Za-z0-9_-]{0,1024}$',
    description:
      'Table of the bigquery sink; created with the default schema when missing and BQ_CREATE is true.',
    accepts: 'a table id: letters, digits, underscores and dashes',
  }),
  BQ_CREATE: Type.Boolean({
    default: true,
    description: 'Create the dataset and table at start-up when they are missing.',
    accepts: 'true or false',
  }),
  BQ_MODE: Type.Union([Type.Literal('stream'), Type.Literal('load')], {
    default: 'stream',
    description:
      'stream: tabledata.insertAll with insertId = event_id (billed per GB). load: batches are staged as objects in LOG_BUCKET and loaded with free load jobs every BQ_LOAD_INTERVAL.',
    accepts: 'stream or load',
  }),
  BQ_LOAD_INTERVAL: seconds(
    60,
    86_400,
    'Load mode: how often the staged objects are loaded, all in one job. Each busy instance makes up to 86400 / BQ_LOAD_INTERVAL jobs a day, and a table takes about 1,500.',
  ),
  BQ_LOAD_PREFIX: Type.String({
    default: 'bigquery-load/',
    pattern: '^[^/].*/$',
    description:
      'Load mode: prefix of the staged objects in LOG_BUCKET (row-shaped JSONL, kept after loading: give it a lifecycle rule).',
    accepts: 'a prefix ending in / that does not start with /, e.g. bigquery-load/',
  }),
  BQ_ENDPOINT: Type.String({
    default: '',
    pattern: '^(https?://[^\\s/]+)?$',
    description:
      'BigQuery API endpoint, for an emulator such as bigquery-emulator; sidelog then sends a placeholder token.',
    accepts: 'an http(s) URL without a path, e.g. http://127.0.0.1:9050',
  }),
  ...batchSettings('BQ', 'bigquery', STREAM_BATCH, { 'load mode': LOAD_BATCH }),
}

export type BigQuerySettings = SettingsOf<typeof bigquerySettings>
