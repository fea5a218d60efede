// npm run bench: drives the built sidelog on loopback and prints each scenario beside a ceiling measured in the same
// run: Fastify with its defaults parsing each body and discarding it (bench/ceiling.mjs), the most a Node server can
// do on this machine. Ratios to it compare across machines; absolute numbers do not. Every process is fresh, so its
// peak RSS (VmHWM) is its own, and every scenario checks that the destination holds exactly the entries sidelog
// counted as accepted (as many lines, each with an event id of its own). Scenarios (default settings unless the
// environment sets a sidelog setting):
//   1 entry / request (JSON), 100 / request (JSON array), 100 / request (NDJSON): file sink, at saturation, each run
//     right after the ceiling with the same body;
//   gcs, gcs gzip, bigquery stream: 100-entry NDJSON at saturation against the protocol-level fakes (gcs in a
//     process of its own);
//   outage: the gcs fake answers 503 to every upload for BENCH_OUTAGE seconds (default 60) at full offered load,
//     then recovers; everything accepted must then arrive;
//   latency: 1-entry requests paced at BENCH_LATENCY_RATE (default 1,000) requests/s, open loop, ceiling then sidelog;
//   tail: the tail input reading BENCH_TAIL_LINES lines written before start.
// BENCH_DURATION (s, default 10), BENCH_CONNECTIONS (default 50), BENCH_ONLY (a substring of scenario names),
// BENCH_CPU_PROF (a directory: sidelog runs with --cpu-prof, and the top functions of each profile are printed),
// BENCH_SCRAPE (scrape /metrics every N seconds during the load runs), SIDELOG_NODE_OPTIONS (Node flags for
// sidelog only), and any sidelog setting are passed on.
import { type ChildProcess, fork, spawn } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { ConfigSchema } from '../src/config.js'
import { type SidelogProcess, spawnSidelog } from '../test/e2e/spawn.js'
import { FakeBigQueryServer } from '../test/fakes/bigquery-server.js'
import { countJsonlTree } from '../test/jsonl-files.js'
import type { FakeCommand, FakeCount } from './gcs-fake-process.js'
import { summariseProfile } from './profile.js'

const DURATION_S = Number(process.env.BENCH_DURATION ?? 10)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const ONLY = process.env.BENCH_ONLY
const OUTAGE_S = Number(process.env.BENCH_OUTAGE ?? 60)
const LATENCY_RATE = Number(process.env.BENCH_LATENCY_RATE ?? 1000)
const CPU_PROF = process.env.BENCH_CPU_PROF
const SCRAPE_S = process.env.BENCH_SCRAPE ? Number(process.env.BENCH_SCRAPE) : undefined
const SETTINGS = Object.fromEntries(
  Object.keys(ConfigSchema.properties).flatMap((name) =>
    process.env[name] ? [[name, process.env[name] as string]] : [],
  ),
)
/** Node flags for the sidelog process only (the bench itself runs without them). */
const SIDELOG_NODE_OPTIONS = process.env.SIDELOG_NODE_OPTIONS
/**
 * sidelog runs as `npm start` runs it, with the heap flags of package.json's start script (the same as the
 * sidelog command's and the image's); BENCH_NO_START_FLAGS=1 runs plain `node dist/main.js` instead.
 */
const START_FLAGS = process.env.BENCH_NO_START_FLAGS
  ? []
  : (/node((?: --\S+)*) dist\/main\.js/
      .exec(
        (
          JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
            scripts: { start: string }
          }
        ).scripts.start,
      )?.[1]
      ?.trim()
      .split(' ') ?? [])
/** The issue's memory budget: peak RSS of sidelog in every scenario. */
const RSS_BUDGET_MIB = 128
const CEILING = fileURLToPath(new URL('./ceiling.mjs', import.meta.url))
const GCS_FAKE = fileURLToPath(new URL('./gcs-fake-process.ts', import.meta.url))
const BUCKET = 'bench'

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

