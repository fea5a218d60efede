// The file tail input: TAIL_PATHS globs, read line by line into the pipeline, with a checkpoint per file identity
// under SPOOL_DIR (or DATA_DIR) so that a restart resumes where the last run's accepted lines end.
import { join } from 'node:path'
import type { SourceModule } from '../source.js'
import { CheckpointStore } from './checkpoints.js'
import { Tailer } from './tailer.js'

/** Name of the checkpoint file, in SPOOL_DIR if set, else DATA_DIR. */
export const CHECKPOINT_FILE = 'tail-checkpoints.json'

export const tailSource: SourceModule = {
  kind: 'tail',
  enabled: (config) => config.TAIL_PATHS.length > 0,
  async create({ config, logger, pipeline, enrich }) {
    const checkpoints = new CheckpointStore(
      join(config.SPOOL_DIR || config.DATA_DIR, CHECKPOINT_FILE),
      config.SPOOL_DIR !== '' && config.SPOOL_FSYNC !== 'never',
    )
    await checkpoints.check()
    const tailer = new Tailer({
      patterns: config.TAIL_PATHS,
      maxLineBytes: config.TAIL_MAX_LINE_BYTES,
      pollIntervalMs: config.TAIL_POLL_INTERVAL * 1000,
      rotateWaitMs: config.TAIL_ROTATE_WAIT * 1000,
      // A chunk is a small part of a sink's buffer, so that it fits beside what the sinks already hold.
      chunkLines: Math.max(1, Math.min(1000, Math.floor(config.BUFFER_MAX_EVENTS / 8))),
      chunkBytes: Math.max(4096, Math.min(1024 ** 2, Math.floor(config.BUFFER_MAX_BYTES / 8))),
      checkpoints,
      accept: (events) => pipeline.accept(events),
      enrich,
      logger: logger.child({ source: 'tail' }),
    })
    await tailer.load()
    return {
      kind: 'tail',
      start: () => tailer.start(),
      close: () => tailer.close(),
      stats: () => ({ ...tailer.stats(), checkpoint: checkpoints.path }),
    }
  },
}
