// docker-compose.yml brought up for real, by Debian's docker-compose through podman's Docker-compatible API, with
// test/container/compose.fakes.yml putting the project's own fakes where the emulators' images would be: sidelog's
// health gates the app, only the loopback sees the published ports, the app's requests are logged through sidelog
// into Cloud Storage, BigQuery and stdout, an app crash leaves sidelog alone, and compose stops the app first so that
// what the app logs while it shuts down is delivered. Skips, saying why, where the tier cannot run (prepare.sh).
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { connect } from 'node:net'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { composeUnavailable, containerTierUnavailable, exitOf, inspect, podman, ROOT, run } from './podman.js'

const PROJECT = 'sidelog-tier'
const FILES = ['--file', 'docker-compose.yml', '--file', 'test/container/compose.fakes.yml']
const name = (service: string) => `${PROJECT}_${service}_1`
const APP = 'http://127.0.0.1:8080'
const SIDELOG = 'http://127.0.0.1:9090'
const GCS = 'http://127.0.0.1:4443'
const BIGQUERY = 'http://127.0.0.1:9050'

/** podman runs health checks from systemd timers; without systemd (as here) this suite runs them itself. */
const ENGINE_RUNS_HEALTH_CHECKS = existsSync('/run/systemd/system')

const unavailable = (await containerTierUnavailable()) ?? (await composeUnavailable())
if (unavailable) console.warn(`SKIPPED compose stack suite: ${unavailable}`)

