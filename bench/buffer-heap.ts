// npm run bench:heap: how much memory a full buffer takes, in the heap and in Buffers outside it (where a request's
// enriched lines live, see EventRun). A sink that cannot deliver (Cloud Storage at a closed port) keeps every
// batch; 100-entry NDJSON bodies are posted until sidelog answers 429, and memory is measured after a full GC,
// before and after. config.ts's HEAP_PER_BUFFERED_BYTE is checked against it.
// With the container image's flags (not through npm, whose own tools would get the small heap too):
//   NODE_OPTIONS="--max-semi-space-size=1 --max-old-space-size=128" node --expose-gc --import tsx bench/buffer-heap.ts
// RSS here includes tsx compiling src/ on the fly, about 30 MiB more than the built process.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { pino } from 'pino'
import { createApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with --expose-gc (npm run bench:heap does)')
const MiB = 1024 ** 2

const dir = await mkdtemp(join(tmpdir(), 'sidelog-heap-'))
const config = loadConfig({
  SINKS: 'gcs',
  LOG_BUCKET: 'unreachable-bucket',
  GCS_ENDPOINT: 'http://127.0.0.1:9',
  DATA_DIR: join(dir, 'data'),
  DEAD_LETTER_DIR: join(dir, 'dead-letter'),
  BUFFER_MAX_BYTES: process.env.BUFFER_MAX_BYTES ?? '32MiB',
  BUFFER_MAX_EVENTS: '1000000',
  RETRY_MAX_ELAPSED: '3600',
})
const app = await createApp(config, { logger: pino({ level: 'silent' }), stdout: new PassThrough() })
gc()
const before = process.memoryUsage()

const entry = (i: number) =>
  JSON.stringify({
    level: 'info',
    message: `request handled in ${i % 1000} ms for user ${i}`,
    path: `/api/v1/orders/${i}`,
    status: 200,
    user_agent: 'Mozilla/5.0 (X11; Linux x86_64)',
  })
let i = 0
for (;;) {
  const payload = Array.from({ length: 100 }, () => entry(i++)).join('\n')
  const res = await app.server.inject({
    method: 'POST',
    url: '/logs',
    payload,
    headers: { 'content-type': 'application/x-ndjson' },
  })
  if (res.statusCode === 429) break
}
gc()
const after = process.memoryUsage()
const buffered = Object.values(app.pipeline.stats()).reduce((sum, s) => sum + s.buffered_bytes, 0)
const heap = after.heapUsed - before.heapUsed
const outside = after.arrayBuffers - before.arrayBuffers
console.log(
  JSON.stringify({
    buffered_entries: app.pipeline.bufferedEvents,
    buffered_MiB: +(buffered / MiB).toFixed(1),
    heap_growth_MiB: +(heap / MiB).toFixed(1),
    heap_per_buffered_byte: +(heap / buffered).toFixed(2),
    buffers_growth_MiB: +(outside / MiB).toFixed(1),
    memory_per_buffered_byte: +((heap + outside) / buffered).toFixed(2),
    rss_MiB: Math.round(after.rss / MiB),
  }),
)
await rm(dir, { recursive: true, force: true })
process.exit(0)
