// The container image, as far as it can be checked without a container engine: the Dockerfile's stages say what
// the issue asks (non-root, exec form, STOPSIGNAL, a healthcheck without shell tools), and its final command,
// `node dist/main.js`, works on a clean `npm run build` with production dependencies, as does the healthcheck.
import { execFile, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { heapProblem, loadConfig } from '../../src/config.js'
import { readJsonlTree, tempDir } from '../helpers.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const run = promisify(execFile)

interface Instruction {
  readonly keyword: string
  readonly args: string
}

/** The Dockerfile's instructions by stage, with continuation lines joined and comments dropped. */
function stages(): Instruction[][] {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ')
  const result: Instruction[][] = []
  for (const line of text.split('\n')) {
    const match = /^\s*([A-Z]+)\s+(.*)$/.exec(line)
    if (!match || line.trimStart().startsWith('#')) continue
    const [, keyword = '', args = ''] = match
    if (keyword === 'FROM') result.push([])
    result.at(-1)?.push({ keyword, args: args.trim() })
  }
  return result
}

const arg = (stage: Instruction[], keyword: string) =>
  stage.filter((i) => i.keyword === keyword).map((i) => i.args)

/** The NODE_OPTIONS the final stage sets. */
const imageNodeOptions = () =>
  /NODE_OPTIONS="([^"]+)"/.exec(arg(stages()[1] ?? [], 'ENV').join(' '))?.[1] ?? ''

describe('Dockerfile', () => {
  const [build = [], final = []] = stages()

  it('builds in one stage and runs on distroless Node as the non-root user in another', () => {
    expect(stages()).toHaveLength(2)
    expect(arg(build, 'FROM')[0]).toMatch(/^node:\$\{NODE_MAJOR\}-bookworm-slim AS build$/)
    expect(arg(final, 'FROM')[0]).toMatch(/^gcr\.io\/distroless\/nodejs\$\{NODE_MAJOR\}-debian12:nonroot$/)
    expect(arg(final, 'USER')).toEqual(['65532:65532'])
    expect(arg(build, 'RUN').join(' ')).toContain('npm prune --omit=dev')
  })

  it('runs node dist/main.js in exec form, stops with SIGTERM, and checks health without a shell', () => {
    expect(JSON.parse(arg(final, 'ENTRYPOINT')[0] ?? '')).toEqual(['/nodejs/bin/node'])
    expect(JSON.parse(arg(final, 'CMD')[0] ?? '')).toEqual(['dist/main.js'])
    expect(arg(final, 'STOPSIGNAL')).toEqual(['SIGTERM'])
    const healthcheck = arg(final, 'HEALTHCHECK')[0] ?? ''
    expect(JSON.parse(healthcheck.slice(healthcheck.indexOf('CMD ') + 4))).toEqual([
      '/nodejs/bin/node',
      'dist/healthcheck.js',
    ])
  })

  it('copies only what exists and what .dockerignore lets through', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
    for (const copy of arg(build, 'COPY')) {
      const sources = copy.split(/\s+/).slice(0, -1)
      for (const source of sources) {
        expect(existsSync(join(ROOT, source)), source).toBe(true)
        expect(ignored, source).not.toContain(source)
      }
    }
  })

  it('caps the heap for a 256 MiB container, with room for the default buffers', () => {
    expect(imageNodeOptions()).toBe('--max-semi-space-size=1 --max-old-space-size=128')
    // V8's limit is the old space plus three semi-spaces; the default 32 MiB buffer must fit in it.
    const limit = (128 + 3 * 1) * 1024 ** 2
    expect(heapProblem(loadConfig({}), limit)).toBeUndefined()
    expect(heapProblem(loadConfig({ BUFFER_MAX_BYTES: '64MiB' }), limit)).toContain(
      'BUFFER_MAX_BYTES (64 MiB)',
    )
  })

  it('keeps its data where the volume is, and the non-root user owns it', () => {
    expect(arg(final, 'VOLUME')).toEqual(['["/data"]'])
    const env = arg(final, 'ENV').join(' ')
    expect(env).toContain('DATA_DIR=/data')
    expect(env).toContain('DEAD_LETTER_DIR=/data/dead-letter')
    expect(arg(final, 'COPY')).toContain('--from=build --chown=65532:65532 /out/data /data')
  })
})

describe('the final stage, on a clean build', () => {
  // Inside the repository, so that dist/ resolves node_modules as the image's /app/dist does.
  const out = join(ROOT, '.tmp', `clean-build-${process.pid}`)

  beforeAll(async () => {
    await rm(out, { recursive: true, force: true })
    await mkdir(out, { recursive: true })
    await run(process.execPath, [
      join(ROOT, 'node_modules/typescript/bin/tsc'),
      '-p',
      join(ROOT, 'tsconfig.build.json'),
      '--outDir',
      join(out, 'dist'),
    ])
  })

  afterAll(async () => {
    await rm(out, { recursive: true, force: true })
  })

  it('imports no package outside the production dependencies', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
    const allowed = new Set(Object.keys(pkg.dependencies))
    const imported = new Set<string>()
    for (const file of await readdir(join(out, 'dist'), { recursive: true })) {
      if (!file.endsWith('.js')) continue
      const text = await readFile(join(out, 'dist', file), 'utf8')
      const specifiers = [
        ...text.matchAll(/^(?:import|export)\s[^;]*?\sfrom\s+'([^']+)'/gm),
        ...text.matchAll(/^import\s+'([^']+)'/gm),
        ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g),
      ].map((match) => match[1] ?? '')
      for (const specifier of specifiers) {
        if (specifier.startsWith('.')) continue
        if (specifier.startsWith('node:')) continue
        const name = specifier.startsWith('@')
          ? specifier.split('/').slice(0, 2).join('/')
          : specifier.split('/')[0]
        imported.add(name ?? specifier)
      }
    }
    expect(imported.size).toBeGreaterThan(5)
    expect([...imported].filter((name) => !allowed.has(name))).toEqual([])
  })

  it('serves, passes its healthcheck, delivers, and exits 0 on SIGTERM; the healthcheck then fails', async () => {
    const dir = await tempDir()
    const port = String(await freePort())
    const env = {
      PATH: process.env.PATH,
      // The image's heap flags, so the process runs as it would in the container.
      NODE_OPTIONS: imageNodeOptions(),
      SIDELOG_PORT: port,
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'data/dead-letter'),
    }
    // Exactly the image's ENTRYPOINT and CMD, from the image's WORKDIR.
    const child = spawn(process.execPath, ['dist/main.js'], {
      cwd: out,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    await new Promise<void>((resolve, reject) => {
      child.stderr?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('listening')) resolve()
      })
      void exited.then((code) => reject(new Error(`exited early with ${code}`)))
    })

    const healthy = await run(process.execPath, ['dist/healthcheck.js'], { cwd: out, env })
    expect(healthy.stdout).toMatch(/^200 \{"status":"healthy"/)

    const res = await fetch(`http://127.0.0.1:${port}/logs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'from the clean build', tag: 'image' }),
    })
    expect(res.status).toBe(202)
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
    const delivered = await readJsonlTree(join(dir, 'data/logs'))
    expect(delivered.map((e) => e.tag)).toEqual(['image'])

    const failed = await run(process.execPath, ['dist/healthcheck.js'], { cwd: out, env }).catch((err) => err)
    expect(failed.code).toBe(1)
    expect(failed.stderr).toMatch(/^sidelog healthcheck: /)
  })
})

/** A port nobody listens on right now (the healthcheck needs to know sidelog's port in advance). */
async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}
