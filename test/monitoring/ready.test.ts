// GET /ready: 200 while sidelog would take a request and its sinks deliver; 503 with the reasons while a sink is
// failing, a buffer is too full to take a request, or sidelog is draining. /health stays 200 throughout.
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.js'
import { postAccepted, silentLogger, tempDir, testConfig } from '../helpers.js'

async function appWith(env: Record<string, string>) {
  const dir = await tempDir()
  return { app: await createApp(testConfig(dir, env), { logger: silentLogger }), dir }
}

describe('GET /ready', () => {
  it('is 200 while healthy, and 503 naming the reason once draining', async () => {
    const { app } = await appWith({})
    const ready = await app.server.inject('/ready')
    expect(ready.statusCode).toBe(200)
    expect(ready.json()).toEqual({ ready: true, reasons: [] })
    app.pipeline.stopAccepting()
    const draining = await app.server.inject('/ready')
    expect(draining.statusCode).toBe(503)
    expect(draining.json().reasons).toEqual(['draining: sidelog is shutting down'])
    expect((await app.server.inject('/health')).statusCode).toBe(200)
    await app.close()
  })

  it('is 503 while a sink is failing, with its last error, and 200 again once it delivers', async () => {
    const { app, dir } = await appWith({ RETRY_INITIAL_BACKOFF: '0.01', RETRY_MAX_BACKOFF: '0.05' })
    // The file sink's root becomes a file: its writes fail until it is a directory again.
    const logs = join(dir, 'data', 'logs')
    await rm(logs, { recursive: true, force: true })
    await writeFile(logs, 'not a directory')
    await postAccepted(app, [{ message: 'one' }])
    await app.pipeline.flushNow()
    const failing = await app.server.inject('/ready')
    expect(failing.statusCode).toBe(503)
    expect(failing.json().reasons[0]).toMatch(/^sink file is failing: .*not a directory/)
    const health = await app.server.inject('/health')
    expect(health.statusCode).toBe(200)
    expect(health.json().status).toBe('degraded')
    await rm(logs)
    await postAccepted(app, [{ message: 'two' }])
    await app.pipeline.flushNow()
    expect((await app.server.inject('/ready')).statusCode).toBe(200)
    await app.close()
  })

  it('is 503 while a buffer is past its high-water mark (requests would get 429)', async () => {
    const { app } = await appWith({ BUFFER_MAX_EVENTS: '10', BATCH_SIZE: '10', FLUSH_INTERVAL: '3600' })
    await postAccepted(
      app,
      Array.from({ length: 10 }, (_, i) => ({ message: `m${i}` })),
    )
    // The open batch holds all ten: nothing has been written yet.
    const full = await app.server.inject('/ready')
    expect(full.statusCode).toBe(503)
    expect(full.json().reasons).toEqual([expect.stringMatching(/buffer of sink "file" is full/)])
    await app.close()
  })
})
