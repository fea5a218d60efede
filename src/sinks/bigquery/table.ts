// The bigquery sink's table: the default schema, opening (and creating) the dataset and table, at start-up or, when
// BigQuery did not answer then, on the first write; and how an entry becomes a row of whatever table sidelog finds.
// Shared by the stream and load modes.
import { BigQuery, type Table } from '@google-cloud/bigquery'
import { OAuth2Client } from 'google-auth-library'
import type { Logger } from 'pino'
import { withTimeout } from '../../delivery/timing.js'
import { ConfigError, errorMessage, PermanentError } from '../../errors.js'
import { SPAN_FIELD, TRACE_FIELD } from '../../event.js'
import { classifyGoogleError } from '../../google/errors.js'
import type { SharedSettings } from '../sink.js'
import type { BigQuerySettings } from './settings.js'

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
  /** `project.dataset.table`, for messages. */
  readonly name: string
  /** The table once it has been opened. */
  readonly current: OpenedTable | undefined
  /**
   * The opened table, opening it now if it is not yet (one attempt at a time, bounded by SINK_TIMEOUT). Rejects with
   * a plain (transient) error while BigQuery does not answer, and with a PermanentError when it answers that the
   * dataset or table cannot be used.
   */
  get(): Promise<OpenedTable>
  /**
   * The start-up check: makes sure the dataset and table exist (creating them when BQ_CREATE allows). A real
   * configuration problem (a name BigQuery refuses, 403, 404 with BQ_CREATE=false) throws a ConfigError; a BigQuery
   * that does not answer throws its error, and the table is opened on the first write that finds it answering.
   */
  check(): Promise<void>
}

export function tableOf(settings: BigQuerySettings, shared: SharedSettings, logger: Logger): TableHandle {
  const bigquery = new BigQuery({
    ...shared.google.auth,
    ...(settings.BQ_PROJECT ? { projectId: settings.BQ_PROJECT } : {}),
    ...(settings.BQ_ENDPOINT ? { apiEndpoint: settings.BQ_ENDPOINT, authClient: placeholderAuth() } : {}),
    // sidelog's retry layer owns timing; the client's own retries would re-send on their own schedule.
    retryOptions: { autoRetry: false, maxRetries: 0 },
  })
  const name = `${settings.BQ_PROJECT || '(default project)'}.${settings.BQ_DATASET}.${settings.BQ_TABLE}`
  const timeoutS = shared.attemptTimeoutMs / 1000
  let current: OpenedTable | undefined
  let opening: Promise<OpenedTable> | undefined
  const open = (): Promise<OpenedTable> => {
    opening ??= withTimeout(
      openOnce(bigquery, settings, logger, name),
      shared.attemptTimeoutMs,
      `no answer within ${timeoutS} s`,
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
  return {
    name,
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
    async check() {
      await open()
    },
  }
}

/** One attempt: a ConfigError for what the configuration must fix, the client's error for anything a retry may fix. */
async function openOnce(
  bigquery: BigQuery,
  settings: BigQuerySettings,
  logger: Logger,
  name: string,
): Promise<OpenedTable> {
  const fail = (what: string, err: unknown) =>
    new ConfigError(
      `BQ_DATASET=${settings.BQ_DATASET} BQ_TABLE=${settings.BQ_TABLE}: ${what}: ${errorMessage(err)}`,
    )
  const isPermanent = (err: unknown) => classifyGoogleError(err, 'BigQuery') instanceof PermanentError
  const dataset = bigquery.dataset(settings.BQ_DATASET)
  let location: string | undefined
  try {
    const [found] = await dataset.get({ autoCreate: settings.BQ_CREATE })
    location = found.metadata?.location
  } catch (err) {
    if (!isPermanent(err)) throw err
    throw fail(
      settings.BQ_CREATE
        ? 'the dataset cannot be used'
        : 'the dataset cannot be used (BQ_CREATE=false, so sidelog does not create it)',
      err,
    )
  }
  const table = dataset.table(settings.BQ_TABLE)
  try {
    const [exists] = await table.exists()
    if (!exists) {
      if (!settings.BQ_CREATE) {
        throw new ConfigError(`table ${name} does not exist and BQ_CREATE=false`)
      }
      await dataset
        .createTable(settings.BQ_TABLE, {
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
    logger.info({ table: name, mode: settings.BQ_MODE, plan: describePlan(plan) }, 'bigquery sink ready')
    return { bigquery, table, plan, ...(location ? { location } : {}) }
  } catch (err) {
    if (err instanceof ConfigError || isPermanent(err)) throw fail('the table cannot be used', err)
    throw err
  }
}