describe.skipIf(unavailable !== null)('docker-compose.yml, run by docker-compose on podman', () => {
  let dir = ''
  let service: ChildProcess | undefined
  let env: NodeJS.ProcessEnv = {}
  let healthDriver: { stop: () => Promise<void> } | undefined

  const compose = (...args: string[]) =>
    run('docker-compose', ['--project-name', PROJECT, ...FILES, ...args], { env })

  beforeAll(async () => {
    // The fakes run from this checkout's node_modules (tsx and the Google client they import).
    expect(existsSync(join(ROOT, 'node_modules/tsx')), 'run npm ci first').toBe(true)
    dir = await mkdtemp(join(tmpdir(), 'sidelog-compose-'))
    const socket = join(dir, 'podman.sock')
    // docker-compose speaks the Docker API: podman serves it on a socket of this test's own, for this test only.
    service = spawn('podman', ['system', 'service', '--time=0', `unix://${socket}`], { stdio: 'ignore' })
    env = { ...process.env, DOCKER_HOST: `unix://${socket}` }
    await vi.waitFor(() => ping(socket), { timeout: 30_000, interval: 100 })
    await removeStack()
    const started = performance.now()
    await compose('build')
    console.info(
      `container tier: docker-compose build took ${((performance.now() - started) / 1000).toFixed(1)} s`,
    )
  })

  afterAll(async () => {
    await healthDriver?.stop()
    await removeStack()
    if (service && service.exitCode === null) {
      const exited = new Promise((resolve) => service?.once('exit', resolve))
      service.kill('SIGTERM')
      await exited
    }
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  /** Whatever a previous run may have left, containers, network and volume: the engine's own account of them. */
  async function removeStack(): Promise<void> {
    await compose('down', '--volumes', '--remove-orphans', '--timeout', '20').catch(() => undefined)
    const { stdout } = await podman(
      'ps',
      '--all',
      '--quiet',
      '--filter',
      `label=com.docker.compose.project=${PROJECT}`,
    )
    const left = stdout.split('\n').filter(Boolean)
    if (left.length > 0) await podman('rm', '--force', ...left)
    await podman('network', 'rm', '--force', `${PROJECT}_default`).catch(() => undefined)
    await podman('volume', 'rm', '--force', `${PROJECT}_sidelog-data`).catch(() => undefined)
  }

  it("starts sidelog first and holds the app back until sidelog's health check passes", async () => {
    const up = run('docker-compose', ['--project-name', PROJECT, ...FILES, 'up', '--detach'], { env })
    up.catch(() => undefined) // awaited below; a failure before then is reported there
    await vi.waitFor(
      async () => {
        expect((await inspect('container', name('sidelog'))).State.Status).toBe('running')
        expect((await fetch(`${SIDELOG}/health`)).status).toBe(200)
      },
      { timeout: 180_000, interval: 250 },
    )
    if (!ENGINE_RUNS_HEALTH_CHECKS) {
      // sidelog serves, but no health check has run yet: compose must still be waiting, the app not started.
      expect((await inspect('container', name('sidelog'))).State.Health.Status).toBe('starting')
      const app = await podman('ps', '--all', '--filter', `name=^${name('app')}$`, '--format', '{{.State}}')
      expect(app.stdout.trim()).not.toBe('running')
      healthDriver = await driveHealthChecks(name('sidelog'))
    }
    await up
    const started = await inspect('container', name('app'))
    expect(started.State.Status).toBe('running')
    const sidelog = await inspect('container', name('sidelog'))
    const passed = (sidelog.State.Health.Log as { ExitCode: number; End: string }[]).find(
      (l) => l.ExitCode === 0,
    )
    expect(passed).toBeDefined()
    expect(new Date(started.State.StartedAt).getTime()).toBeGreaterThanOrEqual(
      new Date(passed?.End ?? Number.POSITIVE_INFINITY).getTime(),
    )
    // The app lives in sidelog's network namespace (not the other way round).
    expect(started.HostConfig.NetworkMode).toBe(`container:${sidelog.Id}`)
    for (const container of [sidelog, started])
      expect(container.HostConfig.RestartPolicy.Name).toBe('unless-stopped')
  })

  it("publishes sidelog's and the app's ports on the host's loopback only", async () => {
    const sidelog = await inspect('container', name('sidelog'))
    expect(sidelog.HostConfig.PortBindings).toEqual({
      '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080' }],
      '9090/tcp': [{ HostIp: '127.0.0.1', HostPort: '9090' }],
    })
    expect((await fetch(`${SIDELOG}/health`)).status).toBe(200)
    const outside = Object.values(networkInterfaces())
      .flat()
      .find((address) => address && address.family === 'IPv4' && !address.internal)
    if (!outside) {
      console.info('container tier: no non-loopback IPv4 address here to try port 9090 on')
      return
    }
    expect(await reachable(outside.address, 9090)).toBe(false)
    expect(await reachable('127.0.0.1', 9090)).toBe(true)
  })

  it("delivers the app's request logs through sidelog to Cloud Storage, BigQuery and stdout, once each", async () => {
    const paths = Array.from({ length: 5 }, (_, i) => `/tier-${i}`)
    for (const path of paths) expect((await fetch(`${APP}${path}`)).status).toBe(200)
    await vi.waitFor(
      async () => {
        const stored = await delivered()
        for (const path of paths) {
          expect(
            stored.gcs.filter((p) => p === path),
            `gcs ${path}`,
          ).toHaveLength(1)
          expect(
            stored.bigquery.filter((p) => p === path),
            `bigquery ${path}`,
          ).toHaveLength(1)
        }
      },
      { timeout: 60_000, interval: 500 },
    )
    const { stdout } = await podman('logs', name('sidelog'))
    for (const path of paths) expect(stdout).toContain(`"path":"${path}"`)
  })

  it("restarts a crashed app in sidelog's network namespace, leaving sidelog running", async () => {
    const before = await inspect('container', name('sidelog'))
    const app = await inspect('container', name('app'))
    // A crash, not a stop: the engine did not ask for it, so the restart policy applies.
    process.kill(app.State.Pid, 'SIGKILL')
    await vi.waitFor(
      async () => {
        const restarted = await inspect('container', name('app'))
        expect(restarted.RestartCount).toBeGreaterThan(app.RestartCount)
        expect(restarted.State.Status).toBe('running')
        expect((await fetch(`${APP}/after-crash`)).status).toBe(200)
      },
      { timeout: 60_000, interval: 250 },
    )
    const after = await inspect('container', name('sidelog'))
    expect([after.State.StartedAt, after.RestartCount]).toEqual([before.State.StartedAt, before.RestartCount])
  })

  it('stops the app before sidelog, so what the app logs while it shuts down is delivered; both exit 0', async () => {
    expect((await fetch(`${APP}/before-stop`)).status).toBe(200)
    const started = performance.now()
    // Only these two: the fakes keep what they stored in memory, and the test reads it afterwards.
    await compose('stop', 'app', 'sidelog')
    console.info(
      `container tier: docker-compose stop took ${((performance.now() - started) / 1000).toFixed(1)} s`,
    )

    const app = await exitOf(name('app'))
    const sidelog = await exitOf(name('sidelog'))
    expect([app.code, sidelog.code]).toEqual([0, 0])
    const lines = (await podman('logs', name('sidelog'))).stdout
      .split('\n')
      .concat((await podman('logs', name('sidelog'))).stderr.split('\n'))
    const records = lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line))
    const draining = records.find((r) => r.signal === 'SIGTERM')
    // sidelog got its SIGTERM only once the app had exited. podman records FinishedAt when it reaps the process,
    // which can lag the exit itself by some tens of milliseconds (72 ms seen in a CI run): allow for that bookkeeping,
    // far less than the 10 s by which the old order (sidelog first, the app killed at its grace period) differed.
    expect(draining?.time).toBeGreaterThanOrEqual(app.finishedAt.getTime() - 1000)
    expect(records.find((r) => String(r.msg).startsWith('stopped:'))).toMatchObject({
      dead_lettered: 0,
      timed_out: false,
    })

    const stored = await delivered()
    for (const sink of [stored.gcs, stored.bigquery]) {
      for (const path of ['/after-crash', '/before-stop'])
        expect(sink.filter((p) => p === path)).toHaveLength(1)
    }
    expect(stored.messages.gcs).toContain('shutting down')
    expect(stored.messages.bigquery).toContain('shutting down')
  })
})

