// BigQuery sink (streaming): each batch goes through tabledata.insertAll in requests of at most 500 rows and well
// under 10 MB, every row's insertId being its event_id, so a retry, a restart or a replay re-sends the same ids
// and BigQuery de-duplicates them. Rows BigQuery refuses go to the dead-letter store with its reason; rows it only
// stopped (because a neighbour was bad) are re-sent.
import { BigQuery, type Table } from '@google-cloud/bigquery'
import { OAuth2Client } from 'google-auth-library'
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import {
  ConfigError,
  errorMessage,
  PartialWriteError,
  PermanentError,
  type RejectedEvent,
} from '../errors.js'
import type { LogEvent } from '../event.js'
import { classifyGoogleError, TRANSIENT_REASONS } from './google-errors.js'
import type { Sink, SinkFactory } from './sink.js'

export interface SchemaField {
  readonly name: string
  readonly type: string
  readonly mode?: string
}

/** The table sidelog creates: the enriched fields as columns, the whole entry in `payload`. */
export const DEFAULT_SCHEMA: readonly SchemaField[] = [
  { name: 'event_id', type: 'STRING', mode: 'REQUIRED' },
  { name: 'timestamp', type: 'TIMESTAMP' },
  { name: 'severity', type: 'STRING' },
  { name: 'message', type: 'STRING' },
  { name: 'service', type: 'STRING' },
  { name: 'revision', type: 'STRING' },
  { name: 'host', type: 'STRING' },
  { name: 'processed_at', type: 'TIMESTAMP' },
  { name: 'payload', type: 'JSON' },
]

/** insertAll limits (cloud.google.com/bigquery/quotas): keep well inside them. */
const MAX_ROWS_PER_REQUEST = 500
const MAX_REQUEST_BYTES = 9 * 1024 ** 2
const MAX_ROW_BYTES = 1_000_000

/** How an entry becomes a row of the table sidelog found (or made). */
export interface RowPlan {
  /** Columns filled from the entry's top-level field of the same name, with their types. */
  readonly columns: ReadonlyMap<string, string>
  /** A JSON column named `payload`: it receives the whole entry. */
  readonly wholeEntry?: string
  /** Otherwise, the table's first JSON column: it receives the fields that have no column of their own. */
  readonly overflow?: string
}

export function planRows(fields: readonly SchemaField[]): RowPlan {
  const json = fields.filter((f) => f.type === 'JSON').map((f) => f.name)
  const wholeEntry = json.includes('payload') ? 'payload' : undefined
  const overflow = wholeEntry ? undefined : json[0]
  const columns = new Map(
    fields.filter((f) => f.name !== wholeEntry && f.name !== overflow).map((f) => [f.name, f.type] as const),
  )
  return { columns, ...(wholeEntry ? { wholeEntry } : {}), ...(overflow ? { overflow } : {}) }
}

export function describePlan(plan: RowPlan): string {
  const where = plan.wholeEntry
    ? `the whole entry goes into JSON column ${plan.wholeEntry}`
    : plan.overflow
      ? `fields without a column go into JSON column ${plan.overflow}`
      : 'fields without a column are dropped (counted as dropped_fields)'
  return `columns filled from fields of the same name: ${[...plan.columns.keys()].join(', ') || '(none)'}; ${where}`
}

/** Makes a value fit its column: JSON columns take JSON text, STRING columns take non-strings as JSON text. */
function fitColumn(value: unknown, type: string): unknown {
  if (type === 'JSON') return JSON.stringify(value)
  if (type === 'STRING' && typeof value !== 'string') return JSON.stringify(value)
  return value
}

export function toRow(
  entry: Record<string, unknown>,
  plan: RowPlan,
): { row: Record<string, unknown>; dropped: number } {
  const row: Record<string, unknown> = {}
  const rest: Record<string, unknown> = {}
  let restCount = 0
  for (const [name, value] of Object.entries(entry)) {
    const type = plan.columns.get(name)
    if (type !== undefined) {
      row[name] = fitColumn(value, type)
    } else if (name !== plan.wholeEntry) {
      rest[name] = value
      restCount++
    }
  }
  if (plan.wholeEntry) {
    row[plan.wholeEntry] = JSON.stringify(entry)
    return { row, dropped: 0 }
  }
  if (plan.overflow) {
    if (restCount > 0) row[plan.overflow] = JSON.stringify(rest)
    return { row, dropped: 0 }
  }
  return { row, dropped: restCount }
}

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

/** An emulator takes any token: never look for credentials (or probe the metadata server) for one. */
function placeholderAuth(): OAuth2Client {
  const client = new OAuth2Client()
  client.setCredentials({ access_token: 'emulator', expiry_date: Date.now() + 365 * 86_400_000 })
  return client
}

async function openTable(config: Config, logger: Logger): Promise<{ table: Table; plan: RowPlan }> {
  const bigquery = new BigQuery({
    ...(config.BQ_PROJECT ? { projectId: config.BQ_PROJECT } : {}),
    ...(config.BQ_ENDPOINT ? { apiEndpoint: config.BQ_ENDPOINT, authClient: placeholderAuth() } : {}),
    // sidelog's retry layer owns timing; the client's own retries would re-send on their own schedule.
    retryOptions: { autoRetry: false, maxRetries: 0 },
  })
  const name = `${config.BQ_PROJECT || '(default project)'}.${config.BQ_DATASET}.${config.BQ_TABLE}`
  const fail = (what: string, err: unknown) =>
    new ConfigError(
      `BQ_DATASET=${config.BQ_DATASET} BQ_TABLE=${config.BQ_TABLE}: ${what}: ${errorMessage(err)}`,
    )
  const dataset = bigquery.dataset(config.BQ_DATASET)
  try {
    await dataset.get({ autoCreate: config.BQ_CREATE })
  } catch (err) {
    const missing = classifyGoogleError(err, 'BigQuery') instanceof PermanentError && !config.BQ_CREATE
    throw fail(
      missing
        ? 'the dataset cannot be used (BQ_CREATE=false, so sidelog does not create it)'
        : 'the dataset cannot be used',
      err,
    )
  }
  const table = dataset.table(config.BQ_TABLE)
  try {
    const [exists] = await table.exists()
    if (!exists) {
      if (!config.BQ_CREATE) throw new Error(`table ${name} does not exist and BQ_CREATE=false`)
      await dataset
        .createTable(config.BQ_TABLE, {
          schema: { fields: DEFAULT_SCHEMA.map((f) => ({ ...f })) },
          timePartitioning: { type: 'DAY', field: 'timestamp' },
          clustering: { fields: ['service'] },
        })
        // Another instance may have created it a moment ago.
        .catch((err: unknown) => {
          if ((err as { code?: unknown }).code !== 409) throw err
        })
      logger.info({ table: name }, 'created the bigquery table with the default schema')
    }
    const [metadata] = await table.getMetadata()
    const plan = planRows((metadata.schema?.fields ?? []) as SchemaField[])
    logger.info({ table: name, plan: describePlan(plan) }, 'bigquery sink ready')
    return { table, plan }
  } catch (err) {
    throw fail('the table cannot be used', err)
  }
}

export const createBigQuerySink: SinkFactory = async ({ config, logger }) => {
  const { table, plan } = await openTable(config, logger)
  let droppedFields = 0

  const sink: Sink = {
    name: 'bigquery',
    stats: () => ({ dropped_fields: droppedFields }),
    async write(batch) {
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
