// The deployment files, read as their platforms would read them: every YAML parses, every sidelog environment is a
// valid sidelog configuration, and the names, ports, paths and limits that tie the files together agree.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { parse, parseAllDocuments } from 'yaml'
import { loadConfig } from '../../src/config.js'
import { googleAccess } from '../../src/google/settings.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8')
// biome-ignore lint/suspicious/noExplicitAny: parsed YAML is checked field by field below
type Yaml = any

interface EnvVar {
  name: string
  value?: string
  valueFrom?: unknown
}

/** A container's env list as settings; values from the Downward API get a stand-in. */
const envOf = (list: EnvVar[]): Record<string, string> =>
  Object.fromEntries(list.map((e) => [e.name, e.value ?? 'from-the-platform']))

/** sidelog's settings as the process would load them (a missing bucket or dataset would throw here). */
const configOf = (env: Record<string, string>) => loadConfig(env)

const DEFAULT_PORT = loadConfig({}).SIDELOG_PORT

/** The app's own shutdown time the Kubernetes manifest budgets for (its comment says so). */
const APP_SHUTDOWN_S = 15

/** A compose duration such as 12s or 1m30s, in seconds. */
function seconds(text: string): number {
  const parts = [...text.matchAll(/(\d+)(h|m|s)/g)]
  if (parts.map((p) => p[0]).join('') !== text) throw new Error(`not a duration this test reads: ${text}`)
  return parts.reduce(
    (sum, [, n, unit]) => sum + Number(n) * { h: 3600, m: 60, s: 1 }[unit as 'h' | 'm' | 's'],
    0,
  )
}

/** The order compose starts services in: each after what it depends on, or whose network namespace it joins. */
function startOrder(services: Record<string, Yaml>): string[] {
  const order: string[] = []
  const visit = (name: string, path: string[]) => {
    if (order.includes(name)) return
    if (path.includes(name)) throw new Error(`dependency cycle: ${[...path, name].join(' → ')}`)
    const service = services[name]
    const needs = Object.keys(service.depends_on ?? {})
    const joined = /^service:(.+)$/.exec(service.network_mode ?? '')?.[1]
    for (const need of joined ? [...needs, joined] : needs) visit(need, [...path, name])
    order.push(name)
  }
  for (const name of Object.keys(services)) visit(name, [])
  return order
}

/** The Dockerfile's HEALTHCHECK command, in exec form. */
function dockerfileHealthcheck(): string[] {
  const text = read('Dockerfile').replace(/\\\n/g, ' ')
  return JSON.parse(/^HEALTHCHECK .*\bCMD (\[.*\])$/m.exec(text)?.[1] ?? 'null')
}

/** A Kubernetes quantity such as 256Mi, in bytes. */
function quantity(text: string): number {
  const match = /^(\d+)(Ki|Mi|Gi)?$/.exec(text)
  if (!match) throw new Error(`not a quantity this test reads: ${text}`)
  return Number(match[1]) * 1024 ** ['', 'Ki', 'Mi', 'Gi'].indexOf(match[2] ?? '')
}

