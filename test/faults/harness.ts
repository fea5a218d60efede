// The fault suite's common parts: clients that send entries with their own event_ids and remember which ones
// sidelog acknowledged (202), and the accounting every scenario ends with: for each sink, delivered plus
// dead-lettered equals acknowledged, by event_id, with no duplicates. Durations come from the environment so
// that a longer soak can run by hand: FAULT_OUTAGE_S, FAULT_OVERLOAD_S.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { tempDir } from '../helpers.js'
import { readJsonlTree } from '../jsonl-files.js'

export const OUTAGE_S = Number(process.env.FAULT_OUTAGE_S ?? 20)
export const OVERLOAD_S = Number(process.env.FAULT_OVERLOAD_S ?? 30)

export interface ClientOptions {
  readonly url: string
  readonly clients: number
  readonly perRequest: number
  /** Ids are `<prefix>-c<client>-<n>`. */
  readonly prefix: string
  /** Clients stop starting requests once this returns true. */
  readonly stop: () => boolean
  /** Wait Retry-After after a 429/503 (a well-behaved client), or send again at once (an overload). */
  readonly backOff: boolean
  /** Told how many entries each 202 acknowledged. */
  readonly onAcknowledged?: (entries: number) => void
}

export interface ClientResult {
  /** Entries answered 202. */
  readonly acknowledged: Set<string>
  /** Entries of requests whose answer never came (the connection broke): they may or may not have been taken. */
  readonly uncertain: Set<string>
  /** Answers by status code, and how many requests failed at the socket. */
  readonly answers: Record<string, number>
  readonly requests: number
}

/**
 * Runs `clients` concurrent clients until `stop()`. A refused request is sent again with the same ids (the same
 * entries), as a client that keeps its entries would; a request is never abandoned while it could still be
 * accepted, except at stop.
 */
export async function runClients(options: ClientOptions): Promise<ClientResult> {
  const acknowledged = new Set<string>()
  const uncertain = new Set<string>()
  const answers: Record<string, number> = {}
  let requests = 0
  const count = (key: string) => {
    answers[key] = (answers[key] ?? 0) + 1
  }
  await Promise.all(
    Array.from({ length: options.clients }, async (_, client) => {
      let next = 0
      while (!options.stop()) {
        const ids = Array.from({ length: options.perRequest }, () => `${options.prefix}-c${client}-${next++}`)
        const body = ids
          .map((id, i) => JSON.stringify({ event_id: id, message: `entry ${i}`, level: 'info' }))
          .join('\n')
        for (;;) {
          requests++
          let res: Response
          try {
            res = await fetch(`${options.url}/logs`, {
              method: 'POST',
              headers: { 'content-type': 'application/x-ndjson' },
              body,
            })
            await res.text()
          } catch {
            count('socket error')
            for (const id of ids) uncertain.add(id)
            break
          }
          count(String(res.status))
          if (res.status === 202) {
            for (const id of ids) acknowledged.add(id)
            options.onAcknowledged?.(ids.length)
            break
          }
          if (res.status !== 429 && res.status !== 503) throw new Error(`unexpected answer ${res.status}`)
          if (options.stop()) break
          if (options.backOff) {
            const seconds = Number(res.headers.get('retry-after')) || 0.2
            await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
          }
        }
      }
    }),
  )
  for (const id of acknowledged) uncertain.delete(id)
  return { acknowledged, uncertain, answers, requests }
}

/** The file sink's settings, with its data, dead letters and (with `spool`) a spool in a fresh temp directory. */
export async function fileSinkSettings(
  env: Record<string, string> = {},
  { spool = false }: { spool?: boolean } = {},
): Promise<{ settings: Record<string, string>; dir: string; logsDir: string; deadLetterDir: string }> {
  const dir = await tempDir()
  const settings = {
    SINKS: 'file',
    DATA_DIR: join(dir, 'data'),
    DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    ...(spool ? { SPOOL_DIR: join(dir, 'spool') } : {}),
    ...env,
  }
  return { settings, dir, logsDir: join(dir, 'data', 'logs'), deadLetterDir: join(dir, 'dead-letter') }
}

/** event_ids of the entries in a sink's dead-letter directory. */
export async function deadLetteredIds(deadLetterDir: string, sink: string): Promise<string[]> {
  const records = await readJsonlTree(join(deadLetterDir, sink))
  return records.map((r) => (r.entry as { event_id: string }).event_id)
}

/** event_ids in a bucket of the GCS fake. */
export function bucketIds(gcs: FakeGcsServer, bucket: string): string[] {
  return gcs.list(bucket).flatMap((o) =>
    o.data
      .toString()
      .trim()
      .split('\n')
      .map((line) => (JSON.parse(line) as { event_id: string }).event_id),
  )
}

/** event_ids in a tree of JSONL files (the file sink). */
export async function fileIds(dir: string): Promise<string[]> {
  return (await readJsonlTree(dir)).map((e) => e.event_id as string)
}

/**
 * The promise, checked for one sink: every acknowledged entry was delivered or dead-lettered, exactly once, and
 * nothing else appeared except entries whose request's answer was lost.
 */
export function expectAccounted(
  sink: string,
  { acknowledged, uncertain }: ClientResult,
  delivered: readonly string[],
  deadLettered: readonly string[],
): void {
  const seen = new Map<string, number>()
  for (const id of [...delivered, ...deadLettered]) seen.set(id, (seen.get(id) ?? 0) + 1)
  const missing = [...acknowledged].filter((id) => !seen.has(id))
  const duplicated = [...seen].filter(([, n]) => n > 1).map(([id]) => id)
  const unexpected = [...seen.keys()].filter((id) => !acknowledged.has(id) && !uncertain.has(id))
  expect({
    sink,
    missing: missing.slice(0, 5),
    duplicated: duplicated.slice(0, 5),
    unexpected: unexpected.slice(0, 5),
  }).toEqual({
    sink,
    missing: [],
    duplicated: [],
    unexpected: [],
  })
  expect(acknowledged.size).toBeGreaterThan(0)
}