interface Body {
  readonly name: string
  readonly entries: number
  readonly contentType: string
  readonly text: string
}
const hundred = Array.from({ length: 100 }, (_, i) => entry(i))
const BODIES = {
  one: {
    name: '1 entry / request (JSON)',
    entries: 1,
    contentType: 'application/json',
    text: JSON.stringify(entry(1)),
  },
  array: {
    name: '100 / request (JSON array)',
    entries: 100,
    contentType: 'application/json',
    text: JSON.stringify(hundred),
  },
  ndjson: {
    name: '100 / request (NDJSON)',
    entries: 100,
    contentType: 'application/x-ndjson',
    text: hundred.map((e) => JSON.stringify(e)).join('\n'),
  },
} satisfies Record<string, Body>

/** Peak resident set size of a process, from the kernel's high-water mark. */
async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN) / 1024
}

/** CPU time (user + system, all threads) a process has used, in µs: steadier than throughput on a shared machine. */
async function cpuMicros(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? []
  // utime and stime are fields 14 and 15 of stat, in clock ticks (100 a second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

const round = (n: number, digits = 0) => Math.round(n * 10 ** digits) / 10 ** digits

/** Saturation (or `rate` requests/s overall) with autocannon. */
function load(url: string, body: Body, seconds: number, rate?: number): Promise<autocannon.Result> {
  return autocannon({
    url: `${url}/logs`,
    method: 'POST',
    connections: CONNECTIONS,
    duration: seconds,
    headers: { 'content-type': body.contentType },
    body: body.text,
    ...(rate === undefined ? {} : { overallRate: rate }),
  })
}

/**
 * Open-loop pacing: a request is due every 1/rate s whatever the answers do, each timed from when it was sent to
 * the end of its answer. autocannon's pacing sends each second's requests in a burst, which measures the burst.
 */
async function paced(url: string, body: Body, rate: number, seconds: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 })
  const { hostname, port } = new URL(url)
  const latencies: number[] = []
  let errors = 0
  let non2xx = 0
  const total = Math.round(rate * seconds)
  const send = () =>
    new Promise<void>((resolve) => {
      const startedAt = performance.now()
      const req = request(
        {
          agent,
          hostname,
          port,
          path: '/logs',
          method: 'POST',
          headers: { 'content-type': body.contentType, 'content-length': Buffer.byteLength(body.text) },
        },
        (res) => {
          res.resume()
          res.on('end', () => {
            latencies.push(performance.now() - startedAt)
            if (res.statusCode !== 202) non2xx++
            resolve()
          })
        },
      )
      req.on('error', () => {
        errors++
        resolve()
      })
      req.end(body.text)
    })
  const inFlight: Promise<void>[] = []
  const startedAt = performance.now()
  let sent = 0
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - startedAt) / 1000) * rate))
    for (; sent < due; sent++) inFlight.push(send())
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  await Promise.all(inFlight)
  agent.destroy()
  latencies.sort((a, b) => a - b)
  const at = (q: number) =>
    round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0, 2)
  return { p50: at(0.5), p99: at(0.99), sent: total, non2xx, errors }
}

/** The ceiling server, fresh for each measurement. */
async function startCeiling(): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [CEILING], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', (line) =>
      resolve((JSON.parse(line) as { port: number }).port),
    )
    child.once('exit', (code) => reject(new Error(`ceiling server exited (${code}) before listening`)))
  })
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    async stop() {
      child.kill('SIGTERM')
      await exited
    },
  }
}

async function measureCeiling(body: Body) {
  const ceiling = await startCeiling()
  try {
    const cpuBefore = await cpuMicros(ceiling.child.pid as number)
    const result = await load(ceiling.url, body, DURATION_S)
    const cpu = (await cpuMicros(ceiling.child.pid as number)) - cpuBefore
    const rss = await peakRssMiB(ceiling.child.pid as number)
    return {
      'req/s': round(result['2xx'] / DURATION_S),
      'events/s': round((result['2xx'] * body.entries) / DURATION_S),
      'CPU µs / request': round(cpu / (result['2xx'] + result.non2xx), 1),
      p50: result.latency.p50,
      p99: result.latency.p99,
      rss: round(rss),
    }
  } finally {
    await ceiling.stop()
  }
}

