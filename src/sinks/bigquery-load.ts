// BigQuery load mode: no streaming cost. Each batch is staged as one row-shaped JSONL object in LOG_BUCKET (created
// with ifGenerationMatch=0 under its batch's name, as the gcs sink does), and every BQ_LOAD_INTERVAL the objects
// staged since the last load go into one load job. The job id is derived from its object names, and the assignment
// is journaled before the job is submitted, so re-submitting it (after a lost answer, or after a restart) answers
// 409 and is followed instead of loading twice. A failed job's objects are recorded for re-load with its error.
//
// A batch counts as delivered once its object is staged: the entries are then durable in Cloud Storage. The
// journal (<DATA_DIR>/bigquery-load.journal) carries what is staged but not yet loaded across a restart on the same
// DATA_DIR; on shutdown the last objects are submitted in one final job without waiting for it to finish.
import { createHash } from 'node:crypto'
import { join, resolve } from 'node:path'
import type { JobMetadata } from '@google-cloud/bigquery'
import type { Logger } from 'pino'
import { fullJitter, retryAfterOf, sleep, timedOut } from '../delivery/timing.js'
import { errorMessage, PermanentError } from '../errors.js'
import { writeFileAtomic } from '../storage/atomic-file.js'
import { JournalFile } from '../storage/journal-file.js'
import { type TableHandle, toRow } from './bigquery-table.js'
import { createObject, openBucket } from './gcs.js'
import { classifyGoogleError, statusOf, TRANSIENT_REASONS } from './google-errors.js'
import { objectName } from './jsonl.js'
import type { Sink, SinkContext } from './sink.js'

/** BigQuery takes at most 10,000 source URIs per load job. */
const MAX_URIS_PER_JOB = 10_000
/** A job that fails for a passing reason (backendError, ...) is submitted again as a new job, this often in all. */
const MAX_JOB_ATTEMPTS = 5
const FIRST_POLL_MS = 500
const MAX_POLL_MS = 10_000
/** At shutdown: how long the final job submission (and the jobs already being followed) may take. */
const CLOSE_BUDGET_MS = 2_000

export interface LoadJob {
  readonly id: string
  /** Object names in the staging bucket. */
  readonly objects: readonly string[]
  readonly attempt: number
}

type JournalRecord =
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

type LoadState = {
  unassigned: readonly string[]
  jobs: readonly LoadJob[]
  /** Objects whose jobs ended lately, with when. */
  recent: ReadonlyMap<string, number>
}

/** Load mode's journal: fsynced per record, compacted to the live state at start-up and after every load cycle. */
class LoadJournal {
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

interface LoaderOptions {
  /** The table: jobs are submitted once it is open (a write opens it first, so a staged object implies it). */
  readonly table: TableHandle
  readonly bucketName: string
  readonly journal: LoadJournal
  readonly deadLetterDir: string
  readonly intervalMs: number
  readonly initialBackoffMs: number
  readonly maxBackoffMs: number
  /** How long after its load an object name is remembered, to ignore a late second staging of its batch. */
  readonly rememberMs: number
  readonly logger: Logger
}

/** Owns the staged objects from staging to a finished load job. */
class Loader {
  private readonly unassigned = new Set<string>()
  private readonly running = new Map<string, LoadJob>()
  /** The objects of the running jobs. */
  private readonly assigned = new Set<string>()
  private readonly runs = new Set<Promise<void>>()
  /** Objects loaded (or recorded as failed) lately, by when: see `rememberMs`. */
  private readonly recent = new Map<string, number>()
  private readonly closing = new AbortController()
  private timer: NodeJS.Timeout | undefined
  readonly stats = { staged_objects: 0, loaded_jobs: 0, failed_jobs: 0, loaded_rows: 0 }

  constructor(private readonly options: LoaderOptions) {}