describe('service.yaml (Cloud Run)', () => {
  const service: Yaml = parse(read('service.yaml'))
  const template = service.spec.template
  const containers: Yaml[] = template.spec.containers
  const sidelog = containers.find((c) => c.name === 'sidelog')
  const app = containers.find((c) => c.name === 'app')

  it('is a Knative service with an ingress app and the sidelog sidecar', () => {
    expect(service.apiVersion).toBe('serving.knative.dev/v1')
    expect(service.kind).toBe('Service')
    expect(app.ports).toEqual([{ containerPort: 8080 }])
    // Only the ingress container declares a port.
    expect(sidelog.ports).toBeUndefined()
  })

  it('makes the app wait for sidelog, naming containers that exist', () => {
    const dependencies = JSON.parse(
      template.metadata.annotations['run.googleapis.com/container-dependencies'],
    )
    expect(dependencies).toEqual({ app: ['sidelog'] })
    const names = containers.map((c) => c.name)
    for (const [dependent, needs] of Object.entries(dependencies as Record<string, string[]>)) {
      expect(names).toContain(dependent)
      for (const name of needs) expect(names).toContain(name)
    }
  })

  it("probes sidelog's /health over HTTP on the admin listener, keeps /logs on loopback, and points the app at it", () => {
    const config = configOf(envOf(sidelog.env))
    expect(sidelog.startupProbe.httpGet).toEqual({ path: '/health', port: config.ADMIN_PORT })
    expect(config.ADMIN_HOST).toBe('0.0.0.0')
    expect(config.SIDELOG_HOST).toBe('127.0.0.1')
    expect(config.SIDELOG_PORT).toBe(DEFAULT_PORT)
    expect(config.SINKS).toEqual(['gcs', 'bigquery'])
    expect(config.SHUTDOWN_TIMEOUT).toBeLessThan(10) // Cloud Run kills 10 s after SIGTERM
    const url = new URL(envOf(app.env).SIDELOG_URL ?? '')
    expect([url.hostname, Number(url.port), url.pathname]).toEqual([
      '127.0.0.1',
      config.SIDELOG_PORT,
      '/logs',
    ])
  })

  it('sends dead letters where they outlive the instance: the bucket, then stderr', () => {
    expect(configOf(envOf(sidelog.env)).DEAD_LETTER).toEqual(['gcs', 'stderr'])
  })

  it('limits sidelog to half a CPU and 256 MiB, with its data volume (and spool) in memory', () => {
    expect(sidelog.resources.limits).toEqual({ cpu: '500m', memory: '256Mi' })
    const mount = sidelog.volumeMounts[0]
    expect(mount.mountPath).toBe('/data')
    const volume = template.spec.volumes.find((v: Yaml) => v.name === mount.name)
    expect(volume.emptyDir.medium).toBe('Memory')
    const config = configOf(envOf(sidelog.env))
    expect(config.SPOOL_DIR.startsWith('/data/')).toBe(true)
    expect(config.SPOOL_MAX_BYTES).toBeLessThan(quantity(volume.emptyDir.sizeLimit))
  })
})

