// The dead-letter store: entries a sink could not take, each with the reason and the original enriched entry (re-POST
// `.entry` to replay it with the same event_id). This module holds the interface, the record's shape and the local
// directory store (one JSONL file per write); dead-letter-gcs.ts and dead-letter-stderr.ts are the stores that outlive
// the instance, and dead-letters.ts chains the ones DEAD_LETTER names. At the shutdown deadline everything left goes
// in one write per sink, and `writeNow` is the last resort before a hard exit: synchronous, so it finishes even when
// the event loop will not run again.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import type { RejectedEvent } from '../errors.js'
import type { Batch } from '../event.js'
import { objectName } from '../jsonl.js'
import { makeDir, openAtomicRoot, TEMP_DIR, writeFileAtomic } from '../storage/atomic-file.js'
import { writeAllSync } from '../storage/fsync.js'

export interface DeadLetterRecord {
  readonly sink: string
  readonly attempts: number
}

export interface DeadLetterStore {
  /** Where this store writes, for logs: a directory, `gs://bucket/prefix/`, `stderr`, or a list of them. */
  readonly destination: string
  /** Removes the temp files a crashed process left; call once at start-up. Never throws. */
  open(): Promise<void>
  /** Writes one line per event, each with its own reason; rejects if the store itself cannot be written. */
  write(batch: Batch, items: readonly RejectedEvent[], record: DeadLetterRecord): Promise<string>
  /** The same, synchronously (for the moment before a hard exit); throws if the store cannot be written. */
  writeNow(batch: Batch, items: readonly RejectedEvent[], record: DeadLetterRecord): string
  /**
   * Shutdown has begun: every write, those under way included, must be over by `deadlineAt` (epoch ms). A store that
   * could take longer (a network one) gives up in time, so that the next store in the list still gets the entries.
   */
  beginShutdown?(deadlineAt: number): void
}

/** The start of one dead-letter line, up to the reason: when, which sink, after how many attempts. */
export function deadLetterHead({ sink, attempts }: DeadLetterRecord): string {
  return `"dead_lettered_at":${JSON.stringify(new Date().toISOString())},"sink":${JSON.stringify(sink)},"attempts":${attempts},"reason":`
}

/** One JSONL line per entry: `{"dead_lettered_at","sink","attempts","reason","entry"}`. */
export function encodeDeadLetters(items: readonly RejectedEvent[], record: DeadLetterRecord): string {
  const head = `{${deadLetterHead(record)}`
  let data = ''
  for (const { event, reason } of items) data += `${head}${JSON.stringify(reason)},"entry":${event.line}}\n`
  return data
}

/** The local directory store: `<dir>/<sink>/YYYY/MM/DD/HHMMSS-<batch>.<n>.jsonl`, written atomically. */
export function createDeadLetterStore(dir: string): DeadLetterStore & { readonly dir: string } {
  const root = resolve(dir)
  const tempDir = join(root, TEMP_DIR)
  // Numbered per write so that two records for one batch (say, rows rejected at different times) never collide.
  let written = 0
  const encode = encodeDeadLetters
  const pathOf = (batch: Batch, sink: string) =>
    join(root, objectName(batch, `${sink}/`, `.${++written}.jsonl`))
  return {
    dir: root,
    destination: root,
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
      // Usually no dead letter was written this day for this sink yet: the directories may not exist.
      mkdirSync(dirname(path), { recursive: true })
      mkdirSync(tempDir, { recursive: true })
      const temp = join(tempDir, `.last-resort-${process.pid}-${written}.tmp`)
      const fd = openSync(temp, 'w')
      try {
        writeAllSync(fd, Buffer.from(encode(items, record)))
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
      renameSync(temp, path)
      const dir = openSync(dirname(path), 'r')
      try {
        fsyncSync(dir)
      } finally {
        closeSync(dir)
      }
      return path
    },
  }
}
