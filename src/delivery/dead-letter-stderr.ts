// The stderr dead-letter store: one JSON line per entry on stderr, where the platform's log collection (Cloud Run,
// GKE, Docker, Cloud Foundry's loggregator) keeps it after the instance is gone. Each line is marked
// (`"sidelog":"dead-letter"`, and the Cloud Logging label `sidelog=dead-letter`) so it can be found among sidelog's
// own logs, and carries the reason and the original entry under `entry`, ready to replay. Synchronous, so it is also
// the last resort before a hard exit.
import type { RejectedEvent } from '../errors.js'
import { writeAllSync } from '../storage/fsync.js'
import { type DeadLetterRecord, type DeadLetterStore, deadLetterHead } from './dead-letter.js'

/** Where the lines go: a synchronous writer (the process's stderr unless a test gives its own). */
export interface LineWriter {
  write(data: string): unknown
}

/** What every line starts with: Cloud Logging reads `severity` and `message` and indexes the label. */
const MARK =
  '"severity":"ERROR","message":"sidelog dead letter","sidelog":"dead-letter","logging.googleapis.com/labels":{"sidelog":"dead-letter"},'

export function encodeStderrDeadLetters(items: readonly RejectedEvent[], record: DeadLetterRecord): string {
  const head = `{${MARK}${deadLetterHead(record)}`
  let data = ''
  for (const { event, reason } of items) data += `${head}${JSON.stringify(reason)},"entry":${event.line}}\n`
  return data
}

export function createStderrDeadLetterStore(out?: LineWriter): DeadLetterStore {
  // Synchronous whole writes: the lines never interleave with sidelog's own log lines (also written synchronously to
  // fd 2) and are out before the process exits, at the pace the platform reads them.
  const writer: LineWriter = out ?? { write: (data) => writeAllSync(2, Buffer.from(data)) }
  const writeNow: DeadLetterStore['writeNow'] = (_batch, items, record) => {
    writer.write(encodeStderrDeadLetters(items, record))
    return 'stderr'
  }
  return {
    destination: 'stderr',
    async open() {},
    async write(batch, items, record) {
      return writeNow(batch, items, record)
    },
    writeNow,
  }
}