/** Where a scenario's batches go, and how to count what arrived there. */
interface Destination {
  readonly env: Record<string, string>
  /** `ids`: how many distinct event_id values the entries carry (each must be there once, whole). */
  delivered(): Promise<{
    entries: number
    ids: number
    storedBytes?: number
    requests?: number
    objects?: number
  }>
  outage?(on: boolean): Promise<void>
  stop(): Promise<void>
}

function fileDestination(dir: string): Promise<Destination> {
  return Promise.resolve({
    env: { SINKS: 'file' },
    async delivered() {
      // Counted file by file: millions of parsed rows at once would not fit the bench's own heap.
      return countJsonlTree(join(dir, 'data', 'logs'))
    },
    async stop() {},
  })
}

async function gcsDestination(compression: 'none' | 'gzip'): Promise<Destination> {
  const child = fork(GCS_FAKE, [BUCKET], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const ask = <T>(command?: FakeCommand) =>
    new Promise<T>((resolve) => {
      child.once('message', (answer) => resolve(answer as T))
      if (command) child.send(command)
    })
  const { url } = await ask<{ url: string }>()
  return {
    env: { SINKS: 'gcs', LOG_BUCKET: BUCKET, GCS_ENDPOINT: url, GCS_COMPRESSION: compression },
    async delivered() {
      return ask<FakeCount>({ cmd: 'count' })
    },
    async outage(on) {
      await ask({ cmd: 'outage', on })
    },
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      await ask({ cmd: 'stop' })
      await exited
    },
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
      return {
        entries: rows.length,
        ids: new Set(rows.map((row) => row.event_id)).size,
        requests: fake.inserts().length,
      }
    },
    stop: () => fake.stop(),
  }
}

interface Health {
  lines_processed: number
  buffer_size: number
}
const health = async (url: string) => (await (await fetch(`${url}/health`)).json()) as Health

/** A fresh sidelog for one scenario, with its CPU profile (BENCH_CPU_PROF) named after it. */
async function startSidelog(dir: string, destination: Destination, name: string): Promise<SidelogProcess> {
  const profile = CPU_PROF
    ? [`--cpu-prof`, `--cpu-prof-dir=${CPU_PROF}`, `--cpu-prof-name=${slug(name)}.cpuprofile`]
    : []
  return spawnSidelog(
    {
      ...SETTINGS,
      ...destination.env,
      ...(SIDELOG_NODE_OPTIONS ? { NODE_OPTIONS: SIDELOG_NODE_OPTIONS } : {}),
      METADATA_SERVER_DETECTION: 'none',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    },
    [...START_FLAGS, ...profile],
  )
}

const slug = (name: string) =>
  name
    .replace(/[^a-z0-9]+/gi, '-')
    .replace(/^-|-$/g, '')
    .toLowerCase()

/** Stops sidelog (SIGTERM: it drains) and checks the destination holds exactly what it counted as accepted. */
async function stopAndCheck(name: string, sidelog: SidelogProcess, destination: Destination) {
  const rss = await peakRssMiB(sidelog.child.pid as number)
  // sidelog's own count: autocannon does not count the answers to requests still in flight when it stops.
  const accepted = (await health(sidelog.url)).lines_processed
  sidelog.child.kill('SIGTERM')
  const exit = await sidelog.exited
  const delivered = await destination.delivered()
  if (exit.code !== 0 || delivered.entries !== accepted || delivered.ids !== accepted) {
    throw new Error(
      `${name}: exit ${exit.code}, accepted ${accepted}, delivered ${delivered.entries} with ${delivered.ids} distinct event ids`,
    )
  }
  return { rss, accepted, delivered }
}

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
    return { scrapes, meanMs: scrapes ? round(totalMs / scrapes, 1) : 0 }
  }
}