  start(recovered: LoadState): void {
    for (const [name, at] of recovered.recent) this.recent.set(name, at)
    for (const name of recovered.unassigned) this.unassigned.add(name)
    for (const job of recovered.jobs) this.follow(job)
    if (recovered.unassigned.length + recovered.jobs.length > 0) {
      this.options.logger.info(
        { staged_objects: recovered.unassigned.length, jobs: recovered.jobs.map((j) => j.id) },
        'bigquery load: resuming what an earlier process left in the journal',
      )
    }
    this.timer = setInterval(() => this.cycle(), this.options.intervalMs)
    this.timer.unref()
  }

  get pendingObjects(): number {
    return this.unassigned.size + this.assigned.size
  }

  /**
   * Takes a freshly staged object. A batch is staged once (the sink skips a write abandoned by the retry layer), but
   * a write that finished just after its attempt timed out is followed by a retry that finds the object (412):
   * that second staging of the same name is ignored here.
   */
  async stage(name: string): Promise<void> {
    if (this.unassigned.has(name) || this.assigned.has(name) || this.recent.has(name)) return
    this.unassigned.add(name)
    this.stats.staged_objects++
    await this.options.journal.append({ staged: name }).catch((err: unknown) => {
      this.options.logger.error(
        { object: name, err },
        'load journal: could not record a staged object (it is loaded anyway unless the process dies first)',
      )
    })
  }

  /** Puts every staged object into a job now, and resolves when every job has ended (or the loader closes). */
  async flush(): Promise<void> {
    this.cycle()
    while (this.runs.size > 0) await Promise.all(this.runs)
  }

  /** One load cycle: every staged object into jobs of at most MAX_URIS_PER_JOB, then a compacted journal. */
  private cycle(): void {
    const now = Date.now()
    for (const [name, at] of this.recent) if (now - at > this.options.rememberMs) this.recent.delete(name)
    const names = [...this.unassigned]
    this.unassigned.clear()
    for (let i = 0; i < names.length; i += MAX_URIS_PER_JOB) {
      const objects = names.slice(i, i + MAX_URIS_PER_JOB)
      this.assign({ id: loadJobId(objects, 1), objects, attempt: 1 })
    }
    this.options.journal
      .compact({ unassigned: [...this.unassigned], jobs: [...this.running.values()], recent: this.recent })
      .catch((err: unknown) => this.options.logger.error({ err }, 'load journal: compaction failed'))
  }

  /** Journals the job's objects before it is submitted: whoever re-submits it uses the same id. */
  private assign(job: LoadJob): void {
    // Only after a crash between journaling a retry and ending its predecessor can the same job come twice.
    if (this.running.has(job.id)) return
    const journaled = this.options.journal
      .append({ job: job.id, objects: job.objects, attempt: job.attempt })
      .catch((err: unknown) =>
        this.options.logger.error({ job: job.id, err }, 'load journal: job not recorded'),
      )
    this.follow(job, journaled)
  }

  private follow(job: LoadJob, after: Promise<unknown> = Promise.resolve()): void {
    this.running.set(job.id, job)
    for (const name of job.objects) this.assigned.add(name)
    const run = after.then(() => this.run(job))
    this.runs.add(run)
    void run.finally(() => this.runs.delete(run))
  }

