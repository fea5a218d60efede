// The bench's ceiling: Fastify 5 with its defaults, parsing each body (JSON with Fastify's own parser, NDJSON line
// by line) and discarding it, answering 202. What any Node server can do on this machine; sidelog is measured
// against it. Plain JavaScript so that it runs without a loader, and its RSS is Node's and Fastify's alone.
// Prints {"port": N} on stdout once listening.
import Fastify from 'fastify'

const app = Fastify({ bodyLimit: 5 * 1024 ** 2 })
app.addContentTypeParser(['application/x-ndjson'], { parseAs: 'string' }, (_request, body, done) => {
  const entries = []
  for (const line of body.split('\n')) if (line.trim() !== '') entries.push(JSON.parse(line))
  done(null, entries)
})
app.post('/logs', async (request, reply) => {
  const count = Array.isArray(request.body) ? request.body.length : 1
  return reply.code(202).send({ accepted: count })
})
await app.listen({ host: '127.0.0.1', port: 0 })
process.stdout.write(`${JSON.stringify({ port: app.server.address().port })}\n`)
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)))
