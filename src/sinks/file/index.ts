// The file sink's module: local JSONL files under DATA_DIR, the embedded default that needs no cloud account.
import { batchSettings } from '../../pipeline/batching.js'
import { type BatchDefaults, defineSink } from '../sink.js'

/**
 * A file, an fsync and a rename per batch: a megabyte makes that a small share of the work, and is few enough bytes
 * that four writes in flight stay well inside the memory budget.
 */
const BATCH: BatchDefaults = { events: 10_000, bytes: 1024 ** 2, seconds: 5 }

export const fileSink = defineSink({
  kind: 'file',
  summary:
    'JSONL files under DATA_DIR/logs/YYYY/MM/DD/, each batch written to a temporary file, fsynced and renamed into place (a retry renames onto the same name).',
  batchPrefix: 'FILE',
  settings: batchSettings('FILE', 'file', BATCH),
  batching: () => BATCH,
  async create(context) {
    return (await import('./sink.js')).createFileSink(context)
  },
})
