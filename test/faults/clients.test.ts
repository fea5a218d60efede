// Fault scenario: exactly once from the app's logger to the sinks. Three apps log through the three clients (pino
// transport, Python handler, Go client) to the real sidelog, with a disk spool, through a proxy that loses a share
// of sidelog's answers after sidelog has given them; midway sidelog is SIGKILLed and restarted on the same spool.
// The clients resend each unanswered batch under its Idempotency-Key, and sidelog answers a repeat with its first
// answer, so every entry an app logged is in the file sink and in the bucket exactly once.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { readJsonlTree } from '../jsonl-files.js'
import { getHealth, type SpooledGcs, startSpooledGcs, waitForHealth } from './harness.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const DRIVERS = join(ROOT, 'test/faults/clients')
const COUNT = Number(process.env.FAULT_CLIENT_ENTRIES ?? 3000)
/** One answer in DROP_EVERY is lost on its way back to the client. */
const DROP_EVERY = 4

const hasGo = await promisify(execFile)('go', ['version']).then(
  () => true,
  () => false,
)

interface Proxy {
  url: string
  /** Where requests go: the sidelog process running now. */
  target: string
  readonly counts: { forwarded: number; answersLost: number; refused: number }
  close(): Promise<void>
}

/**
 * An HTTP proxy in front of sidelog that reads sidelog's whole answer and then, for one request in DROP_EVERY,
 * closes the client's connection instead of passing it on: the entries were taken, the client cannot know.
 * While sidelog is down, a request's connection is closed too.
 */
async function startProxy(target: string): Promise<Proxy> {
  const counts = { forwarded: 0, answersLost: 0, refused: 0 }
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const headers: Record<string, string> = {}
    for (const name of ['content-type', 'content-encoding', 'idempotency-key']) {
      const value = req.headers[name]
      if (typeof value === 'string') headers[name] = value
    }
    let answer: Response
    let text: string
    try {
      answer = await fetch(`${proxy.target}${req.url}`, {
        method: req.method ?? 'POST',
        headers,
        body: Buffer.concat(chunks),
      })
      text = await answer.text()
    } catch {
      counts.refused++
      req.socket.destroy()
      return
    }
    counts.forwarded++
    if (counts.forwarded % DROP_EVERY === 0) {
      counts.answersLost++
      req.socket.destroy()
      return
    }
    const retryAfter = answer.headers.get('retry-after')
    res.writeHead(answer.status, {
      'content-type': answer.headers.get('content-type') ?? 'application/json',
      ...(retryAfter ? { 'retry-after': retryAfter } : {}),
    })
    res.end(text)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const proxy: Proxy = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    target,
    counts,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
  return proxy
}

interface AppRun {
  readonly lang: string
  readonly child: ChildProcess
  readonly output: { stdout: string; stderr: string }
  readonly exited: Promise<number | null>
}

