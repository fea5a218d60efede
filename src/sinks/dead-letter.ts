// The dead-letter store: entries a sink could not take, one JSONL file per failed batch, each line carrying the
// reason and the original enriched entry (re-POST `.entry` to replay it with the same event_id).
import { join, resolve } from 'node:path'
import type { RejectedEvent } from '../errors.js'
import type { Batch } from '../event.js'
import { writeFileAtomic } from './atomic-file.js'
import { objectName } from './jsonl.js'

export interface DeadLetterRecord {
  readonly sink: string
  readonly attempts: number
}

export interface DeadLetterStore {
  readonly dir: string
  /** Writes one line per event, each with its own reason; rejects if the store itself cannot be written. */
  write(batch: Batch, items: readonly RejectedEvent[], record: DeadLetterRecord): Promise<string>
}

export function createDeadLetterStore(dir: string): DeadLetterStore {
  const root = resolve(dir)
  // Numbered per write so that two records for one batch (say, rows rejected at different times) never collide.
  let written = 0
  return {
    dir: root,
    async write(batch, items, { sink, attempts }) {
      const head = `{"dead_lettered_at":${JSON.stringify(new Date().toISOString())},"sink":${JSON.stringify(sink)},"attempts":${attempts},"reason":`
      let data = ''
      for (const { event, reason } of items)
        data += `${head}${JSON.stringify(reason)},"entry":${event.line}}\n`
      const path = join(root, objectName(batch, `${sink}/`, `.${++written}.jsonl`))
      await writeFileAtomic(path, data)
      return path
    },
  }
}
