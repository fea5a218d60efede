// File sink: each batch becomes one JSONL file under DATA_DIR, laid out as the Cloud Storage sink lays out objects.
import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { ConfigError, errorMessage } from '../errors.js'
import { classifyFsError, createDirCache, writeFileAtomic } from './atomic-file.js'
import { encodeJsonl, objectName } from './jsonl.js'
import type { Sink, SinkFactory } from './sink.js'

export const LOGS_PREFIX = 'logs/'

export const createFileSink: SinkFactory = async ({ config }) => {
  const root = resolve(config.DATA_DIR)
  try {
    await mkdir(join(root, LOGS_PREFIX), { recursive: true })
  } catch (err) {
    throw new ConfigError(
      `DATA_DIR=${config.DATA_DIR}: cannot create ${root}/${LOGS_PREFIX}: ${errorMessage(err)}`,
    )
  }
  const dirs = createDirCache()
  const sink: Sink = {
    name: 'file',
    async write(batch, { signal }) {
      try {
        await writeFileAtomic(join(root, objectName(batch, LOGS_PREFIX)), encodeJsonl(batch.events), {
          signal,
          dirs,
        })
      } catch (err) {
        throw classifyFsError(err)
      }
    },
    async close() {},
  }
  return sink
}
