// One sink's progress through the spool's log, journaled under SPOOL_DIR/sinks/: every entry up to `doneThrough` is
// delivered or dead-lettered, and each batch above it is recorded as sealed (name, time, first and last sequence
// number) before its first write and as done once finished, so a restart re-sends the sealed ones under their names.
import type { Logger } from 'pino'
import { errorMessage } from '../errors.js'
import type { Batch } from '../event.js'
import { JournalFile } from '../storage/journal-file.js'

/** A journal is rewritten down to its live state after this many appended lines. */
const COMPACT_EVERY = 5000

interface SealedBatch {
  readonly name: string
  readonly at: string
  readonly from: number
  readonly to: number
  done: boolean
}

type JournalLine =
  | { readonly t: number }
  | { readonly s: string; readonly at: string; readonly from: number; readonly to: number }
  | { readonly d: string }

/** One sink's progress through the log. */
export class SinkCursor {
  /** Every entry up to here is done. */
  private through = 0
  /** Sealed batches above `through`, in sequence order. */
  private readonly sealedBatches = new Map<string, SealedBatch>()
  /** Seals asked for and not journaled yet, in the order asked. */
  private readonly held: SealedBatch[] = []
  /** The journaling of held seals in progress: one at a time. */
  private sealing: Promise<void> = Promise.resolve()
  private readonly file: JournalFile<JournalLine>

  constructor(path: string, logger: Logger) {
    this.file = new JournalFile(path, logger)
  }

  get doneThrough(): number {
    return this.through
  }

  /** Reads the journal an earlier process left (a torn last line is skipped) and compacts it. */
  async recover(): Promise<void> {
    for (const record of await this.file.read()) {
      if ('t' in record) this.through = Math.max(this.through, record.t)
      else if ('s' in record) {
        this.sealedBatches.set(record.s, {
          name: record.s,
          at: record.at,
          from: record.from,
          to: record.to,
          done: false,
        })
      } else {
        const batch = this.sealedBatches.get(record.d)
        if (batch) batch.done = true
      }
    }
    this.advance()
    await this.file.rewrite(this.liveRecords())
  }

  /** Sealed batches not done: to be re-sent as they were. */
  pendingBatches(): readonly SealedBatch[] {
    return [...this.sealedBatches.values()].filter((b) => !b.done)
  }

  /** The last sequence number any batch of this sink holds: later entries were never in a batch. */
  get lastSealed(): number {
    let last = this.through
    for (const batch of this.sealedBatches.values()) last = Math.max(last, batch.to)
    return last
  }

  /**
   * Records the batch before its first write (synced): a restart re-sends it under the same name. Batches are
   * journaled in the order they are sealed, which is sequence order: a restart reads on after the last sealed batch,
   * so a batch journaled before an earlier one that failed to be would hide that one's entries. While a seal cannot
   * be journaled, every later one is held (and rejects) too, and is written, in order, once the first can be.
   */
  async sealed(batch: Batch): Promise<void> {
    if (this.sealedBatches.has(batch.name)) return
    const range = seqRange(batch)
    if (!range) return
    if (!this.held.some((held) => held.name === batch.name)) {
      this.held.push({ name: batch.name, at: batch.openedAt.toISOString(), ...range, done: false })
    }
    const run = this.sealing.then(() => this.journalHeld())
    this.sealing = run.catch(() => {})
    try {
      await run
    } catch (err) {
      const first = this.held[0]
      if (first && first.name !== batch.name) {
        throw new Error(
          `batch ${batch.name} not journaled as sealed: batch ${first.name}, before it, could not be (${errorMessage(err)})`,
          { cause: err },
        )
      }
      throw err
    }
  }

  /** Journals the held seals from the first, stopping at the first that cannot be written. */
  private async journalHeld(): Promise<void> {
    for (let next = this.held[0]; next; next = this.held[0]) {
      await this.file.append({ s: next.name, at: next.at, from: next.from, to: next.to }, true)
      this.held.shift()
      this.sealedBatches.set(next.name, next)
    }
  }

  /** Records the batch as delivered or dead-lettered (not synced: losing it re-sends a batch that dedupes). */
  async done(batch: Batch): Promise<void> {
    const record = this.sealedBatches.get(batch.name)
    if (!record) return
    record.done = true
    this.advance()
    await this.file.append({ d: batch.name }, false)
    if (this.file.appendedSinceRewrite > COMPACT_EVERY) await this.file.rewrite(this.liveRecords())
  }

  close(): Promise<void> {
    return this.file.close()
  }

  /**
   * Moves `through` past the done batches at the front. A sink seals its batches in sequence order, so numbers
   * below the first sealed batch that no batch holds will never be in one (a failed append, a damaged segment):
   * they count as done, or the spool could never delete their segment again.
   */
  private advance(): void {
    for (const batch of [...this.sealedBatches.values()].sort((a, b) => a.from - b.from)) {
      if (batch.to > this.through) {
        if (!batch.done) break
        this.through = batch.to
      }
      this.sealedBatches.delete(batch.name)
    }
  }

  private liveRecords(): JournalLine[] {
    const records: JournalLine[] = [{ t: this.through }]
    for (const b of this.sealedBatches.values()) {
      records.push({ s: b.name, at: b.at, from: b.from, to: b.to })
      if (b.done) records.push({ d: b.name })
    }
    // Seals asked for and not journaled yet, one of them perhaps being appended right now: a rewrite without them
    // would erase a seal whose append lands just before it. Journaling them early, in order, is safe.
    for (const b of this.held) records.push({ s: b.name, at: b.at, from: b.from, to: b.to })
    return records
  }
}

function seqRange(batch: Batch): { from: number; to: number } | undefined {
  const from = batch.events[0]?.seq
  const to = batch.events.at(-1)?.seq
  return from === undefined || to === undefined ? undefined : { from, to }
}
