// An append-only JSONL journal for state that must outlive the process (load mode's jobs, the spool's batches):
// records are appended in call order, synced or not; read back at start-up past a torn last line; and compacted by
// rewriting the file atomically to the live state, after which appends go on.
import { type FileHandle, open, readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import { removeStaleTempBeside, writeFileAtomic } from './atomic-file.js'
import { fsyncDir, writeAll } from './fsync.js'

export class JournalFile<Record> {
  private handle: FileHandle | undefined
  private tail: Promise<unknown> = Promise.resolve()
  /** Records appended since the last rewrite: what compaction would save. */
  appendedSinceRewrite = 0
  /** The journal's length after its last whole record: a failed append is cut back to it. */
  private size = 0

  constructor(
    readonly path: string,
    private readonly logger: Logger,
  ) {}

  /** The records an earlier process left, in order. A line that does not parse (cut short by a crash) is skipped. */
  async read(): Promise<Record[]> {
    // A crash between a rewrite's temp file and its rename leaves the temp file: the journal itself is intact.
    await removeStaleTempBeside(this.path)
    let text = ''
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    const records: Record[] = []
    let offset = 0
    for (const line of text.split('\n')) {
      const at = offset
      offset += Buffer.byteLength(line) + 1
      if (line === '') continue
      try {
        records.push(JSON.parse(line) as Record)
      } catch {
        // Only a crash mid-append leaves one, and only as the last line: that record never took effect.
        this.logger.warn({ journal: this.path, byte_offset: at }, 'journal: torn record skipped')
      }
    }
    return records
  }

  /** Appends one record after those before it; `sync` makes it durable before the promise resolves. */
  append(record: Record, sync: boolean): Promise<void> {
    return this.enqueue(async () => {
      const handle = this.handle
      if (!handle) throw new Error(`journal ${this.path} is not open`)
      const bytes = Buffer.from(`${JSON.stringify(record)}\n`)
      try {
        await writeAll(handle, bytes)
        if (sync) await handle.datasync()
      } catch (err) {
        // Part of the line may be written (a full disk): the next record must not be glued to it, so cut it off.
        await handle
          .truncate(this.size)
          .catch((cut: unknown) =>
            this.logger.error(
              { journal: this.path, err: cut },
              'journal: a failed append could not be cut off',
            ),
          )
        throw err
      }
      this.size += bytes.length
      this.appendedSinceRewrite++
    })
  }

  /** Makes every record appended so far durable (for a journal whose appends are not synced one by one). */
  sync(): Promise<void> {
    return this.enqueue(async () => {
      await this.handle?.datasync()
    })
  }

  /** Replaces the journal with `records`, atomically, and (re)opens it for appends. */
  rewrite(records: readonly Record[]): Promise<void> {
    return this.enqueue(async () => {
      let data = ''
      for (const record of records) data += `${JSON.stringify(record)}\n`
      await this.handle?.close()
      this.handle = undefined
      try {
        await writeFileAtomic(this.path, data)
        await fsyncDir(dirname(this.path))
        this.appendedSinceRewrite = 0
      } finally {
        // Appends go on, to the rewritten journal or (when that could not be written) to the old one.
        this.handle = await open(this.path, 'a')
        this.size = (await this.handle.stat()).size
      }
    })
  }

  async close(): Promise<void> {
    await this.enqueue(async () => {
      await this.handle?.close()
      this.handle = undefined
    })
  }

  private enqueue<T>(step: () => Promise<T>): Promise<T> {
    const run = this.tail.then(step)
    this.tail = run.catch(() => {})
    return run
  }
}
