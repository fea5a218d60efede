// The examples run against the real sidelog process, as a user would run them, while sidelog is saturated: its
// buffer holds one batch and the first uploads to the (fake) bucket fail, so clients meet 429 and must back off
// and keep their entries. Every entry of every example must arrive, once.
import { execFile } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { tempDir } from '../helpers.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const COUNT = 300
const BUCKET = 'example-logs'
const run = promisify(execFile)

/** Whether a command is on PATH (Go is installed by .ci/run from Debian's packages; elsewhere it may be missing). */
async function has(command: string): Promise<boolean> {
  return run(command, ['version']).then(
    () => true,
    () => false,
  )
}

let gcs: FakeGcsServer
let sidelog: SidelogProcess
const runs: { lang: string; runId: string; tags: string[] }[] = []

beforeAll(async () => {
  gcs = new FakeGcsServer()
  await gcs.start()
  gcs.buckets.add(BUCKET)
  const dir = await tempDir()
  sidelog = await spawnSidelog({
    SINKS: 'gcs',
    LOG_BUCKET: BUCKET,
    GCS_ENDPOINT: gcs.url,
    BATCH_SIZE: '100',
    BUFFER_MAX_EVENTS: '100',
    // The general default before per-sink batching: at the gcs sink's own 30 s, a part-filled batch would hold the
    // one-batch buffer (and 429s) for longer than curl's retries last.
    FLUSH_INTERVAL: '5',
    RETRY_INITIAL_BACKOFF: '0.2',
    DATA_DIR: join(dir, 'data'),
    DEAD_LETTER_DIR: join(dir, 'dead-letter'),
  })
  // The first batch takes a while to land: meanwhile the buffer is full and every client is told 429.
  gcs.inject({ kind: 'status', status: 503 }, { times: 4 })
})

afterAll(async () => {
  sidelog?.child.kill('SIGTERM')
  await sidelog?.exited
  await gcs?.stop()
})

/** Runs one example to completion with its own RUN_ID, and records which tags it should have delivered. */
async function runExample(
  lang: string,
  command: string,
  args: string[],
  tags: (runId: string) => string[],
  cwd = ROOT,
) {
  const runId = `${lang}-${process.pid}`
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME ?? tmpdir(),
    GOCACHE: process.env.GOCACHE ?? join(process.env.HOME ?? tmpdir(), '.cache/go-build'),
    // The Go example's only dependency is the repository's own client (a replace directive): nothing to download.
    GOPROXY: 'off',
    GOFLAGS: '-mod=mod',
    SIDELOG_URL: `${sidelog.url}/logs`,
    RUN_ID: runId,
    COUNT: String(COUNT),
  }
  const { stdout, stderr } = await run(command, args, { cwd, env, timeout: 120_000 })
  if (!/sent|accepted/.test(stdout)) throw new Error(`${lang} example said: ${stdout}${stderr}`)
  runs.push({ lang, runId, tags: tags(runId) })
  return stdout
}

const numbered = (runId: string) => Array.from({ length: COUNT }, (_, i) => `${runId}-${i}`)

describe('examples against a saturated sidelog', () => {
  it('all run (the pino one last) and finish, having waited out 429s', { timeout: 180_000 }, async () => {
    const goAvailable = await has('go')
    if (!goAvailable) console.warn('examples: go is not on PATH, so the Go example is not run here')
    const outputs = await Promise.all([
      runExample('node', process.execPath, ['examples/node/app.mjs'], numbered),
      runExample('python', 'python3', ['examples/python/app.py'], numbered),
      runExample('curl', 'sh', ['examples/curl/send.sh'], (id) => [
        `${id}-single`,
        ...numbered(id),
        ...numbered(`${id}-gz`),
      ]),
      ...(goAvailable ? [runExample('go', 'go', ['run', '.'], numbered, join(ROOT, 'examples/go'))] : []),
    ])
    // The pino example sends everything while closing, which pino bounds at 10 s: it runs after the others, when
    // the bucket works again and only the one-batch buffer says 429.
    outputs.push(await runExample('pino', process.execPath, ['examples/node/pino.mjs'], numbered))
    for (const output of outputs) expect(output).toMatch(/sent|accepted/)
    const health = (await (await fetch(`${sidelog.url}/health`)).json()) as {
      refused_requests: Record<string, number>
    }
    expect(health.refused_requests.BUFFER_FULL).toBeGreaterThan(0)
  })

  it("delivers every example's entries exactly once", async () => {
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    const delivered = gcs
      .list(BUCKET)
      .flatMap((o) => o.data.toString().trim().split('\n'))
      .map((line) => JSON.parse(line) as { tag: string; lang: string })
    expect(runs.length).toBeGreaterThanOrEqual(4)
    for (const { lang, tags } of runs) {
      const got = delivered.filter((e) => tags.includes(e.tag)).map((e) => e.tag)
      expect(got.length, lang).toBe(tags.length)
      expect(new Set(got).size, lang).toBe(tags.length)
    }
    expect(delivered.length).toBe(runs.reduce((sum, r) => sum + r.tags.length, 0))
  })
})
