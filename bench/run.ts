// npm run bench: drives the built sidelog with autocannon on loopback and prints events/s, latency percentiles, peak
// RSS and, for the gcs sink (against the protocol-level fake, in this process), MiB/s delivered. Each scenario
// gets a fresh process, so its peak RSS is its own, and each checks that the destination holds exactly what
// sidelog counted as accepted.
// BENCH_DURATION (s, default 10), BENCH_CONNECTIONS (default 50), BENCH_RATE (requests/s; unset = saturation),
// BENCH_ONLY (a substring of scenario names), BENCH_SCRAPE (scrape /metrics every N seconds during the run, as
// Prometheus would), SIDELOG_NODE_OPTIONS, and any sidelog setting are passed on.
// The tail scenario writes BENCH_TAIL_LINES (default 500,000) lines to a file first, then times how long sidelog's
// tail input takes to read and accept them all, and checks the file sink holds each once.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import autocannon from 'autocannon'
import { ConfigSchema } from '../src/config.js'
import { spawnSidelog } from '../test/e2e/spawn.js'
import { FakeBigQueryServer } from '../test/fakes/bigquery-server.js'
import { FakeGcsServer } from '../test/fakes/gcs-server.js'
import { readJsonlTree } from '../test/jsonl-files.js'

const DURATION_S = Number(process.env.BENCH_DURATION ?? 10)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const RATE = process.env.BENCH_RATE ? Number(process.env.BENCH_RATE) : undefined
const ONLY = process.env.BENCH_ONLY
const SETTINGS = Object.fromEntries(
  Object.keys(ConfigSchema.properties).flatMap((name) =>
    process.env[name] ? [[name, process.env[name] as string]] : [],
  ),
)
/** Node flags for the sidelog process only (the bench itself runs without them), e.g. a heap cap. */
const SIDELOG_NODE_OPTIONS = process.env.SIDELOG_NODE_OPTIONS
const SCRAPE_S = process.env.BENCH_SCRAPE ? Number(process.env.BENCH_SCRAPE) : undefined