/** The request paths (and messages) the app logged, as the GCS and BigQuery fakes stored them. */
async function delivered() {
  const list = (await (await fetch(`${GCS}/storage/v1/b/sidelog-logs/o`)).json()) as {
    items?: { name: string }[]
  }
  const gcs: Record<string, unknown>[] = []
  for (const item of list.items ?? []) {
    const res = await fetch(`${GCS}/storage/v1/b/sidelog-logs/o/${encodeURIComponent(item.name)}?alt=media`)
    for (const line of (await res.text()).split('\n')) if (line) gcs.push(JSON.parse(line))
  }
  const bigquery = (await (await fetch(`${BIGQUERY}/_fake/rows/app_logs/request_logs`)).json()) as Record<
    string,
    unknown
  >[]
  // BigQuery keeps the fields it has no column for in the JSON column `payload`.
  const rows = bigquery.map((row) => ({ ...JSON.parse(String(row.payload ?? '{}')), ...row }))
  return {
    gcs: gcs.map((entry) => entry.path),
    bigquery: rows.map((row) => row.path),
    messages: { gcs: gcs.map((entry) => entry.message), bigquery: rows.map((row) => row.message) },
  }
}

/**
 * podman runs health checks from systemd timers, and these machines have no systemd: play the timer's part, running
 * the container's own check at its own interval, for as long as the stack is up. Compose still decides what to do
 * with the result.
 */
async function driveHealthChecks(container: string) {
  const config = (await inspect('container', container)).Config.Healthcheck
  const intervalMs = Number(config?.Interval ?? 5e9) / 1e6
  const stopped = new AbortController()
  const loop = (async () => {
    while (!stopped.signal.aborted) {
      // A failing check is the engine's business (it counts retries); the loop only keeps the clock.
      await podman('healthcheck', 'run', container).catch(() => undefined)
      await delay(intervalMs, undefined, { signal: stopped.signal }).catch(() => undefined)
    }
  })()
  return {
    async stop() {
      stopped.abort()
      await loop
    },
  }
}

/** Whether the Docker-compatible API answers on `socket`. */
function ping(socket: string): Promise<void> {
  return new Promise((resolve, reject) => {
    request({ socketPath: socket, path: '/_ping' }, (res) => {
      res.resume()
      if (res.statusCode === 200) resolve()
      else reject(new Error(`/_ping answered ${res.statusCode}`))
    })
      .on('error', reject)
      .end()
  })
}

/** Whether a TCP connection to host:port is accepted (refused or unanswered for 5 s: no). */
function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 5000 })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('timeout', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', () => resolve(false))
  })
}