  /** Submits the job (or finds it submitted), waits until it is done, and ends it. Stops quietly on close. */
  private async run(job: LoadJob): Promise<void> {
    const { logger } = this.options
    let submitted: JobMetadata | undefined
    let submissions = 0
    while (submitted === undefined) {
      if (this.closing.signal.aborted) return
      try {
        submitted = await this.submit(job)
      } catch (err) {
        const classified = classifyGoogleError(err, 'BigQuery')
        if (classified instanceof PermanentError) return this.end(job, 'failed', errorMessage(classified))
        logger.warn({ job: job.id, err }, 'bigquery load: job submission failed; retrying')
        submissions++
        const wait = fullJitter(submissions, this.options.initialBackoffMs, this.options.maxBackoffMs)
        if (!(await sleep(Math.max(wait, retryAfterOf(err) ?? 0), this.closing.signal))) return
      }
    }
    let metadata: JobMetadata = submitted
    let poll = FIRST_POLL_MS
    while (metadata.status?.state !== 'DONE') {
      if (!(await sleep(poll, this.closing.signal))) return
      poll = Math.min(MAX_POLL_MS, poll * 2)
      try {
        ;[metadata] = await (await this.options.table.get()).bigquery
          .job(job.id, this.jobLocation())
          .getMetadata()
      } catch (err) {
        const classified = classifyGoogleError(err, 'BigQuery')
        if (classified instanceof PermanentError) return this.end(job, 'failed', errorMessage(classified))
        logger.warn({ job: job.id, err }, 'bigquery load: job status unknown; asking again')
      }
    }
    const failure = metadata.status.errorResult
    if (!failure) {
      this.stats.loaded_rows += Number(metadata.statistics?.load?.outputRows ?? 0)
      return this.end(job, 'loaded')
    }
    const reason = `${failure.reason ?? 'error'}: ${failure.message ?? ''}`
    if (TRANSIENT_REASONS.has(failure.reason ?? '') && job.attempt < MAX_JOB_ATTEMPTS) {
      logger.warn(
        { job: job.id, attempt: job.attempt, reason },
        'bigquery load: job failed; submitting it again',
      )
      // Closing during the wait leaves this job in the journal: the next start finds it failed and goes on from here.
      const wait = fullJitter(job.attempt, this.options.initialBackoffMs, this.options.maxBackoffMs)
      if (!(await sleep(wait, this.closing.signal))) return
      const next = job.attempt + 1
      // The new job is journaled before the old one ends, so the objects are never in neither.
      this.assign({ id: loadJobId(job.objects, next), objects: job.objects, attempt: next })
      return this.end(job, 'retried')
    }
    const details = (metadata.status.errors ?? []).map((e) => `${e.reason}: ${e.message}`)
    return this.end(job, 'failed', [reason, ...details.slice(0, 5)].join('; '))
  }

  private async submit(job: LoadJob): Promise<JobMetadata> {
    const { bigquery, table, location } = await this.options.table.get()
    try {
      const [, response] = await bigquery.createJob({
        jobId: job.id,
        ...(location ? { location } : {}),
        configuration: {
          load: {
            destinationTable: {
              projectId: table.dataset.projectId,
              datasetId: table.dataset.id,
              tableId: table.id,
            },
            sourceUris: job.objects.map((name) => `gs://${this.options.bucketName}/${name}`),
            // The client would guess the format from the extension, and does not know .jsonl (CSV is the default).
            sourceFormat: 'NEWLINE_DELIMITED_JSON',
            writeDisposition: 'WRITE_APPEND',
            createDisposition: 'CREATE_NEVER',
          },
        },
      })
      return response as JobMetadata
    } catch (err) {
      // The client throws for a job created but already finished with errors; its answer is the job.
      const answer = (err as { response?: JobMetadata }).response
      if (answer?.status?.state) return answer
      // An earlier submission of this very job landed (its answer was lost, or a restart re-submits it): follow it.
      if (statusOf(err) === 409) {
        const [metadata] = await bigquery.job(job.id, this.jobLocation()).getMetadata()
        return metadata
      }
      throw err
    }
  }

  private jobLocation(): { location?: string } {
    const location = this.options.table.current?.location
    return location ? { location } : {}
  }

  /** A failed job's objects are recorded (with its error) before the journal forgets the job. */
  private async end(job: LoadJob, outcome: 'loaded' | 'failed' | 'retried', error?: string): Promise<void> {
    if (outcome === 'failed') {
      this.stats.failed_jobs++
      await this.recordFailure(job, error ?? 'unknown error')
    }
    if (outcome === 'loaded') this.stats.loaded_jobs++
    this.running.delete(job.id)
    // A retried job's objects already belong to its successor.
    if (outcome !== 'retried') {
      const now = Date.now()
      for (const name of job.objects) {
        this.assigned.delete(name)
        this.recent.set(name, now)
      }
    }
    await this.options.journal.append({ ended: job.id, outcome, at: Date.now() }).catch((err: unknown) => {
      this.options.logger.error({ job: job.id, err }, 'load journal: job end not recorded')
    })
  }

