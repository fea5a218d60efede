// The container tier's access to the engine: podman and docker-compose as child processes, whether they can be used
// here (the tier skips itself, saying why, when not), and the stand-in base image names the Dockerfile asks for.
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const exec = promisify(execFile)

const NODE_MAJOR = /^ARG NODE_MAJOR=(\d+)$/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1]
/** The images the Dockerfile's FROM lines name, as test/container/prepare.sh builds them. */
export const BASE_IMAGES = {
  build: `docker.io/library/node:${NODE_MAJOR}-bookworm-slim`,
  runtime: `gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot`,
} as const

export interface Output {
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to its end; rejects with its output when it exits non-zero. */
export async function run(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<Output> {
  try {
    return await exec(command, args, {
      cwd: ROOT,
      env: options.env ?? process.env,
      maxBuffer: 64 * 1024 * 1024,
      timeout: options.timeoutMs ?? 600_000,
    })
  } catch (err) {
    const { stdout = '', stderr = '', code } = err as { stdout?: string; stderr?: string; code?: unknown }
    throw new Error(
      `${command} ${args.join(' ')} failed (${String(code)}):\n${String(stderr).slice(-4000)}\n${String(stdout).slice(-2000)}`,
    )
  }
}

export const podman = (...args: string[]) => run('podman', args)

/** `podman inspect` of one container, image or volume, parsed. */
export async function inspect(kind: 'container' | 'image' | 'volume', name: string): Promise<Inspected> {
  const { stdout } = await podman(kind, 'inspect', name)
  const [first] = JSON.parse(stdout) as Inspected[]
  if (!first) throw new Error(`podman ${kind} inspect ${name}: nothing`)
  return first
}

// biome-ignore lint/suspicious/noExplicitAny: podman's inspect output is read field by field
export type Inspected = Record<string, any>

/** How a container ended, by the engine's account. */
export async function exitOf(name: string): Promise<{ code: number; startedAt: Date; finishedAt: Date }> {
  const { State } = await inspect('container', name)
  return {
    code: State.ExitCode,
    startedAt: new Date(State.StartedAt),
    finishedAt: new Date(State.FinishedAt),
  }
}

/** null when podman and the stand-in base images are ready; otherwise why the tier cannot run here. */
export async function containerTierUnavailable(): Promise<string | null> {
  try {
    await run('podman', ['info', '--format', '{{.Host.OCIRuntime.Name}}'], { timeoutMs: 60_000 })
  } catch (err) {
    const reason = String(err).includes('(ENOENT)') ? 'podman is not installed' : String(err).split('\n')[0]
    return `${reason}; test/container/prepare.sh installs and configures it`
  }
  for (const image of Object.values(BASE_IMAGES)) {
    const exists = await run('podman', ['image', 'exists', image]).then(
      () => true,
      () => false,
    )
    if (!exists) return `the stand-in base image ${image} is missing; test/container/prepare.sh builds it`
  }
  return null
}

/** null when docker-compose is installed; otherwise why the compose suite cannot run here. */
export async function composeUnavailable(): Promise<string | null> {
  return run('docker-compose', ['version', '--short']).then(
    () => null,
    () => 'docker-compose is not installed; test/container/prepare.sh installs it from Debian',
  )
}
