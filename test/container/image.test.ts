// The image built by a real container engine from the unmodified Dockerfile, run as a platform would run it: read-only
// root filesystem, a tmpfs /tmp, a named volume for /data, the image's own user, no capabilities, 256 MiB. It takes
// logs, passes its HEALTHCHECK, drains on SIGTERM inside SHUTDOWN_TIMEOUT and exits 0; the image is small and holds
// no dev dependencies. Skips, saying why, where podman or the stand-in base images are missing (prepare.sh).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { readJsonlTree } from '../jsonl-files.js'
import {
  BASE_IMAGES,
  containerTierUnavailable,
  exitOf,
  type Inspected,
  inspect,
  podman,
  ROOT,
} from './podman.js'

const IMAGE = 'localhost/sidelog:container-tier'
const CONTAINER = `sidelog-tier-${process.pid}`
const VOLUME = `sidelog-tier-data-${process.pid}`
const SHUTDOWN_TIMEOUT_S = 8
const ENTRIES = 1000
/** What sidelog's own code and production dependencies may add to the runtime base image. */
const MAX_APP_BYTES = 80 * 1024 * 1024

const unavailable = await containerTierUnavailable()
if (unavailable) console.warn(`SKIPPED container image suite: ${unavailable}`)

/** The Dockerfile's HEALTHCHECK command, in exec form. */
function dockerfileHealthcheck(): string[] {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ')
  const line = /^HEALTHCHECK .*\bCMD (\[.*\])$/m.exec(text)?.[1]
  return JSON.parse(line ?? 'null')
}