function startApp(lang: string, command: string, args: string[], url: string, cwd = ROOT): AppRun {
  const child = spawn(command, args, {
    cwd,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      GOCACHE: process.env.GOCACHE ?? join(process.env.HOME ?? '/tmp', '.cache/go-build'),
      GOPROXY: 'off',
      GOFLAGS: '-mod=mod',
      SIDELOG_URL: `${url}/logs`,
      COUNT: String(COUNT),
      PREFIX: lang,
      PACE: '10',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const output = { stdout: '', stderr: '' }
  child.stdout?.on('data', (chunk) => (output.stdout += chunk))
  child.stderr?.on('data', (chunk) => (output.stderr += chunk))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { lang, child, output, exited }
}

/** How often each tag of `lang` appears among `tags`, for tags 0..COUNT-1: missing and duplicated ones. */
function account(lang: string, tags: readonly string[]) {
  const seen = new Map<string, number>()
  for (const tag of tags) if (tag.startsWith(`${lang}-`)) seen.set(tag, (seen.get(tag) ?? 0) + 1)
  const missing: string[] = []
  for (let i = 0; i < COUNT; i++) if (!seen.has(`${lang}-${i}`)) missing.push(`${lang}-${i}`)
  const duplicated = [...seen].filter(([, n]) => n > 1).map(([tag]) => tag)
  return {
    lang,
    missing: missing.length,
    duplicated: duplicated.length,
    examples: [...missing, ...duplicated].slice(0, 5),
  }
}

let spooled: SpooledGcs | undefined
let proxy: Proxy | undefined
const apps: AppRun[] = []
afterEach(async () => {
  for (const app of apps.splice(0)) app.child.kill('SIGKILL')
  await proxy?.close()
  await spooled?.stop()
})

describe('fault: clients through lost answers and a SIGKILL', () => {
  it('every entry each client logged is in the file sink and the bucket exactly once', {
    timeout: 300_000,
  }, async () => {
    if (!existsSync(join(ROOT, 'clients/pino-transport/dist/index.js'))) {
      throw new Error('clients/pino-transport/dist is missing: run `npm run build:clients` (`npm test` does)')
    }
    if (!hasGo) console.warn('fault clients: go is not on PATH, so the Go client is not run here')
    spooled = await startSpooledGcs('clients', { SINKS: 'file,gcs', BATCH_SIZE: '100' })
    const first = spooled.sidelog
    proxy = await startProxy(first.url)

    apps.push(
      startApp('node', process.execPath, [join(DRIVERS, 'driver.mjs')], proxy.url),
      startApp('python', 'python3', [join(DRIVERS, 'driver.py')], proxy.url),
    )
    if (hasGo) apps.push(startApp('go', 'go', ['run', '.'], proxy.url, join(DRIVERS, 'go')))

    // Midway: some entries delivered, the apps still logging.
    await waitForHealth(first.url, (h) => (h.sinks.file?.delivered_events ?? 0) >= COUNT / 2)
    const beforeKill = await getHealth(first.url)
    first.child.kill('SIGKILL')
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' })
    const second = await spooled.restart()
    proxy.target = second.url
    // The keys the first process answered were journaled beside the spool and survive the SIGKILL.
    const restored = second.logs.find((l) => l.msg === 'idempotency: keys of the last run restored')
    expect(Number(restored?.keys)).toBeGreaterThan(0)

    const codes = await Promise.all(apps.map((app) => app.exited))
    for (const [i, app] of apps.entries()) {
      expect({ lang: app.lang, code: codes[i], stderr: app.output.stderr.slice(0, 500) }).toEqual({
        lang: app.lang,
        code: 0,
        stderr: expect.not.stringMatching(/here instead/),
      })
      expect(app.output.stdout).toContain(`logged ${COUNT}`)
    }

    await waitForHealth(second.url, (h) => h.buffer_size === 0)
    const afterRestart = await getHealth(second.url)
    second.child.kill('SIGTERM')
    expect(await second.exited).toEqual({ code: 0, signal: null })

    const fileTags = (await readJsonlTree(join(spooled.spoolDir, '..', 'data', 'logs'))).map(
      (e) => e.tag as string,
    )
    const bucketTags = spooled.gcs
      .list('clients-logs')
      .flatMap((o) => o.data.toString().trim().split('\n'))
      .map((line) => (JSON.parse(line) as { tag: string }).tag)
    const langs = apps.map((app) => app.lang)
    const figures = {
      entries_per_client: COUNT,
      proxy: proxy.counts,
      keys_restored_after_kill: Number(restored?.keys),
      replayed_before_kill: (beforeKill as unknown as { idempotency: { replayed: number } }).idempotency
        .replayed,
      recovered_from_spool: (afterRestart as unknown as { idempotency: { recovered_from_spool: number } })
        .idempotency.recovered_from_spool,
      replayed_after_restart: (afterRestart as unknown as { idempotency: { replayed: number } }).idempotency
        .replayed,
      file: langs.map((lang) => account(lang, fileTags)),
      gcs: langs.map((lang) => account(lang, bucketTags)),
    }
    console.log(`fault clients: ${JSON.stringify(figures)}`)
    // Answers were lost, and the clients' repeats were answered from the idempotency store.
    expect(proxy.counts.answersLost).toBeGreaterThan(0)
    expect(figures.replayed_before_kill + figures.replayed_after_restart).toBeGreaterThan(0)
    for (const sink of [figures.file, figures.gcs]) {
      for (const row of sink) expect(row).toEqual({ lang: row.lang, missing: 0, duplicated: 0, examples: [] })
    }
    expect(fileTags.length).toBe(COUNT * langs.length)
    expect(bucketTags.length).toBe(COUNT * langs.length)
  })
})