type Row = Record<string, string | number>

/** One saturation run of sidelog; `ratio` turns its events/s and req/s into the ratio column. */
async function saturation(
  name: string,
  body: Body,
  destinationOf: (dir: string) => Promise<Destination>,
  ratio: (m: { 'events/s': number; 'req/s': number }) => string,
): Promise<Row & { 'events/s': number }> {
  const dir = await mkdtemp(join(tmpdir(), 'sidelog-bench-'))
  const destination = await destinationOf(dir)
  try {
    const sidelog = await startSidelog(dir, destination, name)
    const stopScraping = SCRAPE_S === undefined ? undefined : scrapeMetrics(sidelog.url, SCRAPE_S)
    const cpuBefore = await cpuMicros(sidelog.child.pid as number)
    const result = await load(sidelog.url, body, DURATION_S)
    if (sidelog.child.exitCode !== null || sidelog.child.signalCode !== null) {
      throw new Error(
        `${name}: sidelog exited during the run: ${JSON.stringify(sidelog.logs.filter((l) => 'raw' in l).slice(0, 12))}`,
      )
    }
    const cpu = (await cpuMicros(sidelog.child.pid as number)) - cpuBefore
    const scraped = await stopScraping?.()
    const { rss, accepted, delivered } = await stopAndCheck(name, sidelog, destination)
    const measured = {
      'req/s': round(result['2xx'] / DURATION_S),
      'events/s': round(accepted / DURATION_S),
    }
    return {
      scenario: name,
      ...measured,
      '× ref': ratio(measured),
      'p50 ms': result.latency.p50,
      'p99 ms': result.latency.p99,
      '429s': result.non2xx,
      errors: result.errors + result.timeouts,
      // Every request answered (429s too): what a request cost, whether it was taken or refused.
      'CPU µs / request': round(cpu / (result['2xx'] + result.non2xx), 1),
      'peak RSS MiB': round(rss),
      ...(delivered.objects === undefined
        ? {}
        : {
            'objects, KiB each': `${delivered.objects}, ${round((delivered.storedBytes ?? 0) / 1024 / delivered.objects)}`,
          }),
      ...(delivered.requests === undefined ? {} : { 'insertAll requests': delivered.requests }),
      ...(scraped ? { scrapes: scraped.scrapes, 'scrape ms': scraped.meanMs } : {}),
    }
  } finally {
    await destination.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

/** The sink answers 503 to everything for OUTAGE_S at full offered load, then recovers: all accepted must arrive. */
async function outage(): Promise<Row> {
  const name = `outage: gcs down ${OUTAGE_S} s, 100 / request (NDJSON)`
  const dir = await mkdtemp(join(tmpdir(), 'sidelog-bench-'))
  const destination = await gcsDestination('none')
  try {
    const sidelog = await startSidelog(dir, destination, name)
    await destination.outage?.(true)
    const result = await load(sidelog.url, BODIES.ndjson, OUTAGE_S)
    const rssInOutage = await peakRssMiB(sidelog.child.pid as number)
    await destination.outage?.(false)
    const recoveredAt = performance.now()
    // Retries back off up to RETRY_MAX_BACKOFF (30 s): wait until everything held is delivered, then stop.
    while ((await health(sidelog.url)).buffer_size > 0) {
      if (performance.now() - recoveredAt > 300_000)
        throw new Error(`${name}: not delivered 300 s after recovery`)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    const deliveredAfterS = (performance.now() - recoveredAt) / 1000
    const { rss, accepted } = await stopAndCheck(name, sidelog, destination)
    return {
      scenario: name,
      'events accepted': accepted,
      '429s': result.non2xx,
      errors: result.errors + result.timeouts,
      'peak RSS MiB (in the outage)': round(rssInOutage),
      'peak RSS MiB (with recovery)': round(rss),
      's to deliver after recovery': round(deliveredAfterS, 1),
    }
  } finally {
    await destination.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

/** p99 added to a request by sidelog at a steady LATENCY_RATE, over the ceiling at the same rate. */
async function latency(): Promise<Row> {
  const name = `latency: 1 entry / request at ${LATENCY_RATE} req/s`
  const ceiling = await startCeiling()
  const base = await paced(ceiling.url, BODIES.one, LATENCY_RATE, DURATION_S).finally(() => ceiling.stop())
  const dir = await mkdtemp(join(tmpdir(), 'sidelog-bench-'))
  const destination = await fileDestination(dir)
  try {
    const sidelog = await startSidelog(dir, destination, name)
    const measured = await paced(sidelog.url, BODIES.one, LATENCY_RATE, DURATION_S)
    const { rss } = await stopAndCheck(name, sidelog, destination)
    return {
      scenario: name,
      'ceiling p50 / p99 ms': `${base.p50} / ${base.p99}`,
      'sidelog p50 / p99 ms': `${measured.p50} / ${measured.p99}`,
      'p99 added ms': round(measured.p99 - base.p99, 2),
      'non-202': measured.non2xx + measured.errors,
      'peak RSS MiB': round(rss),
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const TAIL_LINES = Number(process.env.BENCH_TAIL_LINES ?? 500_000)
const TAIL_SCENARIO = 'tail: file sink, lines written before start'

/** The tail input's throughput: lines a second from a file already written, until every one is accepted. */
async function tail(): Promise<Row> {
  const dir = await mkdtemp(join(tmpdir(), 'sidelog-bench-'))
  try {
    await mkdir(join(dir, 'logs'))
    const chunk = Array.from({ length: 1000 }, (_, i) => JSON.stringify(entry(i))).join('\n')
    const parts: string[] = []
    for (let written = 0; written < TAIL_LINES; written += 1000) parts.push(chunk)
    const text = `${parts.join('\n')}\n`
    await writeFile(join(dir, 'logs', 'app.log'), text)
    const started = performance.now()
    const sidelog = await startSidelog(
      dir,
      {
        env: { SINKS: 'file', TAIL_PATHS: join(dir, 'logs', '*.log') },
        delivered: async () => ({ entries: 0, ids: 0 }),
        stop: async () => {},
      },
      TAIL_SCENARIO,
    )
    let acceptedS = 0
    for (;;) {
      const state = (await (await fetch(`${sidelog.url}/health`)).json()) as {
        sources: { tail: { lines: number } }
        sinks: { file: { delivered_events: number } }
      }
      if (!acceptedS && state.sources.tail.lines >= TAIL_LINES)
        acceptedS = (performance.now() - started) / 1000
      if (state.sinks.file.delivered_events >= TAIL_LINES) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const seconds = (performance.now() - started) / 1000
    const rss = await peakRssMiB(sidelog.child.pid as number)
    sidelog.child.kill('SIGTERM')
    const exit = await sidelog.exited
    // The file sink's batches only (the checkpoint file is beside them, in DATA_DIR).
    const delivered = (await countJsonlTree(join(dir, 'data', 'logs'))).entries
    if (exit.code !== 0 || delivered !== TAIL_LINES) {
      throw new Error(`${TAIL_SCENARIO}: exit ${exit.code}, written ${TAIL_LINES}, delivered ${delivered}`)
    }
    return {
      scenario: TAIL_SCENARIO,
      lines: TAIL_LINES,
      's to all accepted': round(acceptedS, 1),
      's to all delivered': round(seconds, 1),
      'lines/s accepted': round(TAIL_LINES / acceptedS),
      'MiB/s accepted': round(Buffer.byteLength(text) / 1024 ** 2 / acceptedS, 1),
      'peak RSS MiB': round(rss),
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const wanted = (name: string) => !ONLY || name.includes(ONLY)
const ceilings: Row[] = []
const rows: Row[] = []
const otherRows: Row[] = []
const x = (n: number, of: number) => `${round(n / of, 2)}×`
let fileNdjson: number | undefined

for (const body of Object.values(BODIES)) {
  const name = `file: ${body.name}`
  if (!wanted(name)) continue
  process.stderr.write(
    `running: ceiling, ${body.name}, then ${name} (${DURATION_S} s each, ${CONNECTIONS} connections)\n`,
  )
  const ceiling = await measureCeiling(body)
  ceilings.push({
    body: body.name,
    'req/s': ceiling['req/s'],
    'events/s': ceiling['events/s'],
    'CPU µs / request': ceiling['CPU µs / request'],
    'p50 ms': ceiling.p50,
    'p99 ms': ceiling.p99,
    'peak RSS MiB': ceiling.rss,
  })
  // 1 entry per request is judged by requests/s; 100 per request by events/s.
  const row = await saturation(name, body, fileDestination, (m) =>
    body.entries === 1
      ? `${x(m['req/s'], ceiling['req/s'])} req/s`
      : `${x(m['events/s'], ceiling['events/s'])} events/s`,
  )
  rows.push(row)
  if (body === BODIES.ndjson) fileNdjson = row['events/s']
}
const versusFile = (m: { 'events/s': number }) =>
  fileNdjson === undefined ? '' : `${x(m['events/s'], fileNdjson)} of file`
for (const [name, destination] of [
  ['gcs: 100 / request (NDJSON)', () => gcsDestination('none')],
  ['gcs gzip: 100 / request (NDJSON)', () => gcsDestination('gzip')],
  ['bigquery stream: 100 / request (NDJSON)', bigqueryDestination],
] as const) {
  if (!wanted(name)) continue
  process.stderr.write(`running: ${name} (${DURATION_S} s)\n`)
  rows.push(await saturation(name, BODIES.ndjson, destination, versusFile))
}
if (wanted('outage')) {
  process.stderr.write(`running: outage (${OUTAGE_S} s of 503s at saturation, then recovery)\n`)
  otherRows.push(await outage())
}
if (wanted('latency')) {
  process.stderr.write(`running: latency (${LATENCY_RATE} req/s for ${DURATION_S} s, ceiling then sidelog)\n`)
  otherRows.push(await latency())
}
if (wanted(TAIL_SCENARIO)) {
  process.stderr.write(`running: ${TAIL_SCENARIO} (${TAIL_LINES} lines)\n`)
  otherRows.push(await tail())
}

console.log(
  `\nsidelog bench: settings ${JSON.stringify({ ...SETTINGS, SIDELOG_NODE_OPTIONS })}, node flags ${JSON.stringify(START_FLAGS.join(' '))}, ${CONNECTIONS} connections, ` +
    `${DURATION_S} s per run, ${SCRAPE_S === undefined ? 'no scraping' : `/metrics scraped every ${SCRAPE_S} s`}, ` +
    `node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, load average ${loadavg()
      .map((n) => n.toFixed(1))
      .join(' ')} at the end`,
)
if (ceilings.length > 0) {
  console.log('\nceiling (Fastify, parse and discard):')
  console.table(ceilings)
}
if (rows.length > 0) console.table(rows)
for (const row of otherRows) console.table([row])
const overBudget = [...rows, ...otherRows].filter((row) =>
  Object.entries(row).some(
    ([key, value]) => key.startsWith('peak RSS') && typeof value === 'number' && value > RSS_BUDGET_MIB,
  ),
)
console.log(
  overBudget.length === 0
    ? `peak RSS within ${RSS_BUDGET_MIB} MiB in every scenario`
    : `peak RSS over ${RSS_BUDGET_MIB} MiB in: ${overBudget.map((row) => row.scenario).join('; ')}`,
)

if (CPU_PROF) {
  for (const file of (await readdir(CPU_PROF)).filter((f) => f.endsWith('.cpuprofile')).sort()) {
    const { idle, lines } = await summariseProfile(join(CPU_PROF, file), 12)
    console.log(`\n${file}: idle ${idle}% of samples; self time as a share of the busy samples:`)
    console.table(lines)
  }
}