describe('docker-compose.yml', () => {
  const compose: Yaml = parse(read('docker-compose.yml'))
  const services: Record<string, Yaml> = compose.services
  const sidelog = services.sidelog
  const app = services.app

  it('builds from contexts and Dockerfiles that exist', () => {
    const builds = Object.values(services).filter((s) => s.build)
    expect(builds.length).toBe(2)
    for (const { build } of builds) {
      expect(existsSync(join(ROOT, build.context)), build.context).toBe(true)
      expect(existsSync(join(ROOT, build.context, build.dockerfile)), build.dockerfile).toBe(true)
    }
    expect(sidelog.build).toEqual({ context: '.', dockerfile: 'Dockerfile' })
  })

  it('gives sidelog the network namespace: the app joins it and reaches sidelog on 127.0.0.1', () => {
    expect(app.network_mode).toBe('service:sidelog')
    expect(sidelog.network_mode).toBeUndefined()
    expect(Object.keys(sidelog.depends_on)).not.toContain('app')
    const config = configOf(sidelog.environment)
    const url = new URL(app.environment.SIDELOG_URL)
    expect([url.hostname, Number(url.port), url.pathname]).toEqual([
      '127.0.0.1',
      config.SIDELOG_PORT,
      '/logs',
    ])
  })

  it("publishes sidelog's port, and the app's through sidelog's namespace, on the host's loopback only", () => {
    const config = configOf(sidelog.environment)
    // A service in another's network namespace cannot publish ports: the namespace's owner does.
    expect(app.ports).toBeUndefined()
    expect(sidelog.ports).toEqual([
      `127.0.0.1:${config.SIDELOG_PORT}:${config.SIDELOG_PORT}`,
      `127.0.0.1:${app.environment.PORT}:${app.environment.PORT}`,
    ])
    // sidelog has no authentication: nothing in the stack is published beyond the loopback.
    for (const [name, service] of Object.entries(services)) {
      for (const port of service.ports ?? []) expect(port, name).toMatch(/^127\.0\.0\.1:\d+:\d+$/)
    }
  })

  it("holds the app back until sidelog's health check passes, with the image's own check", () => {
    expect(app.depends_on).toEqual({ sidelog: { condition: 'service_healthy' } })
    expect(sidelog.healthcheck.test).toEqual(['CMD', ...dockerfileHealthcheck()])
    expect(seconds(sidelog.healthcheck.timeout)).toBeLessThan(seconds(sidelog.healthcheck.interval))
  })

  it('starts sidelog before the app and stops the app first, each inside its grace period', () => {
    const order = startOrder(services)
    expect(order.indexOf('sidelog')).toBeLessThan(order.indexOf('app'))
    for (const upstream of ['gcs', 'gcs-init', 'bigquery'])
      expect(order.indexOf(upstream)).toBeLessThan(order.indexOf('sidelog'))
    // compose stops in the reverse order: the app, then sidelog (which drains), then the emulators.
    expect(order.reverse().slice(0, 2)).toEqual(['app', 'sidelog'])
    const config = configOf(sidelog.environment)
    expect(seconds(sidelog.stop_grace_period)).toBeGreaterThan(config.SHUTDOWN_TIMEOUT)
    expect(seconds(app.stop_grace_period)).toBeGreaterThan(0)
  })

  it('restarts every long-running service, and not the one-shot gcs-init', () => {
    for (const name of ['sidelog', 'app', 'gcs', 'bigquery'])
      expect(services[name].restart, name).toBe('unless-stopped')
    expect(services['gcs-init'].restart).toBeUndefined()
  })

  it('points sidelog at the emulators by their service names, and creates the bucket it uses', () => {
    const config = configOf(sidelog.environment)
    expect(config.SINKS).toEqual(['stdout', 'gcs', 'bigquery'])
    expect(new URL(config.GCS_ENDPOINT).hostname).toBe('gcs')
    expect(new URL(config.BQ_ENDPOINT).hostname).toBe('bigquery')
    expect(services.gcs.image).toMatch(/^fsouza\/fake-gcs-server:/)
    expect(services.bigquery.image).toMatch(/^ghcr\.io\/goccy\/bigquery-emulator:/)
    expect(services.bigquery.command).toContain(`--project=${config.BQ_PROJECT}`)
    const init = services['gcs-init'].command as string[]
    expect(JSON.parse(init[init.indexOf('--data') + 1] ?? '')).toEqual({ name: config.LOG_BUCKET })
    expect(sidelog.depends_on['gcs-init'].condition).toBe('service_completed_successfully')
  })

  it('runs sidelog with a read-only root filesystem, writing only to its volume and /tmp', () => {
    expect(sidelog.read_only).toBe(true)
    expect(sidelog.tmpfs).toEqual(['/tmp'])
    expect(sidelog.volumes).toEqual(['sidelog-data:/data'])
    expect(configOf(sidelog.environment).SPOOL_DIR.startsWith('/data/')).toBe(true)
  })
})

