// Logging through sidelog from Node with nothing but fetch: entries are batched on the client (100 entries or
// 1 s), sent as NDJSON under one Idempotency-Key per batch, and kept and re-sent (same key) after a 429, 503, 5xx or
// a lost answer. A body sidelog refuses is written to stderr and dropped: logging never crashes the app. For pino,
// use @sidelog/pino-transport (pino.mjs) instead of code like this.
//   node examples/node/app.mjs              sends COUNT entries (default 10), then exits
//   PORT=8080 node examples/node/app.mjs    serves HTTP and logs one entry per request (docker-compose.yml)
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'

const SIDELOG_URL = process.env.SIDELOG_URL ?? 'http://127.0.0.1:9090/logs'
const BATCH_SIZE = 100
const FLUSH_MS = 1000
const MAX_QUEUE = 10_000

class SidelogLogger {
  queue = []
  dropped = 0
  sending = Promise.resolve()
  timer = setInterval(() => this.flush(), FLUSH_MS)

  log(level, message, fields = {}) {
    if (this.queue.length >= MAX_QUEUE) {
      this.dropped++ // bounded memory: a sidecar that is down for long costs entries, not the app
      return
    }
    this.queue.push({ level, message, time: Date.now(), ...fields })
    if (this.queue.length >= BATCH_SIZE) this.flush()
  }

  /** Sends what is queued, one request at a time, in order. Never rejects. */
  flush() {
    this.sending = this.sending.then(async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, BATCH_SIZE)
        try {
          await this.send(batch.map((entry) => JSON.stringify(entry)), randomUUID())
        } catch (err) {
          console.error(`sidelog: could not send ${batch.length} entries (${err}); here they are`)
          for (const entry of batch) console.error(JSON.stringify(entry))
        }
      }
    })
    return this.sending
  }

  async send(lines, key) {
    for (let attempt = 0; ; attempt++) {
      let res
      let text = ''
      try {
        res = await fetch(SIDELOG_URL, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson', 'idempotency-key': key },
          body: lines.join('\n'),
          signal: AbortSignal.timeout(10_000),
        })
        text = await res.text()
      } catch {
        // sidelog is not up yet, restarting, or the answer was lost: the same batch under the same key again.
      }
      if (res?.status === 202) return
      // sidelog took the entries without making them durable, and says not to resend them.
      if (res?.status === 500 && text.includes('SPOOL_WRITE_FAILED')) return
      if (res?.status === 413 && lines.length > 1) {
        const half = Math.ceil(lines.length / 2)
        await this.send(lines.slice(0, half), randomUUID())
        return this.send(lines.slice(half), randomUUID())
      }
      if (res && res.status !== 429 && res.status < 500) {
        // 400/413/415/422 name what is wrong with the body; retrying would not change it. Report and drop.
        console.error(`sidelog refused ${lines.length} entries: ${res.status} ${text}`)
        for (const line of lines) console.error(line)
        return
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
