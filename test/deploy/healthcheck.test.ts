// The image's HEALTHCHECK runs `node dist/healthcheck.js` at every probe, inside the container's memory limit: it must
// stay small. It loads node:http and the listen defaults only (not fetch's undici, not the configuration schema),
// and against the real process it answers as sidelog's /health does, in well under the 96 MiB the old one took.
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { DEFAULT_HOST, DEFAULT_PORT } from '../../src/listen-address.js'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { tempDir } from '../helpers.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const run = promisify(execFile)

/** The specifiers a module imports. */
const importsOf = (path: string) =>
  [...readFileSync(join(ROOT, path), 'utf8').matchAll(/^import .* from '([^']+)'$/gm)].map((m) => m[1])

let sidelog: SidelogProcess | undefined
afterEach(() => {
  sidelog?.child.kill('SIGKILL')
})

describe('dist/healthcheck.js', () => {
  it('imports only node:http and the listen defaults, which import nothing', () => {
    expect(importsOf('src/healthcheck.ts')).toEqual(['node:http', './listen-address.js'])
    expect(importsOf('src/listen-address.ts')).toEqual([])
    // The defaults it reads are the configuration's own.
    expect([DEFAULT_HOST, DEFAULT_PORT]).toEqual([loadConfig({}).SIDELOG_HOST, loadConfig({}).SIDELOG_PORT])
  })

  it('passes against the real process with a small footprint, and fails once it is gone', async () => {
    const dir = await tempDir()
    sidelog = await spawnSidelog({ DATA_DIR: join(dir, 'data'), DEAD_LETTER_DIR: join(dir, 'dead-letter') })
    const port = new URL(sidelog.url).port
    // Reports, at exit, the peak RSS and whether Node loaded undici (fetch).
    const preload = join(dir, 'cost.cjs')
    await writeFile(
      preload,
      `process.on('exit', () => process.stderr.write('cost ' + JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS, undici: process.moduleLoadList.some((m) => m.includes('undici')) }) + '\\n'))`,
    )
    const env = {
      PATH: process.env.PATH,
      SIDELOG_PORT: port,
      // The image's heap flags reach the healthcheck too.
      NODE_OPTIONS: '--max-semi-space-size=1 --max-old-space-size=128',
    }
    const startedAt = Date.now()
    const healthy = await run(process.execPath, ['-r', preload, 'dist/healthcheck.js'], { cwd: ROOT, env })
    const tookMs = Date.now() - startedAt
    expect(healthy.stdout).toMatch(/^200 \{"status":"healthy"/)
    const cost = JSON.parse(/^cost (.*)$/m.exec(healthy.stderr)?.[1] ?? 'null') as {
      maxRssKiB: number
      undici: boolean
    }
    expect(cost.undici).toBe(false)
    expect(cost.maxRssKiB / 1024).toBeLessThan(64)
    console.log(
      `healthcheck: peak RSS ${(cost.maxRssKiB / 1024).toFixed(1)} MiB, ${tookMs} ms with node's start-up`,
    )

    sidelog.child.kill('SIGTERM')
    await sidelog.exited
    const failed = await run(process.execPath, ['dist/healthcheck.js'], { cwd: ROOT, env }).catch(
      (err) => err,
    )
    expect(failed.code).toBe(1)
    expect(failed.stderr).toMatch(
      new RegExp(`^sidelog healthcheck: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}`),
    )
  })
})