describe("test/container/compose.fakes.yml (the project's fakes in place of the emulators)", () => {
  const services: Record<string, Yaml> = parse(read('docker-compose.yml')).services
  const fakes: Record<string, Yaml> = parse(read('test/container/compose.fakes.yml')).services
  const config = configOf(services.sidelog.environment)
  const buildImage = /^FROM (\S+) AS build$/m.exec(read('Dockerfile'))?.[1]

  it('replaces exactly the services whose images come from elsewhere, with the Node image the Dockerfile builds on', () => {
    expect(Object.keys(fakes).sort()).toEqual(['bigquery', 'gcs', 'gcs-init'])
    const nodeMajor = /^ARG NODE_MAJOR=(\d+)$/m.exec(read('Dockerfile'))?.[1] ?? ''
    for (const service of Object.values(fakes)) {
      expect(service.image).toBe(buildImage?.replace(/\$\{NODE_MAJOR\}/, nodeMajor))
    }
  })

  it('serves each fake on the port sidelog is pointed at, from a script that exists, with the dataset and bucket', () => {
    for (const [name, endpoint] of [
      ['gcs', config.GCS_ENDPOINT],
      ['bigquery', config.BQ_ENDPOINT],
    ] as const) {
      const command = fakes[name].command as string[]
      expect(existsSync(join(ROOT, command[3] ?? '')), command[3]).toBe(true)
      expect(command.slice(4, 7)).toEqual([name, '--port', new URL(endpoint).port])
      expect(fakes[name].volumes).toEqual(['.:/src:ro'])
    }
    expect(fakes.bigquery.command).toContain(config.BQ_DATASET)
    expect(fakes.gcs.command).toContain(config.GCS_ENDPOINT)
    const init = (fakes['gcs-init'].command as string[]).join(' ')
    expect(init).toContain(`${config.GCS_ENDPOINT}/storage/v1/b?project=${config.BQ_PROJECT}`)
    expect(init).toContain(`name: '${config.LOG_BUCKET}'`)
  })
})

describe('deploy/kubernetes', () => {
  const docs: Yaml[] = parseAllDocuments(read('deploy/kubernetes/sidelog-sidecar.yaml')).map((d) => d.toJS())
  const deployment = docs.find((d) => d.kind === 'Deployment')
  const pod = deployment.spec.template.spec
  const sidelog = pod.initContainers.find((c: Yaml) => c.name === 'sidelog')
  const app = pod.containers.find((c: Yaml) => c.name === 'app')

  it('parses into a service account and a deployment whose selector matches its pods', () => {
    expect(docs.map((d) => d.kind)).toEqual(['ServiceAccount', 'Deployment'])
    expect(deployment.spec.selector.matchLabels).toEqual(deployment.spec.template.metadata.labels)
    expect(pod.serviceAccountName).toBe(docs[0].metadata.name)
  })

  it('runs sidelog as a native sidecar: an init container that restarts always', () => {
    expect(sidelog.restartPolicy).toBe('Always')
    expect(pod.containers.map((c: Yaml) => c.name)).not.toContain('sidelog')
  })

  it("gives the pod a grace period for the app's shutdown, then sidelog's drain, in turn", () => {
    // The kubelet stops the app first and the native sidecar only after it, all inside one grace period: the app's
    // own shutdown (15 s, as the manifest says), then SHUTDOWN_TIMEOUT, then a margin.
    const config = configOf(envOf(sidelog.env))
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(
      APP_SHUTDOWN_S + config.SHUTDOWN_TIMEOUT + 2,
    )
  })

  it("probes sidelog's /health over HTTP from the kubelet, on the admin listener, with no process started per probe", () => {
    const config = configOf(envOf(sidelog.env))
    const admin = sidelog.ports.find((p: Yaml) => p.name === 'admin')
    expect(admin.containerPort).toBe(config.ADMIN_PORT)
    expect(config.ADMIN_HOST).toBe('0.0.0.0')
    for (const probe of [sidelog.startupProbe, sidelog.livenessProbe]) {
      expect(probe.exec).toBeUndefined()
      expect(probe.httpGet).toEqual({ path: '/health', port: 'admin' })
      expect(probe.timeoutSeconds).toBeLessThan(probe.periodSeconds + 3)
    }
    // /logs stays on the pod's loopback.
    expect(config.SIDELOG_HOST).toBe('127.0.0.1')
    const url = new URL(envOf(app.env).SIDELOG_URL ?? '')
    expect([url.hostname, Number(url.port), url.pathname]).toEqual([
      '127.0.0.1',
      config.SIDELOG_PORT,
      '/logs',
    ])
  })

  it('locks both containers down: non-root, read-only root filesystem, no privilege escalation, no capabilities', () => {
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, fsGroup: 65532 })
    for (const container of [sidelog, app]) {
      expect(container.securityContext).toMatchObject({
        runAsNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      })
      expect(container.resources.limits.cpu).toBeDefined()
      expect(container.resources.limits.memory).toBeDefined()
    }
    expect(sidelog.resources.limits).toEqual({ cpu: '500m', memory: '256Mi' })
  })

  it('sends dead letters where they outlive the pod: the bucket, then stderr', () => {
    expect(configOf(envOf(sidelog.env)).DEAD_LETTER).toEqual(['gcs', 'stderr'])
  })

  it("mounts an emptyDir where sidelog's DATA_DIR is, with room for the spool, and /tmp", () => {
    const config = configOf(envOf(sidelog.env))
    const mounts = new Map(sidelog.volumeMounts.map((m: Yaml) => [m.mountPath, m.name]))
    for (const path of [config.DATA_DIR, '/tmp']) {
      const volume = pod.volumes.find((v: Yaml) => v.name === mounts.get(path))
      expect(volume?.emptyDir, path).toBeDefined()
    }
    expect(config.DEAD_LETTER_DIR.startsWith(`${config.DATA_DIR}/`)).toBe(true)
    expect(config.SPOOL_DIR.startsWith(`${config.DATA_DIR}/`)).toBe(true)
    const data = pod.volumes.find((v: Yaml) => v.name === mounts.get(config.DATA_DIR))
    expect(config.SPOOL_MAX_BYTES).toBeLessThan(quantity(data.emptyDir.sizeLimit))
  })
})

