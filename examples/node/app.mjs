// Logging through sidelog from Node with nothing but fetch: entries are batched on the client (100 entries or
// 1 s), sent as NDJSON, and kept and re-sent after a 429 or 503 (waiting Retry-After) or while sidelog is not up.
//   node examples/node/app.mjs              sends COUNT entries (default 10), then exits
//   PORT=8080 node examples/node/app.mjs    serves HTTP and logs one entry per request (docker-compose.yml)
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'

const SIDELOG_URL = process.env.SIDELOG_URL ?? 'http://127.0.0.1:9090/logs'
const BATCH_SIZE = 100
const FLUSH_MS = 1000

class SidelogLogger {
  queue = []
  sending = Promise.resolve()
  timer = setInterval(() => this.flush(), FLUSH_MS)

  log(level, message, fields = {}) {
    this.queue.push({ level, message, time: Date.now(), ...fields })
    if (this.queue.length >= BATCH_SIZE) this.flush()
  }

  /** Sends what is queued, one request at a time, in order. */
  flush() {
    this.sending = this.sending.then(async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.slice(0, BATCH_SIZE)
        await this.send(batch)
        this.queue.splice(0, batch.length)
      }
    })
    return this.sending
  }

  async send(batch) {
    const body = batch.map((entry) => JSON.stringify(entry)).join('\n')
    for (let attempt = 0; ; attempt++) {
      let res
      try {
        res = await fetch(SIDELOG_URL, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body })
      } catch {
        // sidelog is not up yet (or restarting): keep the entries and try again.
      }
      if (res?.status === 202) return
      if (res && res.status !== 429 && res.status !== 503) {
        // 400/413/415 name what is wrong with the body; retrying would not change it.
        throw new Error(`sidelog refused the batch: ${res.status} ${await res.text()}`)
      }
      const retryAfter = Number(res?.headers.get('retry-after'))
      const delay = retryAfter > 0 ? retryAfter * 1000 : Math.min(100 * 2 ** attempt, 5000)
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }

  async close() {
    clearInterval(this.timer)
    await this.flush()
  }
}

const logger = new SidelogLogger()

if (process.env.PORT) {
  const server = createServer((req, res) => {
    logger.log('info', `${req.method} ${req.url}`, { path: req.url, user_agent: req.headers['user-agent'] })
    res.end('hello from the example app; its request log went to sidelog\n')
  })
  server.listen(Number(process.env.PORT), () => logger.log('info', `listening on ${process.env.PORT}`))
  process.on('SIGTERM', () => {
    // Logged while the app shuts down: it reaches sidelog only if sidelog still runs, so stop the app first.
    logger.log('info', 'shutting down')
    server.close(() => logger.close().then(() => process.exit(0)))
  })
} else {
  const runId = process.env.RUN_ID ?? randomUUID()
  const count = Number(process.env.COUNT ?? 10)
  for (let i = 0; i < count; i++) logger.log('info', `example entry ${i}`, { tag: `${runId}-${i}`, lang: 'node' })
  await logger.close()
  console.log(`sent ${count} entries tagged ${runId}-*`)
}
