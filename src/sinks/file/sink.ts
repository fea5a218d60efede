// File sink: each batch becomes one JSONL file under DATA_DIR, laid out as the Cloud Storage sink lays out objects.
import { join, resolve } from 'node:path'
import { ConfigError, errorMessage } from '../../errors.js'
import { batchJsonlInto, objectName } from '../../jsonl.js'
import { type AtomicRoot, classifyFsError, makeDir, openAtomicRoot } from '../../storage/atomic-file.js'
import type { Sink, SinkContext } from '../sink.js'

export const LOGS_PREFIX = 'logs/'

export async function createFileSink({ shared }: SinkContext<unknown>): Promise<Sink> {
  const root = resolve(shared.dataDir)
  let files: AtomicRoot
  try {
    files = await openAtomicRoot(root, { offThread: true })
    await makeDir(join(root, LOGS_PREFIX))
  } catch (err) {
    throw new ConfigError(
      `DATA_DIR=${shared.dataDir}: cannot create ${root}/${LOGS_PREFIX}: ${errorMessage(err)}`,
    )
  }
  return {
    name: 'file',
    async write(batch, { signal }) {
      try {
        // Filled before the first await: the batch's memory may be reused once the batch is done (see Sink).
        await files.writeFrom(
          join(root, objectName(batch, LOGS_PREFIX)),
          batch.bytes,
          (target) => batchJsonlInto(batch, target),
          { signal },
        )
      } catch (err) {
        throw classifyFsError(err)
      }
    },
    close: () => files.close(),
  }
}
