// The dead-letter store: entries a sink could not take, one JSONL file per write, each line carrying the reason and
// the original enriched entry (re-POST `.entry` to replay it with the same event_id). At the shutdown deadline
// everything left goes in one write per sink, and `writeNow` is the last resort before a hard exit: synchronous,
// so it finishes even when the event loop will not run again.
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { RejectedEvent } from '../errors.js'
import type { Batch } from '../event.js'
import { objectName } from '../sinks/jsonl.js'
import { makeDir, openAtomicRoot, TEMP_DIR, writeFileAtomic } from '../storage/atomic-file.js'

export interface DeadLetterRecord {
  readonly sink: string
  readonly attempts: number
}

export interface DeadLetterStore {
  readonly dir: string
  /** Removes the temp files a crashed process left; call once at start-up. Never throws. */
  open(): Promise<void>
  /** Writes one line per event, each with its own reason; rejects if the store itself cannot be written. */
  write(batch: Batch, items: readonly RejectedEvent[], record: DeadLetterRecord): Promise<string>
  /** The same, synchronously (for the moment before a hard exit); throws if the store cannot be written. */
  writeNow(batch: Batch, items: readonly RejectedEvent[], record: DeadLetterRecord): string
}

export function createDeadLetterStore(dir: string): DeadLetterStore {
  const root = resolve(dir)
  const tempDir = join(root, TEMP_DIR)
  // Numbered per write so that two records for one batch (say, rows rejected at different times) never collide.
  let written = 0
  const encode = (items: readonly RejectedEvent[], { sink, attempts }: DeadLetterRecord) => {
    const head = `{"dead_lettered_at":${JSON.stringify(new Date().toISOString())},"sink":${JSON.stringify(sink)},"attempts":${attempts},"reason":`
    let data = ''
    for (const { event, reason } of items) data += `${head}${JSON.stringify(reason)},"entry":${event.line}}\n`
    return data
  }
  const pathOf = (batch: Batch, sink: string) =>
    join(root, objectName(batch, `${sink}/`, `.${++written}.jsonl`))
  return {
    dir: root,
    async open() {
      await openAtomicRoot(root).catch(() => {})
    },
    async write(batch, items, record) {
      const path = pathOf(batch, record.sink)
      await makeDir(tempDir)
      await writeFileAtomic(path, encode(items, record), { tempDir })
      return path
    },
    writeNow(batch, items, record) {
      const path = pathOf(batch, record.sink)
      const temp = join(tempDir, `.last-resort-${process.pid}-${written}.tmp`)
      const fd = openSync(temp, 'w')
      try {
        writeSync(fd, encode(items, record))
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
      renameSync(temp, path)
      return path
    },
  }
}
