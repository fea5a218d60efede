// Stdout sink: one JSON line per entry, which Cloud Run and Kubernetes pick up as structured logs (the line
// carries `severity` where the entry had a level).
import { once } from 'node:events'
import { batchJsonl } from '../../jsonl.js'
import type { Sink, SinkContext } from '../sink.js'

export async function createStdoutSink({ stdout }: SinkContext<unknown>): Promise<Sink> {
  return {
    name: 'stdout',
    async write(batch, { signal }) {
      // Given up before it starts: nothing written. A partly written batch cannot be taken back, so the signal is
      // not honoured mid-write: stdout is local and fast, and a write that completes late is still delivered once.
      signal.throwIfAborted()
      // As bytes copied from the requests' own (see FormedBatch): no string per line, and none per batch.
      if (!stdout.write(batchJsonl(batch))) await once(stdout, 'drain')
    },
    async close() {},
  }
}