describe.skipIf(unavailable !== null)('the image, built from the Dockerfile by podman', () => {
  let image: Inspected
  let buildSeconds = 0

  beforeAll(async () => {
    const started = performance.now()
    await podman('build', '--format', 'docker', '--tag', IMAGE, '--file', 'Dockerfile', '.')
    buildSeconds = (performance.now() - started) / 1000
    console.info(`container tier: podman build took ${buildSeconds.toFixed(1)} s`)
    image = await inspect('image', IMAGE)
  })

  it('is built on the images its FROM lines name, and runs node dist/main.js as 65532 with the HEALTHCHECK', async () => {
    const base = await inspect('image', BASE_IMAGES.runtime)
    // The final stage's layers are the runtime image's plus its own.
    expect(image.RootFS.Layers.slice(0, base.RootFS.Layers.length)).toEqual(base.RootFS.Layers)
    expect(image.Config.User).toBe('65532:65532')
    expect(image.Config.Entrypoint).toEqual(['/nodejs/bin/node'])
    expect(image.Config.Cmd).toEqual(['dist/main.js'])
    expect(image.Config.StopSignal).toBe('SIGTERM')
    expect(image.Config.WorkingDir).toBe('/app')
    expect(image.Healthcheck.Test).toEqual(['CMD', ...dockerfileHealthcheck()])
  })

  it('is small, and its node_modules holds the production dependencies and nothing the lock file marks dev', async () => {
    const base = await inspect('image', BASE_IMAGES.runtime)
    const appBytes = image.Size - base.Size
    console.info(
      `container tier: image ${(image.Size / 2 ** 20).toFixed(0)} MiB, of which sidelog ${(appBytes / 2 ** 20).toFixed(1)} MiB`,
    )
    expect(appBytes).toBeGreaterThan(0)
    expect(appBytes).toBeLessThan(MAX_APP_BYTES)

    // Every package directory under /app/node_modules, as the lock file names them (node_modules/a/node_modules/b).
    const { stdout } = await podman(
      'run',
      '--rm',
      '--network',
      'none',
      IMAGE,
      '--eval',
      `const { readdirSync, existsSync } = require('node:fs')
       const found = []
       const walk = (dir) => {
         for (const name of readdirSync('/app/' + dir)) {
           if (name.startsWith('.')) continue
           if (name.startsWith('@')) { for (const sub of readdirSync('/app/' + dir + '/' + name)) visit(dir + '/' + name + '/' + sub) }
           else visit(dir + '/' + name)
         }
       }
       const visit = (path) => {
         if (!existsSync('/app/' + path + '/package.json')) return
         found.push(path)
         if (existsSync('/app/' + path + '/node_modules')) walk(path + '/node_modules')
       }
       walk('node_modules')
       console.log(JSON.stringify(found))`,
    )
    const installed = new Set(JSON.parse(stdout) as string[])
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'))
    const packages = Object.entries(lock.packages as Record<string, { dev?: boolean }>)
    const dev = packages.filter(([path, meta]) => path !== '' && meta.dev).map(([path]) => path)
    const production = packages.filter(([path, meta]) => path !== '' && !meta.dev).map(([path]) => path)
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))

    expect(dev.length).toBeGreaterThan(50)
    expect(dev.filter((path) => installed.has(path))).toEqual([])
    // A devDependency is in the image only where a production package needs it too (the lock file says so).
    const kept = Object.keys(pkg.devDependencies).filter((name) => installed.has(`node_modules/${name}`))
    for (const name of kept) expect(lock.packages[`node_modules/${name}`].dev, name).toBeFalsy()
    if (kept.length > 0) console.info(`container tier: devDependencies production packages need too: ${kept}`)
    for (const name of Object.keys(pkg.dependencies)) expect(installed).toContain(`node_modules/${name}`)
    // Nothing that the lock file does not know either.
    expect([...installed].filter((path) => !production.includes(path))).toEqual([])
  })

  describe('run read-only, as its own user, with a tmpfs /tmp and a volume for /data', () => {
    let url = ''
    const sent: string[] = []

    beforeAll(async () => {
      await podman('volume', 'create', VOLUME)
      await podman(
        'run',
        '--detach',
        '--name',
        CONTAINER,
        '--read-only',
        '--tmpfs',
        '/tmp',
        '--volume',
        `${VOLUME}:/data`,
        '--memory',
        '256m',
        '--cap-drop',
        'ALL',
        '--security-opt',
        'no-new-privileges',
        '--publish',
        '127.0.0.1::9090',
        '--env',
        'SIDELOG_HOST=0.0.0.0',
        '--env',
        'SINKS=file',
        '--env',
        'SPOOL_DIR=/data/spool',
        // Entries stay buffered until SIGTERM, so the drain is what delivers them.
        '--env',
        'FLUSH_INTERVAL=3600',
        '--env',
        `BATCH_SIZE=${ENTRIES * 2}`,
        '--env',
        `SHUTDOWN_TIMEOUT=${SHUTDOWN_TIMEOUT_S}`,
        IMAGE,
      )
      const { stdout } = await podman('port', CONTAINER, '9090/tcp')
      url = `http://${stdout.trim().split('\n')[0]}`
      await vi.waitFor(
        async () => {
          const res = await fetch(`${url}/health`)
          expect(res.status).toBe(200)
        },
        { timeout: 60_000, interval: 200 },
      )
    })

    afterAll(async () => {
      await podman('rm', '--force', '--volumes', CONTAINER).catch(() => undefined)
      await podman('volume', 'rm', '--force', VOLUME).catch(() => undefined)
    })

    it('runs as 65532, and can write only to /data and /tmp', async () => {
      const { stdout } = await podman(
        'exec',
        CONTAINER,
        '/nodejs/bin/node',
        '--eval',
        `const fs = require('node:fs')
         const uid = /^Uid:\\s+(\\d+)/m.exec(fs.readFileSync('/proc/1/status', 'utf8'))[1]
         const writable = {}
         for (const dir of ['/', '/app', '/app/dist', '/home/nonroot', '/data', '/tmp']) {
           try { fs.writeFileSync(dir + '/.probe', 'x'); fs.rmSync(dir + '/.probe'); writable[dir] = 'ok' }
           catch (err) { writable[dir] = err.code }
         }
         console.log(JSON.stringify({ uid, writable }))`,
      )
      const { uid, writable } = JSON.parse(stdout)
      expect(uid).toBe('65532')
      expect(writable).toEqual({
        '/': 'EROFS',
        '/app': 'EROFS',
        '/app/dist': 'EROFS',
        '/home/nonroot': 'EROFS',
        '/data': 'ok',
        '/tmp': 'ok',
      })
      const container = await inspect('container', CONTAINER)
      expect(container.HostConfig.ReadonlyRootfs).toBe(true)
      expect(container.Config.User).toBe('65532:65532')
    })

    it('passes the HEALTHCHECK the engine runs', async () => {
      // podman schedules health checks with systemd timers; `healthcheck run` runs the same check once, now.
      await podman('healthcheck', 'run', CONTAINER)
      const container = await inspect('container', CONTAINER)
      expect(container.State.Health.Status).toBe('healthy')
      expect(container.State.Health.Log.at(-1).ExitCode).toBe(0)
      expect(container.State.Health.Log.at(-1).Output).toMatch(/^200 \{"status":"healthy"/)
    })

    it('answers 202 to logs, which it keeps in its spool on the volume', async () => {
      for (let request = 0; request < 10; request++) {
        const tags = Array.from({ length: ENTRIES / 10 }, (_, i) => `image-${request}-${i}`)
        const res = await fetch(`${url}/logs`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson' },
          body: tags.map((tag) => JSON.stringify({ message: 'from the container tier', tag })).join('\n'),
        })
        expect(res.status, await res.text()).toBe(202)
        sent.push(...tags)
      }
      const health = (await (await fetch(`${url}/health`)).json()) as {
        sinks: { file: { delivered_events: number } }
      }
      // FLUSH_INTERVAL is an hour: nothing is delivered before SIGTERM.
      expect(health.sinks.file.delivered_events).toBe(0)
    })

    it(`on SIGTERM delivers everything it took into the volume and exits 0 within SHUTDOWN_TIMEOUT (${SHUTDOWN_TIMEOUT_S} s)`, async () => {
      expect(sent).toHaveLength(ENTRIES)
      const started = performance.now()
      // The image's STOPSIGNAL, then a kill only after 30 s: the exit code says which ended it.
      await podman('stop', '--time', '30', CONTAINER)
      const seconds = (performance.now() - started) / 1000
      console.info(`container tier: SIGTERM to exit took ${seconds.toFixed(2)} s`)
      expect((await exitOf(CONTAINER)).code).toBe(0)
      expect(seconds).toBeLessThan(SHUTDOWN_TIMEOUT_S)

      const { stdout, stderr } = await podman('logs', CONTAINER)
      const stopped = `${stdout}\n${stderr}`
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((line) => String(line.msg).startsWith('stopped:'))
      expect(stopped).toMatchObject({ delivered: ENTRIES, dead_lettered: 0, timed_out: false })

      const volume = await inspect('volume', VOLUME)
      const delivered = await readJsonlTree(join(volume.Mountpoint, 'logs'))
      const tags = delivered.map((entry) => entry.tag as string)
      expect(tags.length).toBe(ENTRIES)
      expect(new Set(tags)).toEqual(new Set(sent))
      // Written by the image's user on a fresh named volume: the volume took /data's owner from the image.
      const { stdout: owner } = await podman(
        'run',
        '--rm',
        '--network',
        'none',
        '--volume',
        `${VOLUME}:/data`,
        IMAGE,
        '--eval',
        `const s = require('node:fs').statSync('/data/logs'); console.log(s.uid + ':' + s.gid)`,
      )
      expect(owner.trim()).toBe('65532:65532')
    })
  })
})
