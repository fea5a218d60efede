// The admin listener on the real process: /health, /ready and /metrics on ADMIN_PORT while /logs stays on the main
// port; a busy ADMIN_PORT stops start-up; and on Cloud Run (K_SERVICE set) the process logs in Cloud Logging's format.
import { execFile } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { parseExposition, sampleValue } from '../../src/top/exposition.js'
import { assertBuilt, MAIN, postNdjson, type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { waitForHealth } from '../faults/harness.js'
import { tempDir } from '../helpers.js'

let sidelog: SidelogProcess | undefined
afterEach(() => {
  sidelog?.child.kill('SIGKILL')
  sidelog = undefined
})

/** The admin listener's URL, from the line sidelog logs when it listens (before its "listening" line). */
function adminUrl(process: SidelogProcess): string {
  const line = process.logs.find((l) => typeof l.admin_port === 'number')
  if (!line) throw new Error(`no admin listener line in ${JSON.stringify(process.logs)}`)
  return `http://127.0.0.1:${line.admin_port}`
}

describe('admin listener', () => {
  it('serves /health, /ready and /metrics only; /logs stays on the main port', async () => {
    const dir = await tempDir()
    sidelog = await spawnSidelog({
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
      FLUSH_INTERVAL: '0.1',
      ADMIN_HOST: '127.0.0.1',
      ADMIN_PORT: '0',
    })
    const admin = adminUrl(sidelog)
    expect(admin).not.toBe(sidelog.url)
    expect((await postNdjson(sidelog.url, [{ message: 'a' }, { message: 'b' }])).status).toBe(202)
    const refused = await fetch(`${admin}/logs`, {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    })
    expect(refused.status).toBe(404)
    expect(((await refused.json()) as { message: string }).message).toMatch(
      /admin listener serves GET \/health, \/ready and \/metrics/,
    )

    // The same /health document on both listeners (uptime aside).
    const strip = ({ uptime_s: _, ...rest }: Record<string, unknown>) => rest
    await waitForHealth(admin, (h) => h.sinks.file?.delivered_events === 2)
    const health = (await (await fetch(`${admin}/health`)).json()) as Record<string, unknown>
    expect(strip(health)).toEqual(
      strip((await (await fetch(`${sidelog.url}/health`)).json()) as Record<string, unknown>),
    )

    const metrics = await fetch(`${admin}/metrics`)
    expect(metrics.status).toBe(200)
    const samples = parseExposition(await metrics.text())
    expect(sampleValue(samples, 'sidelog_component_sent_events_total', { component_id: 'file' })).toBe(2)
    expect((await fetch(`${admin}/ready`)).status).toBe(200)
    // The main port serves them too.
    expect((await fetch(`${sidelog.url}/metrics`)).status).toBe(200)

    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    await expect(fetch(`${admin}/health`)).rejects.toThrow()
  })

  it('a busy ADMIN_PORT stops start-up with exit 1, naming the setting', async () => {
    assertBuilt()
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    const dir = await tempDir()
    const result = await promisify(execFile)(process.execPath, [MAIN], {
      env: {
        PATH: process.env.PATH,
        SIDELOG_PORT: '0',
        DATA_DIR: dir,
        ADMIN_HOST: '127.0.0.1',
        ADMIN_PORT: String(port),
      },
    }).catch((err: { code: number; stderr: string }) => err)
    blocker.close()
    expect(result).toMatchObject({ code: 1 })
    expect((result as { stderr: string }).stderr).toContain(
      `admin listener: cannot listen on 127.0.0.1:${port} (ADMIN_HOST, ADMIN_PORT)`,
    )
  })
})

describe('self-logs on Cloud Run', () => {
  it('with K_SERVICE set, the process logs severity, message and time for Cloud Logging', async () => {
    const dir = await tempDir()
    sidelog = await spawnSidelog({
      DATA_DIR: join(dir, 'data'),
      K_SERVICE: 'checkout',
      LOG_FORMAT: 'auto',
    })
    const listening = sidelog.logs.find((l) => String(l.message).startsWith('listening'))
    expect(listening).toMatchObject({ severity: 'INFO', service: 'sidelog', port: expect.any(Number) })
    expect(listening).not.toHaveProperty('msg')
    expect(Number.isNaN(Date.parse(String(listening?.time)))).toBe(false)
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    const stopped = sidelog.logs.find((l) => String(l.message).startsWith('stopped'))
    expect(stopped).toMatchObject({ severity: 'INFO', delivered: 0 })
  })
})
