// Logging through sidelog from a Node app that uses pino: @sidelog/pino-transport batches, retries on 429/503 under
// one Idempotency-Key per batch, and flushes on exit. In an app of your own: npm install pino @sidelog/pino-transport
// (clients/pino-transport/README.md says how, before it is published).
//   node examples/node/pino.mjs   (after npm run build:clients, from this repository)
import { randomUUID } from 'node:crypto'
import { pino } from 'pino'

const transport = pino.transport({
  // In this repository the npm workspace links the package into node_modules, as an install would.
  target: '@sidelog/pino-transport',
  options: {
    url: process.env.SIDELOG_URL ?? 'http://127.0.0.1:9090/logs',
    // This script logs everything and exits at once, so its lines are all sent while closing: give that the most
    // pino allows (its end() waits 10 s). Lines still unsent then are written to stderr, not dropped.
    closeTimeoutMs: 9_000,
  },
})
const logger = pino(transport)

const runId = process.env.RUN_ID ?? randomUUID()
const count = Number(process.env.COUNT ?? 10)
for (let i = 0; i < count; i++) logger.info({ tag: `${runId}-${i}`, lang: 'node-pino' }, `example entry ${i}`)

// end() blocks until the transport has sent everything (or written what it could not send to stderr); pino gives
// it at most 10 s. Without it, pino still ends the transport when the process exits.
transport.end()
console.log(`sent ${count} entries tagged ${runId}-*`)
