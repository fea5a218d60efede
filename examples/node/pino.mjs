// Logging through sidelog from a Node app that uses pino: the sidelog transport batches, retries on 429/503 and
// flushes on exit. In an app of your own: npm install pino, and target 'sidelog/pino-transport'.
//   node examples/node/pino.mjs   (after npm run build, from this repository)
import { randomUUID } from 'node:crypto'
import { pino } from 'pino'

const transport = pino.transport({
  // Inside this repository the built file; in an app that installed sidelog: 'sidelog/pino-transport'.
  target: new URL('../../dist/pino-transport.js', import.meta.url).href,
  options: {
    url: process.env.SIDELOG_URL ?? 'http://127.0.0.1:9090/logs',
    // This script logs everything and exits at once, so its lines are all sent while closing: give that time, even
    // if sidelog answers 429 for a while. Lines still unsent then are written to stderr, not dropped.
    closeTimeoutMs: 60_000,
  },
})
const logger = pino(transport)

const runId = process.env.RUN_ID ?? randomUUID()
const count = Number(process.env.COUNT ?? 10)
for (let i = 0; i < count; i++) logger.info({ tag: `${runId}-${i}`, lang: 'node-pino' }, `example entry ${i}`)

// pino lets a process exit without waiting for its transport's worker. At the end of this script, keep the
// process until the transport has sent everything: ref() its worker, end() it, and wait for 'close'.
transport.ref()
transport.on('close', () => console.log(`sent ${count} entries tagged ${runId}-*`))
transport.end()
