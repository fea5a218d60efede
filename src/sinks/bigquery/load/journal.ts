// Load mode's journal (<DATA_DIR>/bigquery-load.journal): what is staged but not yet loaded, which job each staged
// object went into, and what was loaded lately, carried across a restart on the same DATA_DIR. A job's id is
// derived from its objects, so a re-submitted job (after a lost answer or a restart) answers 409 and is followed.
import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import { JournalFile } from '../../../storage/journal-file.js'

export interface LoadJob {
  readonly id: string
  /** Object names in the staging bucket. */
  readonly objects: readonly string[]
  readonly attempt: number
}

export type JournalRecord =
  | { readonly staged: string }
  | { readonly job: string; readonly objects: readonly string[]; readonly attempt: number }
  | { readonly ended: string; readonly outcome: 'loaded' | 'failed' | 'retried'; readonly at?: number }
  /** An object loaded (or recorded as failed) at `at`: a later staging of the same name is ignored for a while. */
  | { readonly remembered: string; readonly at: number }

/** `sidelog_load_<sha256 of the sorted names and the attempt>`: the same objects give the same job. */
export function loadJobId(objects: readonly string[], attempt: number): string {
  const hash = createHash('sha256')
  for (const name of [...objects].sort()) hash.update(`${name}\n`)
  hash.update(`attempt ${attempt}`)
  return `sidelog_load_${hash.digest('hex').slice(0, 40)}`
}

export type LoadState = {
  unassigned: readonly string[]
  jobs: readonly LoadJob[]
  /** Objects whose jobs ended lately, with when. */
  recent: ReadonlyMap<string, number>
}

/** Load mode's journal: fsynced per record, compacted to the live state at start-up and after every load cycle. */
export class LoadJournal {
  private readonly file: JournalFile<JournalRecord>

  constructor(path: string, logger: Logger) {
    this.file = new JournalFile(path, logger)
  }

  /**
   * What an earlier process left: objects staged but in no job, jobs not known to have ended, and objects whose
   * jobs ended within `rememberMs` (a spool re-sending their batch after a crash must not load them twice).
   */
  async recover(rememberMs: number): Promise<LoadState> {
    const unassigned = new Set<string>()
    const jobs = new Map<string, LoadJob>()
    const recent = new Map<string, number>()
    for (const record of await this.file.read()) {
      if ('staged' in record) unassigned.add(record.staged)
      else if ('job' in record) {
        for (const name of record.objects) unassigned.delete(name)
        jobs.set(record.job, { id: record.job, objects: record.objects, attempt: record.attempt })
      } else if ('remembered' in record) recent.set(record.remembered, record.at)
      else {
        const job = jobs.get(record.ended)
        if (job && record.outcome !== 'retried')
          for (const name of job.objects) recent.set(name, record.at ?? Date.now())
        jobs.delete(record.ended)
      }
    }
    const now = Date.now()
    for (const [name, at] of recent) if (now - at > rememberMs) recent.delete(name)
    const state = { unassigned: [...unassigned], jobs: [...jobs.values()], recent }
    await this.compact(state)
    return state
  }

  append(record: JournalRecord): Promise<void> {
    return this.file.append(record, true)
  }

  /** Replaces the journal with just the live state, so it never grows past what is pending. */
  compact(state: LoadState): Promise<void> {
    return this.file.rewrite([
      ...[...state.recent].map(([remembered, at]) => ({ remembered, at })),
      ...state.unassigned.map((staged) => ({ staged })),
      ...state.jobs.map(({ id, objects, attempt }) => ({ job: id, objects, attempt })),
    ])
  }

  close(): Promise<void> {
    return this.file.close()
  }
}
