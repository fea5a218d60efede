// The fault suite's Node app: logs COUNT entries through pino and @sidelog/pino-transport, PACE per 10 ms, tagged
// `<PREFIX>-<n>`, then ends the transport (which sends what is left) and says so.
import { pino } from 'pino'

const count = Number(process.env.COUNT)
const pace = Number(process.env.PACE ?? 10)
const transport = pino.transport({
  target: '@sidelog/pino-transport',
  options: { url: process.env.SIDELOG_URL, batchSize: 50, flushIntervalMs: 100, maxRetryDelayMs: 500, closeTimeoutMs: 9000 },
})
const logger = pino(transport)
for (let i = 0; i < count; i++) {
  logger.info({ tag: `${process.env.PREFIX}-${i}` }, `fault entry ${i}`)
  if (i % pace === pace - 1) await new Promise((resolve) => setTimeout(resolve, 10))
}
// end() blocks until the transport has sent what is left (or written it to stderr), as in examples/node/pino.mjs.
transport.end()
console.log(`logged ${count}`)
