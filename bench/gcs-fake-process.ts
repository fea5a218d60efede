// The Cloud Storage fake in a process of its own, for the bench: in the bench's process it would share one core's
// event loop with the load generator. Driven over IPC: `outage` (true: every upload answers 503; false: recovered),
// `count` (entries, their distinct event ids, and bytes stored), `stop`. Not imported by the bench (it would start a
// fake): types only.
import { gunzipSync } from 'node:zlib'
import { FakeGcsServer } from '../test/fakes/gcs-server.js'

/** The bucket to create, from argv (the bench names it). */
const BUCKET = process.argv[2] ?? 'bench'

export type FakeCommand = { cmd: 'outage'; on: boolean } | { cmd: 'count' } | { cmd: 'stop' }
export interface FakeCount {
  entries: number
  /** Distinct event_id values among them: a line carried into another batch twice, or garbled, would show here. */
  ids: number
  storedBytes: number
  objects: number
}

// Without md5Hash (see FakeGcsOptions): sidelog never reads it, and hashing it would take CPU from what is measured.
const fake = new FakeGcsServer({ md5Hash: false })
await fake.start()
fake.buckets.add(BUCKET)

process.on('message', async (message: FakeCommand) => {
  if (message.cmd === 'outage') {
    if (message.on) fake.inject({ kind: 'status', status: 503 }, { times: Number.MAX_SAFE_INTEGER })
    else fake.clearFaults()
    process.send?.({ ok: true })
  } else if (message.cmd === 'count') {
    const count: FakeCount = { entries: 0, ids: 0, storedBytes: 0, objects: 0 }
    const ids = new Set<string>()
    for (const object of fake.list(BUCKET)) {
      count.objects++
      count.storedBytes += object.data.length
      const data = object.contentEncoding === 'gzip' ? gunzipSync(object.data) : object.data
      for (const line of data.toString().split('\n')) {
        if (line === '') continue
        count.entries++
        ids.add((JSON.parse(line) as { event_id: string }).event_id)
      }
    }
    count.ids = ids.size
    process.send?.(count)
  } else {
    await fake.stop()
    process.send?.({ ok: true })
    process.disconnect()
  }
})
process.send?.({ url: fake.url })
