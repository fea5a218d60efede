// The file tail input: TAIL_PATHS globs, read line by line into the pipeline, with a checkpoint per file identity
// under SPOOL_DIR (or DATA_DIR) so that a restart resumes where the last run's accepted lines end.
import { join } from 'node:path'
import { abortedFirst } from '../../delivery/timing.js'
import { defineSource } from '../source.js'
import { checkTailSettings, tailSettings } from './settings.js'

/** Name of the checkpoint file, in SPOOL_DIR if set, else DATA_DIR. */
export const CHECKPOINT_FILE = 'tail-checkpoints.json'

export const tailSource = defineSource({
  kind: 'tail',
  summary: 'Files on a shared volume (TAIL_PATHS), read line by line, through rotation and truncation.',
  settings: tailSettings,
  enabled: (settings) => settings.TAIL_PATHS.length > 0,
  check: checkTailSettings,
  async create({ settings, shared, logger, pipeline, enrich, spool }) {
    const { CheckpointStore } = await import('./checkpoints.js')
    const { Tailer } = await import('./tailer.js')
    const checkpoints = new CheckpointStore(
      join(shared.spoolDir || shared.dataDir, CHECKPOINT_FILE),
      shared.durable,
    )
    await checkpoints.check()
    const tailer = new Tailer({
      patterns: settings.TAIL_PATHS,
      maxLineBytes: settings.TAIL_MAX_LINE_BYTES,
      pollIntervalMs: settings.TAIL_POLL_INTERVAL * 1000,
      rotateWaitMs: settings.TAIL_ROTATE_WAIT * 1000,
      // A chunk is a small part of a sink's buffer, so that it fits beside what the sinks already hold.
      chunkLines: Math.max(1, Math.min(1000, Math.floor(shared.bufferMaxEvents / 8))),
      chunkBytes: Math.max(4096, Math.min(1024 ** 2, Math.floor(shared.bufferMaxBytes / 8))),
      checkpoints,
      accept: (events) => pipeline.accept(events),
      enrich,
      logger: logger.child({ source: 'tail' }),
      ...(spool ? { spool } : {}),
    })
    await tailer.load()
    return {
      kind: 'tail',
      start: () => tailer.start(),
      // The read in flight and its checkpoint finish, unless the shutdown budget ends first.
      close: async (signal) => {
        await abortedFirst(tailer.close(), signal)
      },
      stats: () => ({ ...tailer.stats(), checkpoint: checkpoints.path }),
    }
  },
})
