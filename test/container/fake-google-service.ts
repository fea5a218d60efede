// One of the project's protocol-level Google fakes as a standalone server, for the compose stack where the emulators'
// images cannot be had (test/container/compose.fakes.yml):
//   node --import tsx test/container/fake-google-service.ts gcs --port 4443 --public-url http://gcs:4443
//   node --import tsx test/container/fake-google-service.ts bigquery --port 9050 --dataset app_logs
// The BigQuery fake also answers GET /_fake/rows/DATASET/TABLE with the rows it stored, so that a test can read them
// back (the fake has no tabledata.list).
import { parseArgs } from 'node:util'
import { FakeBigQueryServer } from '../fakes/bigquery-server.js'
import type { Exchange } from '../fakes/fake-server.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'

class ReadableBigQueryServer extends FakeBigQueryServer {
  protected override route(exchange: Exchange): boolean {
    const rows = /^\/_fake\/rows\/([^/]+)\/([^/]+)$/.exec(exchange.path)
    if (rows && exchange.method === 'GET')
      return exchange.send(200, this.rowsOf(rows[1] ?? '', rows[2] ?? ''))
    return super.route(exchange)
  }
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: 'string' },
    'public-url': { type: 'string' },
    dataset: { type: 'string', multiple: true, default: [] },
  },
})
const [kind] = positionals
const port = Number(values.port)
if ((kind !== 'gcs' && kind !== 'bigquery') || !Number.isInteger(port) || port <= 0) {
  console.error(
    'usage: fake-google-service.ts gcs|bigquery --port PORT [--public-url URL] [--dataset NAME]...',
  )
  process.exit(2)
}

const fake = kind === 'gcs' ? new FakeGcsServer() : new ReadableBigQueryServer()
if (fake instanceof FakeBigQueryServer) for (const dataset of values.dataset) fake.datasets.add(dataset)
await fake.start(port, '0.0.0.0')
// Where clients reach it (a resumable upload's session URL names it), as fake-gcs-server's -public-host does.
if (values['public-url']) fake.url = values['public-url']
console.log(`fake ${kind} listening on 0.0.0.0:${port}, known as ${fake.url}`)

// PID 1 in a container gets no default signal handling: stop on the engine's SIGTERM.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void fake.stop().then(() => process.exit(0))
  })
}