  private async recordFailure(job: LoadJob, error: string): Promise<void> {
    const { table, bucketName, deadLetterDir, logger } = this.options
    const uris = job.objects.map((name) => `gs://${bucketName}/${name}`)
    const opened = table.current?.table
    const destination = opened ? `${opened.dataset.id}.${opened.id}` : '(the table)'
    const path = join(deadLetterDir, 'bigquery-load', `${job.id}.json`)
    const record = {
      failed_at: new Date().toISOString(),
      job_id: job.id,
      table: destination,
      error,
      source_uris: uris,
      reload: `bq load --source_format=NEWLINE_DELIMITED_JSON ${destination} ${uris.join(',')}`,
    }
    try {
      await writeFileAtomic(path, `${JSON.stringify(record, null, 2)}\n`)
      logger.error({ job: job.id, error, objects: uris.length, record: path }, 'bigquery load job failed')
    } catch (err) {
      logger.fatal({ ...record, err }, 'bigquery load job failed and could not be recorded')
    }
  }

  /**
   * Submits what is staged as one last job and gives it, and the jobs being followed, CLOSE_BUDGET_MS; whatever
   * has not ended stays in the journal for the next start on this DATA_DIR (and its objects in the bucket).
   */
  async close(): Promise<void> {
    clearInterval(this.timer)
    this.cycle()
    const settled = Promise.all(this.runs)
    await timedOut(settled, CLOSE_BUDGET_MS)
    this.closing.abort()
    await timedOut(settled, 100)
    if (this.running.size > 0) {
      this.options.logger.warn(
        { jobs: [...this.running.keys()], objects: this.pendingObjects },
        'bigquery load: jobs not seen to finish before shutdown; the journal keeps them for the next start',
      )
    }
    await this.options.journal.close()
  }
}

export async function createLoadSink(
  { config, logger }: SinkContext,
  table: TableHandle,
  tableStartupError: Error | undefined,
): Promise<Sink> {
  const { bucket, startupError: bucketStartupError } = await openBucket(config, logger)
  const startupError = tableStartupError ?? bucketStartupError
  const journal = new LoadJournal(resolve(config.DATA_DIR, 'bigquery-load.journal'), logger)
  const rememberMs = (config.RETRY_MAX_ELAPSED + config.SINK_TIMEOUT) * 1000
  const recovered = await journal.recover(rememberMs)
  const loader = new Loader({
    table,
    bucketName: bucket.name,
    journal,
    deadLetterDir: resolve(config.DEAD_LETTER_DIR),
    intervalMs: config.BQ_LOAD_INTERVAL * 1000,
    initialBackoffMs: config.RETRY_INITIAL_BACKOFF * 1000,
    maxBackoffMs: config.RETRY_MAX_BACKOFF * 1000,
    rememberMs,
    logger,
  })
  loader.start(recovered)
  let droppedFields = 0

  return {
    name: 'bigquery',
    ...(startupError ? { startupError } : {}),
    stats: () => ({
      dropped_fields: droppedFields,
      ...loader.stats,
      pending_objects: loader.pendingObjects,
    }),
    async write(batch, { signal }) {
      const opened = await table.get()
      let data = ''
      let dropped = 0
      for (const event of batch.events) {
        const shaped = toRow(JSON.parse(event.line) as Record<string, unknown>, opened.plan, 'value')
        data += `${JSON.stringify(shaped.row)}\n`
        dropped += shaped.dropped
      }
      const name = objectName(batch, config.BQ_LOAD_PREFIX)
      await createObject(bucket, name, Buffer.from(data), {
        resumableThreshold: config.GCS_RESUMABLE_THRESHOLD,
      })
      // An attempt the retry layer has given up on is retried (and staged then) or dead-lettered: staging it here
      // too would load its entries twice.
      signal.throwIfAborted()
      droppedFields += dropped
      await loader.stage(name)
    },
    flush: () => loader.flush(),
    close: () => loader.close(),
  }
}
