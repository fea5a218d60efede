// The dead-letter store: entries a sink could not take, one JSONL file per failed batch, each line carrying the
// reason and the original enriched entry (re-POST `.entry` to replay it with the same event_id).
import { join, resolve } from 'node:path'
import type { Batch, LogEvent } from '../event.js'
import { writeFileAtomic } from './atomic-file.js'
import { objectName } from './jsonl.js'

export interface DeadLetterRecord {
  readonly sink: string
  readonly reason: string
  readonly attempts: number
}

export interface DeadLetterStore {
  readonly dir: string
  /** Writes the events with the reason; rejects if the store itself cannot be written. */
  write(batch: Batch, events: readonly LogEvent[], record: DeadLetterRecord): Promise<string>
}

export function createDeadLetterStore(dir: string): DeadLetterStore {
  const root = resolve(dir)
  // Numbered per write so that two records for one batch (say, rows rejected at different times) never collide.
  let written = 0
  return {
    dir: root,
    async write(batch, events, { sink, reason, attempts }) {
      const head = `{"dead_lettered_at":${JSON.stringify(new Date().toISOString())},"sink":${JSON.stringify(sink)},"reason":${JSON.stringify(reason)},"attempts":${attempts},"entry":`
      let data = ''
      for (const event of events) data += `${head}${event.line}}\n`
      const path = join(root, objectName(batch, `${sink}/`, `.${++written}.jsonl`))
      await writeFileAtomic(path, data)
      return path
    },
  }
}
