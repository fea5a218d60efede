// Load mode's job state machine: owns the staged objects from staging to a finished load job. Every
// BQ_LOAD_INTERVAL the objects staged since the last load go into one job; the assignment is journaled
// (journal.ts) before the job is submitted, and the job is followed (polled) until it ends. A job that fails for a
// passing reason is submitted again as a new job; one that fails for good is recorded, with a command to re-load
// its objects, under DEAD_LETTER_DIR/bigquery-load/. On shutdown the last objects go into one final job, followed
// until the shutdown budget ends; what has not ended by then stays in the journal for the next start.
import { join } from 'node:path'
import type { JobMetadata } from '@google-cloud/bigquery'
import type { Logger } from 'pino'
import { abortedFirst, fullJitter, retryAfterOf, sleep, timedOut } from '../../../delivery/timing.js'
import { errorMessage, PermanentError } from '../../../errors.js'
import { classifyGoogleError, statusOf, TRANSIENT_REASONS } from '../../../google/errors.js'
import { writeFileAtomic } from '../../../storage/atomic-file.js'
import type { TableHandle } from '../table.js'
import { type LoadJob, type LoadJournal, type LoadState, loadJobId } from './journal.js'

/** BigQuery takes at most 10,000 source URIs per load job. */
const MAX_URIS_PER_JOB = 10_000
/** A job that fails for a passing reason (backendError, ...) is submitted again as a new job, this often in all. */
const MAX_JOB_ATTEMPTS = 5
const FIRST_POLL_MS = 500
const MAX_POLL_MS = 10_000
/** At shutdown, once the budget is over: how long the jobs being followed get to see that and stop. */
const STOP_MS = 100

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
export class Loader {
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
   * Submits what is staged as one last job and follows it, and the jobs already being followed, until `signal`
   * aborts (the end of the shutdown budget); whatever has not ended then stays in the journal for the next start on
   * this DATA_DIR (and its objects in the bucket).
   */
  async close(signal: AbortSignal): Promise<void> {
    clearInterval(this.timer)
    this.cycle()
    const settled = Promise.all(this.runs)
    await abortedFirst(settled, signal)
    this.closing.abort()
    await timedOut(settled, STOP_MS)
    if (this.running.size > 0) {
      this.options.logger.warn(
        { jobs: [...this.running.keys()], objects: this.pendingObjects },
        'bigquery load: jobs not seen to finish before shutdown; the journal keeps them for the next start',
      )
    }
    await this.options.journal.close()
  }
}
