// File sink: each batch becomes one JSONL file under DATA_DIR, laid out as the Cloud Storage sink lays out objects.
import { join, resolve } from 'node:path'
import { ConfigError, errorMessage } from '../errors.js'
import { type AtomicRoot, classifyFsError, makeDir, openAtomicRoot } from '../storage/atomic-file.js'
import { encodeJsonlBuffer, objectName } from './jsonl.js'
import type { Sink, SinkFactory } from './sink.js'

export const LOGS_PREFIX = 'logs/'

export const createFileSink: SinkFactory = async ({ config }) => {
  const root = resolve(config.DATA_DIR)
  let files: AtomicRoot
  try {
    files = await openAtomicRoot(root)
    await makeDir(join(root, LOGS_PREFIX))
  } catch (err) {
    throw new ConfigError(
      `DATA_DIR=${config.DATA_DIR}: cannot create ${root}/${LOGS_PREFIX}: ${errorMessage(err)}`,
    )
  }
  const sink: Sink = {
    name: 'file',
    async write(batch, { signal }) {
      try {
        await files.write(join(root, objectName(batch, LOGS_PREFIX)), encodeJsonlBuffer(batch.events), {
          signal,
        })
      } catch (err) {
        throw classifyFsError(err)
      }
    },
    async close() {},
  }
  return sink
}
