// The idempotency store's journal under SPOOL_DIR: one line per answer kept, appended before the answer is sent and
// synced as the spool is (SPOOL_FSYNC), read back at start-up and rewritten down to the keys still inside the window.
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { FsyncPolicy } from '../../spool/segment-log.js'
import { JournalFile } from '../../storage/journal-file.js'
import type { Answer, Kept } from './store.js'

/** The journal's file name under SPOOL_DIR. */
export const JOURNAL_NAME = 'idempotency.journal'

const FSYNC_INTERVAL_MS = 1000

type JournalLine = { readonly k: string; readonly f: string; readonly t: number } & (
  | { readonly s: 202; readonly a: number }
  | { readonly s: 500; readonly m: string }
)

function lineOf(key: string, { fingerprint: f, answer, at: t }: Kept): JournalLine {
  return answer.status === 202
    ? { k: key, f, t, s: 202, a: answer.accepted }
    : { k: key, f, t, s: 500, m: answer.message }
}

export class KeyJournal {
  private timer: NodeJS.Timeout | undefined
  private unsynced = false

  private constructor(
    private readonly file: JournalFile<JournalLine>,
    private readonly fsync: FsyncPolicy,
    private readonly logger: Logger,
  ) {
    if (fsync === 'interval') {
      this.timer = setInterval(() => void this.syncIfNeeded(), FSYNC_INTERVAL_MS)
      this.timer.unref()
    }
  }

  /** Opens the journal in `dir`, with the answers the last run kept, oldest first. */
  static async open(
    dir: string,
    fsync: FsyncPolicy,
    logger: Logger,
  ): Promise<{ journal: KeyJournal; kept: [string, Kept][] }> {
    await mkdir(dir, { recursive: true })
    const file = new JournalFile<JournalLine>(join(dir, JOURNAL_NAME), logger)
    const kept = (await file.read()).map((line): [string, Kept] => {
      const answer: Answer =
        line.s === 202 ? { status: 202, accepted: line.a } : { status: 500, message: line.m }
      return [line.k, { fingerprint: line.f, answer, at: line.t }]
    })
    return { journal: new KeyJournal(file, fsync, logger), kept }
  }

  /** Lines appended since the last rewrite: what a rewrite would save. */
  get appendedSinceRewrite(): number {
    return this.file.appendedSinceRewrite
  }

  /** Appends one answer; with SPOOL_FSYNC=always it is durable when this resolves. */
  async append(key: string, kept: Kept): Promise<void> {
    const sync = this.fsync === 'always'
    await this.file.append(lineOf(key, kept), sync)
    if (!sync) this.unsynced = true
  }

  /** Replaces the journal with `live`; appends go on after it. */
  rewrite(live: Iterable<[string, Kept]>): Promise<void> {
    return this.file.rewrite([...live].map(([key, kept]) => lineOf(key, kept)))
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    await this.syncIfNeeded()
    await this.file.close()
  }

  private async syncIfNeeded(): Promise<void> {
    if (!this.unsynced || this.fsync === 'never') return
    this.unsynced = false
    await this.file
      .sync()
      .catch((err: unknown) => this.logger.error({ err }, 'idempotency: journal not synced'))
  }
}
