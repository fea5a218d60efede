// The bigquery sink's table: the default schema, opening (and creating) the dataset and table, at start-up or, when
// BigQuery did not answer then, on the first write; and how an entry becomes a row of whatever table sidelog finds.
// Shared by the stream and load modes.
import { BigQuery, type Table } from '@google-cloud/bigquery'
import { OAuth2Client } from 'google-auth-library'
import type { Logger } from 'pino'
import { type Config, googleAuthOptions } from '../config.js'
import { withTimeout } from '../delivery/timing.js'
import { ConfigError, errorMessage, PermanentError } from '../errors.js'
import { SPAN_FIELD, TRACE_FIELD } from '../event.js'
import { classifyGoogleError } from './google-errors.js'

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
  { name: 'trace', type: 'STRING' },
  { name: 'span_id', type: 'STRING' },
  { name: 'payload', type: 'JSON' },
]

/**
 * Columns filled from Cloud Logging's field when the entry has no field of the column's own name. A table without
 * the column (one made before it was in the default schema) keeps the field in its JSON column, as any other.
 */
const COLUMN_FALLBACKS: readonly (readonly [column: string, field: string])[] = [
  ['trace', TRACE_FIELD],
  ['span_id', SPAN_FIELD],
]

/** How an entry becomes a row of the table sidelog found (or made). */
export interface RowPlan {
  /** Columns filled from the entry's top-level field of the same name, with their types. */
  readonly columns: ReadonlyMap<string, string>
  /** A JSON column named `payload`: it receives the whole entry. */
  readonly wholeEntry?: string
  /** Otherwise, the table's first JSON column: it receives the fields that have no column of their own. */
  readonly overflow?: string
  /** Cloud Logging field → the column it fills when the entry lacks the column's own field (see COLUMN_FALLBACKS). */
  readonly fallbacks: ReadonlyMap<string, string>
}

export function planRows(fields: readonly SchemaField[]): RowPlan {
  const json = fields.filter((f) => f.type === 'JSON').map((f) => f.name)
  const wholeEntry = json.includes('payload') ? 'payload' : undefined
  const overflow = wholeEntry ? undefined : json[0]
  const columns = new Map(
    fields.filter((f) => f.name !== wholeEntry && f.name !== overflow).map((f) => [f.name, f.type] as const),
  )
  const fallbacks = new Map(
    COLUMN_FALLBACKS.filter(([column]) => columns.has(column)).map(([column, field]) => [field, column]),
  )
  return { columns, fallbacks, ...(wholeEntry ? { wholeEntry } : {}), ...(overflow ? { overflow } : {}) }
}

export function describePlan(plan: RowPlan): string {
  const where = plan.wholeEntry
    ? `the whole entry goes into JSON column ${plan.wholeEntry}`
    : plan.overflow
      ? `fields without a column go into JSON column ${plan.overflow}`
      : 'fields without a column are dropped (counted as dropped_fields)'
  return `columns filled from fields of the same name: ${[...plan.columns.keys()].join(', ') || '(none)'}; ${where}`
}

/**
 * How a JSON column's value is written: insertAll takes JSON text and parses it (`text`); a newline-delimited JSON
 * load file takes the value itself, and would store JSON text as a JSON string (`value`).
 */
export type JsonColumns = 'text' | 'value'

/** Makes a value fit its column: JSON columns as `json` says, STRING columns take non-strings as JSON text. */
function fitColumn(value: unknown, type: string, json: JsonColumns): unknown {
  if (type === 'JSON') return json === 'text' ? JSON.stringify(value) : value
  if (type === 'STRING' && typeof value !== 'string') return JSON.stringify(value)
  return value
}

export function toRow(
  entry: Record<string, unknown>,
  plan: RowPlan,
  json: JsonColumns = 'text',
): { row: Record<string, unknown>; dropped: number } {
  const asJson = (value: unknown) => fitColumn(value, 'JSON', json)
  const row: Record<string, unknown> = {}
  const rest: Record<string, unknown> = {}
  let restCount = 0
  for (const [name, value] of Object.entries(entry)) {
    const type = plan.columns.get(name)
    const fallback = type === undefined ? plan.fallbacks.get(name) : undefined
    if (type !== undefined) {
      row[name] = fitColumn(value, type, json)
    } else if (fallback !== undefined && !Object.hasOwn(entry, fallback)) {
      row[fallback] = fitColumn(value, plan.columns.get(fallback) as string, json)
    } else if (name !== plan.wholeEntry) {
      rest[name] = value
      restCount++
    }
  }
  if (plan.wholeEntry) {
    row[plan.wholeEntry] = asJson(entry)
    return { row, dropped: 0 }
  }
  if (plan.overflow) {
    if (restCount > 0) row[plan.overflow] = asJson(rest)
    return { row, dropped: 0 }
  }
  return { row, dropped: restCount }
}