/** Scrapes /metrics every `seconds` until stopped; returns how many scrapes and their mean time. */
function scrapeMetrics(url: string, seconds: number): () => Promise<{ scrapes: number; meanMs: number }> {
  let scrapes = 0
  let totalMs = 0
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      const startedAt = performance.now()
      const res = await fetch(`${url}/metrics`)
      if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`)
      await res.text()
      totalMs += performance.now() - startedAt
      scrapes++
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
    }
  })()
  return async () => {
    stopped = true
    await loop
    return { scrapes, meanMs: scrapes ? Math.round((totalMs / scrapes) * 10) / 10 : 0 }
  }
}

/** About 230 bytes, like a typical access-log entry. */
function entry(i: number): Record<string, unknown> {
  return {
    level: 'info',
    message: `GET /api/orders/${100000 + (i % 900000)} 200 in ${i % 97} ms`,
    method: 'GET',
    path: `/api/orders/${100000 + (i % 900000)}`,
    status: 200,
    duration_ms: i % 97,
    user_agent: 'Mozilla/5.0 (X11; Linux x86_64) bench/1.0',
    trace: 'projects/demo/traces/4bf92f3577b34da6a3ce929d0e0e4736',
  }
}

/** Where a scenario's batches go, and how to count what arrived there. */
interface Destination {
  readonly env: Record<string, string>
  /** Entries delivered, the bytes stored for them (compressed, if the sink compresses), requests it took. */
  delivered(): Promise<{ entries: number; storedBytes: number; requests?: number }>
  stop(): Promise<void>
}

async function fileDestination(dir: string): Promise<Destination> {
  return {
    env: { SINKS: 'file' },
    async delivered() {
      return { entries: (await readJsonlTree(join(dir, 'data'))).length, storedBytes: Number.NaN }
    },
    async stop() {},
  }
}

async function gcsDestination(compression: 'none' | 'gzip'): Promise<Destination> {
  const fake = new FakeGcsServer()
  await fake.start()
  fake.buckets.add('bench')
  return {
    env: { SINKS: 'gcs', LOG_BUCKET: 'bench', GCS_ENDPOINT: fake.url, GCS_COMPRESSION: compression },
    async delivered() {
      let entries = 0
      let storedBytes = 0
      for (const object of fake.list('bench')) {
        storedBytes += object.data.length
        const text = (object.contentEncoding === 'gzip' ? gunzipSync(object.data) : object.data).toString()
        entries += text.split('\n').filter(Boolean).length
      }
      return { entries, storedBytes }
    },
    stop: () => fake.stop(),
  }
}

async function bigqueryDestination(): Promise<Destination> {
  const fake = new FakeBigQueryServer()
  await fake.start()
  return {
    env: {
      SINKS: 'bigquery',
      BQ_ENDPOINT: fake.url,
      BQ_PROJECT: 'bench-project',
      BQ_DATASET: 'bench',
      BQ_TABLE: 'logs',
    },
    async delivered() {
      const rows = fake.rowsOf('bench', 'logs')
      return { entries: rows.length, storedBytes: Number.NaN, requests: fake.inserts().length }
    },
    stop: () => fake.stop(),
  }
}

interface Scenario {
  readonly name: string
  readonly entriesPerRequest: number
  readonly contentType: string
  readonly body: string
  readonly destination: (dir: string) => Promise<Destination>
}

const hundred = Array.from({ length: 100 }, (_, i) => entry(i))
const ndjson100 = hundred.map((e) => JSON.stringify(e)).join('\n')
const scenarios: Scenario[] = [
  {
    name: 'file: 1 entry / request (JSON)',
    entriesPerRequest: 1,
    contentType: 'application/json',
    body: JSON.stringify(entry(1)),
    destination: fileDestination,
  },
  {
    name: 'file: 100 entries / request (JSON array)',
    entriesPerRequest: 100,
    contentType: 'application/json',
    body: JSON.stringify(hundred),
    destination: fileDestination,
  },
  {
    name: 'file: 100 entries / request (NDJSON)',
    entriesPerRequest: 100,
    contentType: 'application/x-ndjson',
    body: ndjson100,
    destination: fileDestination,
  },
  {
    name: 'gcs: 100 entries / request (NDJSON)',
    entriesPerRequest: 100,
    contentType: 'application/x-ndjson',
    body: ndjson100,
    destination: () => gcsDestination('none'),
  },
  {
    name: 'gcs gzip: 100 entries / request (NDJSON)',
    entriesPerRequest: 100,
    contentType: 'application/x-ndjson',
    body: ndjson100,
    destination: () => gcsDestination('gzip'),
  },
  {
    name: 'bigquery stream: 100 entries / request (NDJSON)',
    entriesPerRequest: 100,
    contentType: 'application/x-ndjson',
    body: ndjson100,
    destination: bigqueryDestination,
  },
]

/** Peak resident set size of a process, from the kernel's high-water mark. */
async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN)
  return kib / 1024
}

const mib = (bytes: number) => Math.round((bytes / 1024 ** 2 / DURATION_S) * 10) / 10

async function runScenario(scenario: Scenario) {
  const dir = await mkdtemp(join(tmpdir(), 'sidelog-bench-'))
  const destination = await scenario.destination(dir)
  try {
    const sidelog = await spawnSidelog({
      ...SETTINGS,
      ...destination.env,
      ...(SIDELOG_NODE_OPTIONS ? { NODE_OPTIONS: SIDELOG_NODE_OPTIONS } : {}),
      METADATA_SERVER_DETECTION: 'none',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    })
    const stopScraping = SCRAPE_S === undefined ? undefined : scrapeMetrics(sidelog.url, SCRAPE_S)
    const result = await autocannon({
      url: `${sidelog.url}/logs`,
      method: 'POST',
      connections: CONNECTIONS,
      duration: DURATION_S,
      headers: { 'content-type': scenario.contentType },
      body: scenario.body,
      ...(RATE === undefined ? {} : { overallRate: RATE }),
    })
    const scraped = await stopScraping?.()
    const rss = await peakRssMiB(sidelog.child.pid as number)
    // sidelog's own count: autocannon does not count the answers to requests still in flight when it stops.
    const health = (await (await fetch(`${sidelog.url}/health`)).json()) as { lines_processed: number }
    const accepted = health.lines_processed
    sidelog.child.kill('SIGTERM')
    const exit = await sidelog.exited
    const { entries, storedBytes, requests } = await destination.delivered()
    if (exit.code !== 0 || entries !== accepted) {
      throw new Error(`${scenario.name}: exit ${exit.code}, accepted ${accepted}, delivered ${entries}`)
    }
    const entryBytes = Buffer.byteLength(scenario.body) / scenario.entriesPerRequest
    return {
      scenario: scenario.name,
      'req/s': Math.round(result.requests.average),
      'events/s': Math.round(accepted / DURATION_S),
      'MiB/s in': mib(accepted * entryBytes),
      'MiB/s stored': Number.isNaN(storedBytes) ? '' : mib(storedBytes),
      'requests / 10k rows': requests === undefined ? '' : Math.round((requests / entries) * 10_000),
      'p50 ms': result.latency.p50,
      'p99 ms': result.latency.p99,
      '429s': result.non2xx,
      errors: result.errors + result.timeouts,
      'peak RSS MiB': Math.round(rss),
      ...(scraped ? { scrapes: scraped.scrapes, 'scrape ms': scraped.meanMs } : {}),
    }
  } finally {
    await destination.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

const TAIL_LINES = Number(process.env.BENCH_TAIL_LINES ?? 500_000)
const TAIL_SCENARIO = 'tail: file sink, lines written before start'

/** The tail input's throughput: lines a second from a file already written, until every one is accepted. */
async function runTailScenario() {
  const dir = await mkdtemp(join(tmpdir(), 'sidelog-bench-'))
  try {
    await mkdir(join(dir, 'logs'))
    const chunk = Array.from({ length: 1000 }, (_, i) => JSON.stringify(entry(i))).join('\n')
    const parts: string[] = []
    for (let written = 0; written < TAIL_LINES; written += 1000) parts.push(chunk)
    const text = `${parts.join('\n')}\n`
    await writeFile(join(dir, 'logs', 'app.log'), text)
    const started = performance.now()
    const sidelog = await spawnSidelog({
      ...SETTINGS,
      SINKS: 'file',
      ...(SIDELOG_NODE_OPTIONS ? { NODE_OPTIONS: SIDELOG_NODE_OPTIONS } : {}),
      TAIL_PATHS: join(dir, 'logs', '*.log'),
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    })
    // Accepted (with a spool: on disk), then delivered: a spool's backlog left at SIGTERM would wait for a restart.
    let acceptedS = 0
    for (;;) {
      const health = (await (await fetch(`${sidelog.url}/health`)).json()) as {
        sources: { tail: { lines: number } }
        sinks: { file: { delivered_events: number } }
      }
      if (!acceptedS && health.sources.tail.lines >= TAIL_LINES)
        acceptedS = (performance.now() - started) / 1000
      if (health.sinks.file.delivered_events >= TAIL_LINES) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const seconds = (performance.now() - started) / 1000
    const rss = await peakRssMiB(sidelog.child.pid as number)
    sidelog.child.kill('SIGTERM')
    const exit = await sidelog.exited
    // The file sink's batches only (the checkpoint file is beside them, in DATA_DIR).
    const delivered = (await readJsonlTree(join(dir, 'data', 'logs'))).length
    if (exit.code !== 0 || delivered !== TAIL_LINES) {
      throw new Error(`${TAIL_SCENARIO}: exit ${exit.code}, written ${TAIL_LINES}, delivered ${delivered}`)
    }
    return {
      scenario: TAIL_SCENARIO,
      lines: TAIL_LINES,
      's to all accepted': Math.round(acceptedS * 10) / 10,
      's to all delivered': Math.round(seconds * 10) / 10,
      'lines/s accepted': Math.round(TAIL_LINES / acceptedS),
      'MiB/s accepted': Math.round((Buffer.byteLength(text) / 1024 ** 2 / acceptedS) * 10) / 10,
      'peak RSS MiB': Math.round(rss),
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const rows = []
for (const scenario of scenarios.filter((s) => !ONLY || s.name.includes(ONLY))) {
  process.stderr.write(`running: ${scenario.name} (${DURATION_S} s, ${CONNECTIONS} connections)\n`)
  rows.push(await runScenario(scenario))
}
const tailRows = []
if (!ONLY || TAIL_SCENARIO.includes(ONLY)) {
  process.stderr.write(`running: ${TAIL_SCENARIO} (${TAIL_LINES} lines)\n`)
  tailRows.push(await runTailScenario())
}
console.log(
  `\nsidelog bench: settings ${JSON.stringify({ ...SETTINGS, SIDELOG_NODE_OPTIONS })}, ${CONNECTIONS} connections, ` +
    `${RATE === undefined ? 'unpaced' : `${RATE} req/s`}, ${DURATION_S} s per scenario, ` +
    `${SCRAPE_S === undefined ? 'no scraping' : `/metrics scraped every ${SCRAPE_S} s`}, ` +
    `node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}`,
)
if (rows.length > 0) console.table(rows)
if (tailRows.length > 0) console.table(tailRows)
