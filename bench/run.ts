// npm run bench: drives the built sidelog (file sink) with autocannon on loopback and prints events/s, latency
// percentiles and peak RSS per scenario. Each scenario gets a fresh process, so its peak RSS is its own.
// BENCH_DURATION (seconds, default 10) and BENCH_CONNECTIONS (default 50) tune it; the numbers go in the README.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { ConfigSchema } from '../src/config.js'
import { spawnSidelog } from '../test/e2e/spawn.js'
import { readJsonlTree } from '../test/jsonl-files.js'

const DURATION_S = Number(process.env.BENCH_DURATION ?? 10)
/** sidelog settings given to the bench (e.g. `SINK_CONCURRENCY=8 npm run bench`) are passed on to sidelog. */
const SETTINGS = Object.fromEntries(
  Object.keys(ConfigSchema.properties).flatMap((name) =>
    process.env[name] ? [[name, process.env[name] as string]] : [],
  ),
)
/** Node flags for the sidelog process only (the bench itself runs without them), e.g. a heap cap. */
const SIDELOG_NODE_OPTIONS = process.env.SIDELOG_NODE_OPTIONS
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
/** Requests per second across all connections; unset means as fast as sidelog answers (saturation). */
const RATE = process.env.BENCH_RATE ? Number(process.env.BENCH_RATE) : undefined

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

interface Scenario {
  name: string
  entriesPerRequest: number
  contentType: string
  body: string
}

const hundred = Array.from({ length: 100 }, (_, i) => entry(i))
const scenarios: Scenario[] = [
  {
    name: '1 entry / request (JSON)',
    entriesPerRequest: 1,
    contentType: 'application/json',
    body: JSON.stringify(entry(1)),
  },
  {
    name: '100 entries / request (JSON array)',
    entriesPerRequest: 100,
    contentType: 'application/json',
    body: JSON.stringify(hundred),
  },
  {
    name: '100 entries / request (NDJSON)',
    entriesPerRequest: 100,
    contentType: 'application/x-ndjson',
    body: hundred.map((e) => JSON.stringify(e)).join('\n'),
  },
]

/** Peak resident set size of a process, from the kernel's high-water mark. */
async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN)
  return kib / 1024
}

async function runScenario(scenario: Scenario) {
  const dir = await mkdtemp(join(tmpdir(), 'sidelog-bench-'))
  try {
    const sidelog = await spawnSidelog({
      ...SETTINGS,
      ...(SIDELOG_NODE_OPTIONS ? { NODE_OPTIONS: SIDELOG_NODE_OPTIONS } : {}),
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    })
    const result = await autocannon({
      url: `${sidelog.url}/logs`,
      method: 'POST',
      connections: CONNECTIONS,
      duration: DURATION_S,
      headers: { 'content-type': scenario.contentType },
      body: scenario.body,
      ...(RATE === undefined ? {} : { overallRate: RATE }),
    })
    const rss = await peakRssMiB(sidelog.child.pid as number)
    // sidelog's own count: autocannon does not count the answers to requests still in flight when it stops.
    const health = (await (await fetch(`${sidelog.url}/health`)).json()) as { lines_processed: number }
    const accepted = health.lines_processed
    sidelog.child.kill('SIGTERM')
    const exit = await sidelog.exited
    const delivered = (await readJsonlTree(join(dir, 'data'))).length
    if (exit.code !== 0 || delivered !== accepted) {
      throw new Error(`${scenario.name}: exit ${exit.code}, accepted ${accepted}, delivered ${delivered}`)
    }
    return {
      scenario: scenario.name,
      'req/s': Math.round(result.requests.average),
      'events/s': Math.round(accepted / DURATION_S),
      'p50 ms': result.latency.p50,
      'p99 ms': result.latency.p99,
      '429s': result.non2xx,
      errors: result.errors + result.timeouts,
      'peak RSS MiB': Math.round(rss),
      delivered,
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const rows = []
for (const scenario of scenarios) {
  process.stderr.write(`running: ${scenario.name} (${DURATION_S} s, ${CONNECTIONS} connections)\n`)
  rows.push(await runScenario(scenario))
}
console.log(
  `\nsidelog bench: file sink, settings ${JSON.stringify({ ...SETTINGS, SIDELOG_NODE_OPTIONS })}, ${CONNECTIONS} connections, ${RATE === undefined ? 'unpaced' : `${RATE} req/s`}, ${DURATION_S} s per scenario, ` +
    `node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}`,
)
console.table(rows)