describe('deploy/cloudfoundry/manifest.yml', () => {
  const manifest: Yaml = parse(read('deploy/cloudfoundry/manifest.yml'))
  const [app] = manifest.applications

  it("runs sidelog as a sidecar of the app's web process, from the droplet", () => {
    const [sidecar] = app.sidecars
    expect(sidecar.name).toBe('sidelog')
    expect(sidecar.process_types).toEqual(['web'])
    expect(sidecar.command).toBe('node --max-semi-space-size=1 --max-old-space-size=128 sidelog/dist/main.js')
    expect(existsSync(join(ROOT, 'deploy/cloudfoundry', app.path))).toBe(true)
  })

  // What Cloud Foundry puts in the environment for the bound service: a stand-in key.
  const vcap = (name: string) =>
    JSON.stringify({
      'user-provided': [
        { name, credentials: { type: 'service_account', client_email: 'a@b', private_key: 'k' } },
      ],
    })

  it('shares one environment that is a valid sidelog configuration and points the app at it', () => {
    const config = configOf({ ...app.env, VCAP_SERVICES: vcap(app.services[0]) })
    expect(config.SINKS).toEqual(['gcs'])
    expect(config.SHUTDOWN_TIMEOUT).toBeLessThan(10)
    const url = new URL(app.env.SIDELOG_URL)
    expect([url.hostname, Number(url.port)]).toEqual(['127.0.0.1', config.SIDELOG_PORT])
  })

  it("takes Google credentials from a bound service (VCAP_SERVICES), never from a key file among the app's files", () => {
    expect(app.env.GOOGLE_APPLICATION_CREDENTIALS).toBeUndefined()
    expect(JSON.stringify(app.env)).not.toMatch(/\.json\b|private_key/)
    expect(app.services).toContain(app.env.GOOGLE_CREDENTIALS_SERVICE)
    const config = configOf({ ...app.env, VCAP_SERVICES: vcap(app.env.GOOGLE_CREDENTIALS_SERVICE) })
    expect(googleAccess(config).auth.credentials?.client_email).toBe('a@b')
    // Without the binding, sidelog stops at start-up naming the setting.
    expect(() => configOf(app.env)).toThrow(
      /GOOGLE_CREDENTIALS_SERVICE=sidelog-gcp: VCAP_SERVICES is not set/,
    )
  })

  it('sends dead letters where they outlive the instance: the bucket, then stderr', () => {
    expect(configOf({ ...app.env, VCAP_SERVICES: vcap(app.services[0]) }).DEAD_LETTER).toEqual([
      'gcs',
      'stderr',
    ])
  })
})
