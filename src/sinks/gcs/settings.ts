// The gcs sink's own settings (the bucket and how Cloud Storage is reached are Google settings, in src/google/).
import { Type } from '@sinclair/typebox'
import { batchSettings } from '../../pipeline/batching.js'
import type { BatchDefaults, SettingsOf } from '../sink.js'

/**
 * Cloud Storage bills per object and analytics tools read megabyte objects well: 4 MiB, or every 30 s when traffic
 * is low (2,880 objects a day per instance at a trickle).
 */
export const GCS_BATCH: BatchDefaults = { events: 100_000, bytes: 4 * 1024 ** 2, seconds: 30 }

export const gcsSettings = {
  GCS_PREFIX: Type.String({
    default: 'logs/',
    pattern: '^([^/].*/)?$',
    description: 'Object name prefix of the gcs sink.',
    accepts: 'an empty string or a prefix ending in / that does not start with /, e.g. logs/ or team/app/',
  }),
  GCS_LAYOUT: Type.Union([Type.Literal('date'), Type.Literal('hive')], {
    default: 'date',
    description:
      'Object layout under the prefix: date is YYYY/MM/DD/HHMMSS-<instance>-<seq>.jsonl; hive is dt=YYYY-MM-DD/HHMMSS-<instance>-<seq>.jsonl.',
    accepts: 'date or hive',
  }),
  GCS_COMPRESSION: Type.Union([Type.Literal('none'), Type.Literal('gzip')], {
    default: 'none',
    description: 'gzip writes .jsonl.gz objects with Content-Encoding: gzip.',
    accepts: 'none or gzip',
  }),
  ...batchSettings('GCS', 'gcs', GCS_BATCH),
}

export type GcsSettings = SettingsOf<typeof gcsSettings>
