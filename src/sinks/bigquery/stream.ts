// The bigquery sink's stream mode (the default): each batch goes through tabledata.insertAll in requests of at most
// 500 rows and well under 10 MB, every row's insertId being its event_id, so a retry, a restart or a replay re-sends
// the same ids and BigQuery de-duplicates them. Rows BigQuery refuses go to the dead-letter store with its reason;
// rows it only stopped (because a neighbour was bad) are re-sent. A BigQuery that does not answer at start-up leaves
// the sink degraded until a write finds it (see table.ts). Load mode lives in load/.
import { PartialWriteError, type RejectedEvent } from '../../errors.js'
import type { LogEvent } from '../../event.js'
import { classifyGoogleError, TRANSIENT_REASONS } from '../../google/errors.js'
import type { Sink } from '../sink.js'
import { type TableHandle, toRow } from './table.js'

/** insertAll limits (cloud.google.com/bigquery/quotas): keep well inside them. */
const MAX_ROWS_PER_REQUEST = 500
const MAX_REQUEST_BYTES = 9 * 1024 ** 2
const MAX_ROW_BYTES = 1_000_000

interface InsertError {
  readonly index: number
  readonly errors: readonly { reason?: string; location?: string; message?: string }[]
}

interface PreparedRow {
  readonly event: LogEvent
  readonly json: Record<string, unknown>
  readonly bytes: number
  /** Fields of the entry the table has no place for. */
  readonly dropped: number
}

/** Requests of at most MAX_ROWS_PER_REQUEST rows and MAX_REQUEST_BYTES. */
function chunk(rows: readonly PreparedRow[]): PreparedRow[][] {
  const chunks: PreparedRow[][] = []
  let current: PreparedRow[] = []
  let bytes = 0
  for (const row of rows) {
    if (
      current.length === MAX_ROWS_PER_REQUEST ||
      (current.length > 0 && bytes + row.bytes > MAX_REQUEST_BYTES)
    ) {
      chunks.push(current)
      current = []
      bytes = 0
    }
    current.push(row)
    bytes += row.bytes
  }
  if (current.length > 0) chunks.push(current)
  return chunks
}

export function createStreamSink(handle: TableHandle): Sink {
  let droppedFields = 0

  const sink: Sink = {
    name: 'bigquery',
    check: () => handle.check(),
    stats: () => ({ dropped_fields: droppedFields }),
    async write(batch, { signal }) {
      const { table, plan } = await handle.get()
      // An attempt given up before its request starts sends nothing; a request that lands after all is harmless, as
      // the next attempt re-sends the same insertIds.
      signal.throwIfAborted()
      const rejected: RejectedEvent[] = []
      const rows: PreparedRow[] = []
      for (const event of batch.events) {
        const { row, dropped } = toRow(JSON.parse(event.line) as Record<string, unknown>, plan)
        const bytes = Buffer.byteLength(JSON.stringify(row))
        if (bytes > MAX_ROW_BYTES) {
          rejected.push({
            event,
            reason: `row is ${bytes} bytes; BigQuery streaming takes rows of at most 1 MB`,
          })
        } else {
          rows.push({ event, json: row, bytes, dropped })
        }
      }

      const pending: LogEvent[] = []
      let requestFailure: unknown
      for (const requestRows of chunk(rows)) {
        // After a failed request the rest waits for the next attempt, which re-sends it with the same ids.
        if (requestFailure !== undefined) {
          pending.push(...requestRows.map((r) => r.event))
          continue
        }
        try {
          await table.insert(
            requestRows.map((r) => ({ insertId: r.event.id, json: r.json })),
            { raw: true, partialRetries: 0 },
          )
          // Counted once the rows are stored, so a retried batch does not count twice.
          for (const row of requestRows) droppedFields += row.dropped
        } catch (err) {
          const insertErrors = (err as { response?: { insertErrors?: InsertError[] } }).response?.insertErrors
          if (!insertErrors) {
            requestFailure = classifyGoogleError(err, 'BigQuery')
            pending.push(...requestRows.map((r) => r.event))
            continue
          }
          for (const { index, errors } of insertErrors) {
            const row = requestRows[index]
            if (!row) continue
            // `stopped` rows and rows with a passing reason are fine: only the others are refused for good.
            const real = errors.filter(
              (e) => e.reason !== 'stopped' && !TRANSIENT_REASONS.has(e.reason ?? ''),
            )
            if (real.length === 0) {
              pending.push(row.event)
            } else {
              const reason = real
                .map((e) => `${e.reason}: ${e.message}${e.location ? ` (at ${e.location})` : ''}`)
                .join('; ')
              rejected.push({ event: row.event, reason })
            }
          }
        }
      }
      if (rejected.length > 0 || pending.length > 0) {
        const cause =
          requestFailure ?? new Error('rows stopped by invalid neighbours, or refused for a passing reason')
        throw new PartialWriteError(rejected, pending, pending.length > 0 ? cause : undefined)
      }
    },
    async close() {},
  }
  return sink
}
