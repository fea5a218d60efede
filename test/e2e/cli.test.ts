// The command line: --help, and a bad setting stopping start-up with a message naming it.
import { execFile } from 'node:child_process'
import { createServer } from 'node:net'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { ConfigSchema } from '../../src/config.js'
import { tempDir } from '../helpers.js'
import { assertBuilt, MAIN, spawnSidelog } from './spawn.js'

const run = promisify(execFile)

async function sidelog(args: string[], env: Record<string, string> = {}) {
  assertBuilt()
  return run(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH, ...env } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => err,
  )
}

describe('sidelog command line', () => {
  it('--help prints every setting and exits 0', async () => {
    const { code, stdout } = await sidelog(['--help'])
    expect(code).toBe(0)
    for (const name of Object.keys(ConfigSchema.properties)) expect(stdout).toContain(`  ${name}  (default:`)
  })

  it('a bad setting stops start-up with exit 1, naming the setting and what it accepts', async () => {
    const { code, stderr } = await sidelog([], { SIDELOG_PORT: '0', FLUSH_INTERVAL: 'soon' })
    expect(code).toBe(1)
    expect(stderr).toContain('sidelog: invalid configuration:')
    expect(stderr).toContain(
      'FLUSH_INTERVAL="soon" is not valid: expected empty, or a number of seconds greater than 0',
    )
  })

  it('Cloud Foundry credentials: an unbound GOOGLE_CREDENTIALS_SERVICE stops start-up; a bound one starts', async () => {
    const unbound = await sidelog([], { SIDELOG_PORT: '0', GOOGLE_CREDENTIALS_SERVICE: 'sidelog-gcp' })
    expect(unbound.code).toBe(1)
    expect(unbound.stderr).toContain('GOOGLE_CREDENTIALS_SERVICE=sidelog-gcp: VCAP_SERVICES is not set')
    const dir = await tempDir()
    const credentials = { client_email: 'a@b', private_key: 'not shown' }
    const bound = await spawnSidelog({
      DATA_DIR: dir,
      DEAD_LETTER_DIR: `${dir}/dead-letter`,
      GOOGLE_CREDENTIALS_SERVICE: 'sidelog-gcp',
      VCAP_SERVICES: JSON.stringify({ 'user-provided': [{ name: 'sidelog-gcp', credentials }] }),
    })
    bound.child.kill('SIGTERM')
    expect(await bound.exited).toEqual({ code: 0, signal: null })
    expect(JSON.stringify(bound.logs)).not.toContain('not shown')
  })

  it('buffers that cannot fit a capped heap stop start-up with exit 1, naming BUFFER_MAX_BYTES', async () => {
    const dir = await tempDir()
    const env = { SIDELOG_PORT: '0', DATA_DIR: dir, NODE_OPTIONS: '--max-old-space-size=32' }
    const { code, stderr } = await sidelog([], env)
    expect(code).toBe(1)
    expect(stderr).toContain('BUFFER_MAX_BYTES (32 MiB) needs about 96 MiB of heap when a sink is down')
    // The same heap takes a buffer that fits.
    const fits = await spawnSidelog({ ...env, BUFFER_MAX_BYTES: '8MiB' })
    fits.child.kill('SIGTERM')
    expect(await fits.exited).toEqual({ code: 0, signal: null })
  })

  it('a port already in use stops start-up with exit 1 and says which', async () => {
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    const { code, stderr } = await sidelog([], { SIDELOG_PORT: String(port), DATA_DIR: await tempDir() })
    blocker.close()
    expect(code).toBe(1)
    expect(stderr).toContain(`cannot listen on 127.0.0.1:${port}`)
  })
})