/** The process's peak resident set (VmHWM), in MiB: Linux only, read before the process exits. */
export async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1])
  return Math.round(kib / 1024)
}

export interface Health {
  readonly status: string
  readonly buffer_size: number
  readonly sinks: Record<string, Record<string, number>>
  readonly refused_requests: Record<string, number>
}

export async function getHealth(url: string): Promise<Health> {
  return (await (await fetch(`${url}/health`)).json()) as Health
}

/** Polls /health until `ready(health)` holds: a condition, not a sleep. */
export async function waitForHealth(
  url: string,
  ready: (health: Health) => boolean,
  timeoutMs = 120_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const health = await getHealth(url)
    if (ready(health)) return
    if (Date.now() > deadline) throw new Error(`health never became ready: ${JSON.stringify(health)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

export interface CloudSinks {
  readonly gcs: FakeGcsServer
  readonly bq: FakeBigQueryServer
  readonly sidelog: SidelogProcess
  readonly bucket: string
  readonly table: string
  readonly deadLetterDir: string
  /** event_ids in the bucket's objects and the table's rows. */
  inBucket(): string[]
  inTable(): string[]
  /** Answers 503 to every upload and insert from now on, until `recover()`. */
  failAll(): void
  recover(): void
  stop(): Promise<void>
}

/** The real process with SINKS=gcs,bigquery against both fakes, started healthy (faults come after start-up). */
export async function startCloudSinks(name: string, env: Record<string, string> = {}): Promise<CloudSinks> {
  const gcs = new FakeGcsServer()
  const bq = new FakeBigQueryServer()
  await Promise.all([gcs.start(), bq.start()])
  const bucket = `${name}-logs`
  gcs.buckets.add(bucket)
  const dir = await tempDir()
  const deadLetterDir = join(dir, 'dead-letter')
  const sidelog = await spawnSidelog({
    SINKS: 'gcs,bigquery',
    LOG_BUCKET: bucket,
    GCS_ENDPOINT: gcs.url,
    BQ_ENDPOINT: bq.url,
    BQ_PROJECT: 'test-project',
    BQ_DATASET: 'app_logs',
    BQ_TABLE: name,
    FLUSH_INTERVAL: '0.2',
    RETRY_INITIAL_BACKOFF: '0.1',
    DATA_DIR: join(dir, 'data'),
    DEAD_LETTER_DIR: deadLetterDir,
    ...env,
  })
  return {
    gcs,
    bq,
    sidelog,
    bucket,
    table: name,
    deadLetterDir,
    inBucket: () => bucketIds(gcs, bucket),
    inTable: () => bq.rowsOf('app_logs', name).map((r) => r.event_id as string),
    failAll() {
      gcs.inject({ kind: 'status', status: 503 }, { target: 'upload', times: Number.MAX_SAFE_INTEGER })
      bq.inject({ kind: 'status', status: 503 }, { target: 'insert', times: Number.MAX_SAFE_INTEGER })
    },
    recover() {
      gcs.clearFaults()
      bq.clearFaults()
    },
    async stop() {
      sidelog.child.kill('SIGKILL')
      await Promise.all([gcs.stop(), bq.stop()])
    },
  }
}

export interface SpooledGcs {
  readonly gcs: FakeGcsServer
  readonly spoolDir: string
  readonly deadLetterDir: string
  /** The process running now (restart() replaces it). */
  sidelog: SidelogProcess
  /** Starts sidelog again with the same settings, on the same spool. */
  restart(): Promise<SidelogProcess>
  /** event_ids in the bucket. */
  inBucket(): string[]
  /** Every upload answers 503 from now on, until `gcs.clearFaults()`. */
  failUploads(): void
  stop(): Promise<void>
}

/** The real process with SINKS=gcs and a disk spool, against the GCS fake, with quick retries. */
export async function startSpooledGcs(name: string, env: Record<string, string> = {}): Promise<SpooledGcs> {
  const gcs = new FakeGcsServer()
  await gcs.start()
  const bucket = `${name}-logs`
  gcs.buckets.add(bucket)
  const dir = await tempDir()
  const spoolDir = join(dir, 'spool')
  const deadLetterDir = join(dir, 'dead-letter')
  const settings = {
    SINKS: 'gcs',
    LOG_BUCKET: bucket,
    GCS_ENDPOINT: gcs.url,
    SPOOL_DIR: spoolDir,
    FLUSH_INTERVAL: '0.2',
    RETRY_INITIAL_BACKOFF: '0.1',
    RETRY_MAX_BACKOFF: '0.5',
    DATA_DIR: join(dir, 'data'),
    DEAD_LETTER_DIR: deadLetterDir,
    ...env,
  }
  const processes = [await spawnSidelog(settings)]
  const spooled: SpooledGcs = {
    gcs,
    spoolDir,
    deadLetterDir,
    sidelog: processes[0] as SidelogProcess,
    async restart() {
      const next = await spawnSidelog(settings)
      processes.push(next)
      spooled.sidelog = next
      return next
    },
    inBucket: () => bucketIds(gcs, bucket),
    failUploads() {
      gcs.inject({ kind: 'status', status: 503 }, { target: 'upload', times: Number.MAX_SAFE_INTEGER })
    },
    async stop() {
      for (const p of processes) p.child.kill('SIGKILL')
      await gcs.stop()
    },
  }
  return spooled
}