/** An emulator takes any token: never look for credentials (or probe the metadata server) for one. */
function placeholderAuth(): OAuth2Client {
  const client = new OAuth2Client()
  client.setCredentials({ access_token: 'emulator', expiry_date: Date.now() + 365 * 86_400_000 })
  return client
}

export interface OpenedTable {
  readonly bigquery: BigQuery
  readonly table: Table
  readonly plan: RowPlan
  /** The dataset's location, where load jobs must run (undefined when BigQuery does not say). */
  readonly location?: string
}

/** The table, opened at start-up or as soon as BigQuery answers. */
export interface TableHandle {
  /** The table once it has been opened. */
  readonly current: OpenedTable | undefined
  /**
   * The opened table, opening it now if start-up could not (one attempt at a time, bounded by SINK_TIMEOUT). Rejects
   * with a plain (transient) error while BigQuery does not answer, and with a PermanentError when it answers that the
   * dataset or table cannot be used.
   */
  get(): Promise<OpenedTable>
}

/**
 * Makes sure the dataset and table exist (creating them when BQ_CREATE allows). A real configuration problem (a name
 * BigQuery refuses, 403, 404 with BQ_CREATE=false) throws a ConfigError and stops start-up; a BigQuery that does not
 * answer (refused connection, time-out, 5xx, 429) leaves the sink to start degraded, with `startupError`, and the
 * table is opened on the first write that finds BigQuery answering.
 */
export async function openTable(
  config: Config,
  logger: Logger,
): Promise<{ handle: TableHandle; startupError?: Error }> {
  const bigquery = new BigQuery({
    ...googleAuthOptions(config),
    ...(config.BQ_PROJECT ? { projectId: config.BQ_PROJECT } : {}),
    ...(config.BQ_ENDPOINT ? { apiEndpoint: config.BQ_ENDPOINT, authClient: placeholderAuth() } : {}),
    // sidelog's retry layer owns timing; the client's own retries would re-send on their own schedule.
    retryOptions: { autoRetry: false, maxRetries: 0 },
  })
  const name = `${config.BQ_PROJECT || '(default project)'}.${config.BQ_DATASET}.${config.BQ_TABLE}`
  let current: OpenedTable | undefined
  let opening: Promise<OpenedTable> | undefined
  const open = (): Promise<OpenedTable> => {
    opening ??= withTimeout(
      openOnce(bigquery, config, logger, name),
      config.SINK_TIMEOUT * 1000,
      `no answer within ${config.SINK_TIMEOUT} s`,
    ).then(
      (opened) => {
        current = opened
        return opened
      },
      (err: unknown) => {
        opening = undefined
        throw err
      },
    )
    return opening
  }
  const handle: TableHandle = {
    get current() {
      return current
    },
    async get() {
      if (current) return current
      try {
        return await open()
      } catch (err) {
        if (err instanceof ConfigError) throw new PermanentError(err.message, { cause: err })
        throw new Error(`the table ${name} could not be opened yet: ${errorMessage(err)}`, { cause: err })
      }
    },
  }
  try {
    await open()
    return { handle }
  } catch (err) {
    if (err instanceof ConfigError) throw err
    logger.warn(
      { table: name, err },
      'bigquery did not answer at start-up; starting degraded, the table is opened on the first write',
    )
    return {
      handle,
      startupError: new Error(`BigQuery could not be reached at start-up: ${errorMessage(err)}`, {
        cause: err,
      }),
    }
  }
}

/** One attempt: a ConfigError for what the configuration must fix, the client's error for anything a retry may fix. */
async function openOnce(
  bigquery: BigQuery,
  config: Config,
  logger: Logger,
  name: string,
): Promise<OpenedTable> {
  const fail = (what: string, err: unknown) =>
    new ConfigError(
      `BQ_DATASET=${config.BQ_DATASET} BQ_TABLE=${config.BQ_TABLE}: ${what}: ${errorMessage(err)}`,
    )
  const isPermanent = (err: unknown) => classifyGoogleError(err, 'BigQuery') instanceof PermanentError
  const dataset = bigquery.dataset(config.BQ_DATASET)
  let location: string | undefined
  try {
    const [found] = await dataset.get({ autoCreate: config.BQ_CREATE })
    location = found.metadata?.location
  } catch (err) {
    if (!isPermanent(err)) throw err
    throw fail(
      config.BQ_CREATE
        ? 'the dataset cannot be used'
        : 'the dataset cannot be used (BQ_CREATE=false, so sidelog does not create it)',
      err,
    )
  }
  const table = dataset.table(config.BQ_TABLE)
  try {
    const [exists] = await table.exists()
    if (!exists) {
      if (!config.BQ_CREATE) {
        throw new ConfigError(`table ${name} does not exist and BQ_CREATE=false`)
      }
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
    logger.info({ table: name, mode: config.BQ_MODE, plan: describePlan(plan) }, 'bigquery sink ready')
    return { bigquery, table, plan, ...(location ? { location } : {}) }
  } catch (err) {
    if (err instanceof ConfigError || isPermanent(err)) throw fail('the table cannot be used', err)
    throw err
  }
}
