// A protocol-level fake of the BigQuery v2 REST subset sidelog uses: datasets and tables (get, insert),
// tabledata.insertAll, and load jobs (jobs.insert, jobs.get). insertAll checks each row against the table's schema;
// with skipInvalidRows false (the default) one bad row stores nothing and marks every other row `stopped`, as
// BigQuery does. Rows are de-duplicated by insertId. A load job reads its gs:// sources through `readObject` (the
// GCS fake's objects), runs atomically (one bad row or missing object fails it and loads nothing), and a second
// insert of the same job id answers 409. Faults (from FakeGoogleServer) target inserts, job inserts or the rest.
import { type Exchange, FakeGoogleServer, type RecordedRequest } from './fake-server.js'

export interface SchemaField {
  readonly name: string
  readonly type: string
  readonly mode?: string
}

export interface TableResource {
  readonly tableReference: { projectId: string; datasetId: string; tableId: string }
  readonly schema: { fields: SchemaField[] }
  readonly timePartitioning?: { type: string; field?: string }
  readonly clustering?: { fields: string[] }
}

interface JobError {
  reason: string
  message: string
}

export interface JobResource {
  id?: string
  jobReference: { projectId: string; jobId: string; location?: string }
  configuration: {
    load?: {
      destinationTable: { projectId: string; datasetId: string; tableId: string }
      sourceUris: string[]
      sourceFormat?: string
      writeDisposition?: string
    }
  }
  status?: { state: string; errorResult?: JobError; errors?: JobError[] }
  statistics?: { load?: { outputRows: string } }
}

interface InsertError {
  index: number
  errors: { reason: string; location: string; message: string }[]
}

export type FaultTarget = 'insert' | 'job' | 'metadata'

export class FakeBigQueryServer extends FakeGoogleServer<FaultTarget> {
  readonly datasets = new Set<string>()
  readonly tables = new Map<string, TableResource>()
  /** Rows stored per table (`dataset.table`), in arrival order. */
  readonly rows = new Map<string, { insertId?: string; json: Record<string, unknown> }[]>()
  /** insertIds seen per table: a row whose id was already stored is acknowledged and dropped. */
  private readonly seenIds = new Map<string, Set<string>>()
  protected readonly defaultTarget = 'insert'
  private rowFailures: { reason: string; times: number } | undefined

  /** Load jobs by id. */
  readonly jobs = new Map<string, { resource: JobResource; pollsLeft: number }>()
  /** Where load jobs read their gs:// sources: wire it to the GCS fake. */
  readObject: (bucket: string, name: string) => Buffer | undefined = () => undefined
  /** How many jobs.get calls see a new job RUNNING before it is DONE. */
  jobPolls = 0
  private jobFailures: { reason: string; times: number } | undefined

  /** The next `times` load jobs fail with `reason` (e.g. backendError) and load nothing. */
  failJobs(reason: string, times = 1): void {
    this.jobFailures = { reason, times }
  }

  jobInserts(): RecordedRequest[] {
    return this.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/jobs'))
  }

  /** The next `times` insertAll requests store nothing and answer `reason` for every row (e.g. backendError). */
  failRows(reason: string, times = 1): void {
    this.rowFailures = { reason, times }
  }

  /** Creates a table directly, as an operator would have before sidelog starts. */
  createTable(datasetId: string, tableId: string, fields: SchemaField[]): void {
    this.datasets.add(datasetId)
    this.tables.set(`${datasetId}.${tableId}`, {
      tableReference: { projectId: 'test-project', datasetId, tableId },
      schema: { fields },
    })
  }

  rowsOf(datasetId: string, tableId: string): Record<string, unknown>[] {
    return (this.rows.get(`${datasetId}.${tableId}`) ?? []).map((r) => r.json)
  }

  inserts(): RecordedRequest[] {
    return this.requests.filter((r) => r.path.endsWith('/insertAll'))
  }

  protected isTarget(target: FaultTarget, { method, path }: RecordedRequest): boolean {
    const kind = path.endsWith('/insertAll')
      ? 'insert'
      : method === 'POST' && path.endsWith('/jobs')
        ? 'job'
        : 'metadata'
    return target === kind
  }

  protected route(exchange: Exchange): boolean {
    const { method, path, body, res, send } = exchange
    if (/^\/bigquery\/v2\/projects\/[^/]+\/jobs(\/|$)/.test(path)) return this.jobRequest(exchange)
    const parts =
      /^\/bigquery\/v2\/projects\/([^/]+)\/datasets(?:\/([^/]+))?(?:\/tables(?:\/([^/]+))?)?(\/insertAll)?$/.exec(
        path,
      )
    if (!parts) return this.sendError(res, 404, `fake BigQuery does not implement ${method} ${path}`)
    const [, project, datasetId, tableId, insertAll] = parts as unknown as (string | undefined)[]
    const json = body.length > 0 ? (JSON.parse(body.toString()) as Record<string, unknown>) : {}

    if (!datasetId) {
      if (method !== 'POST') return this.sendError(res, 404, 'listing datasets is not implemented')
      const id = (json.datasetReference as { datasetId: string }).datasetId
      if (this.datasets.has(id)) return this.sendError(res, 409, `Already Exists: Dataset ${project}:${id}`)
      this.datasets.add(id)
      return send(200, { datasetReference: { projectId: project, datasetId: id }, id: `${project}:${id}` })
    }
    if (!this.datasets.has(datasetId))
      return this.sendError(res, 404, `Not found: Dataset ${project}:${datasetId}`)
    if (tableId === undefined && !path.endsWith('/tables')) {
      return send(200, { datasetReference: { projectId: project, datasetId }, id: `${project}:${datasetId}` })
    }
    if (tableId === undefined) {
      const table = json as unknown as TableResource
      const key = `${datasetId}.${table.tableReference.tableId}`
      if (this.tables.has(key)) return this.sendError(res, 409, `Already Exists: Table ${project}:${key}`)
      this.tables.set(key, {
        ...table,
        tableReference: { ...table.tableReference, projectId: String(project) },
      })
      return send(200, this.tables.get(key))
    }
    const key = `${datasetId}.${tableId}`
    const table = this.tables.get(key)
    if (!table) return this.sendError(res, 404, `Not found: Table ${project}:${key}`)
    if (!insertAll) return send(200, table)
    return send(200, this.insertAll(key, table, json))
  }

  private jobRequest({ method, path, body, res, send }: Exchange): boolean {
    const [, project, jobId] = /^\/bigquery\/v2\/projects\/([^/]+)\/jobs(?:\/([^/]+))?$/.exec(path) ?? []
    if (method === 'GET' && jobId) {
      const job = this.jobs.get(jobId)
      if (!job) return this.sendError(res, 404, `Not found: Job ${project}:${jobId}`)
      if (job.pollsLeft > 0) {
        job.pollsLeft--
        return send(200, { ...job.resource, status: { state: 'RUNNING' } })
      }
      return send(200, job.resource)
    }
    if (method !== 'POST' || jobId)
      return this.sendError(res, 404, `fake BigQuery does not implement ${method} ${path}`)
    const request = JSON.parse(body.toString()) as JobResource
    const id = request.jobReference.jobId
    if (this.jobs.has(id)) return this.sendError(res, 409, `Already Exists: Job ${project}:${id}`)
    const resource: JobResource = { ...request, id: `${project}:${id}`, ...this.runLoad(request) }
    this.jobs.set(id, { resource, pollsLeft: this.jobPolls })
    if (this.jobPolls > 0) return send(200, { ...resource, status: { state: 'RUNNING' } })
    return send(200, resource)
  }

  /** Runs a load job at once: every row of every source, or nothing. */
  private runLoad(request: JobResource): Pick<JobResource, 'status' | 'statistics'> {
    const fail = (reason: string, message: string, errors: JobError[] = []) => ({
      status: { state: 'DONE', errorResult: { reason, message }, errors: [{ reason, message }, ...errors] },
    })
    if (this.jobFailures && this.jobFailures.times-- > 0) return fail(this.jobFailures.reason, 'injected')
    const load = request.configuration.load
    if (!load) return fail('invalid', 'fake BigQuery only runs load jobs')
    const { datasetId, tableId } = load.destinationTable
    const key = `${datasetId}.${tableId}`
    const table = this.tables.get(key)
    if (!table) return fail('notFound', `Not found: Table ${key}`)
    if (load.sourceFormat !== 'NEWLINE_DELIMITED_JSON') {
      return fail('invalid', `Error while reading data: CSV (sourceFormat ${load.sourceFormat ?? 'unset'})`)
    }
    const rows: Record<string, unknown>[] = []
    const errors: JobError[] = []
    for (const uri of load.sourceUris) {
      const [, bucket = '', name = ''] = /^gs:\/\/([^/]+)\/(.+)$/.exec(uri) ?? []
      const data = this.readObject(bucket, name)
      if (!data) return fail('notFound', `Not found: URI ${uri}`)
      data
        .toString()
        .split('\n')
        .forEach((line, index) => {
          if (line === '') return
          const row = JSON.parse(line) as Record<string, unknown>
          const problems = checkRow(row, table.schema.fields, 'value')
          if (problems.length > 0) {
            errors.push({ reason: 'invalid', message: `${uri} line ${index + 1}: ${problems[0]?.message}` })
          } else rows.push(row)
        })
    }
    if (errors.length > 0) {
      return fail(
        'invalid',
        'Error while reading data: JSON table encountered too many errors, giving up.',
        errors,
      )
    }
    const stored = this.rows.get(key) ?? []
    for (const json of rows) stored.push({ json })
    this.rows.set(key, stored)
    return { status: { state: 'DONE' }, statistics: { load: { outputRows: String(rows.length) } } }
  }

  private insertAll(key: string, table: TableResource, request: Record<string, unknown>) {
    const rows = request.rows as { insertId?: string; json: Record<string, unknown> }[]
    if (this.rowFailures && this.rowFailures.times-- > 0) {
      const reason = this.rowFailures.reason
      const insertErrors = rows.map((_, index) => ({
        index,
        errors: [{ reason, location: '', message: reason }],
      }))
      return { kind: 'bigquery#tableDataInsertAllResponse', insertErrors }
    }
    const errors: InsertError[] = []
    rows.forEach((row, index) => {
      const problems = checkRow(row.json, table.schema.fields)
      if (problems.length > 0) errors.push({ index, errors: problems })
    })
    if (errors.length > 0 && !request.skipInvalidRows) {
      const bad = new Set(errors.map((e) => e.index))
      rows.forEach((_, index) => {
        if (!bad.has(index))
          errors.push({ index, errors: [{ reason: 'stopped', location: '', message: '' }] })
      })
      return {
        kind: 'bigquery#tableDataInsertAllResponse',
        insertErrors: errors.sort((a, b) => a.index - b.index),
      }
    }
    const bad = new Set(errors.map((e) => e.index))
    const stored = this.rows.get(key) ?? []
    const seen = this.seenIds.get(key) ?? new Set<string>()
    rows.forEach((row, index) => {
      if (bad.has(index)) return
      if (row.insertId !== undefined) {
        if (seen.has(row.insertId)) return
        seen.add(row.insertId)
      }
      stored.push(row)
    })
    this.rows.set(key, stored)
    this.seenIds.set(key, seen)
    return {
      kind: 'bigquery#tableDataInsertAllResponse',
      ...(errors.length > 0 ? { insertErrors: errors } : {}),
    }
  }
}

/**
 * What BigQuery would say about a row: unknown fields, missing required ones, values of the wrong type. insertAll
 * takes a JSON column as JSON text (`text`); a load file takes any JSON value and stores it as it is (`value`).
 */
function checkRow(
  json: Record<string, unknown>,
  fields: SchemaField[],
  jsonColumns: 'text' | 'value' = 'text',
) {
  const problems: { reason: string; location: string; message: string }[] = []
  const byName = new Map(fields.map((f) => [f.name, f]))
  for (const [name, value] of Object.entries(json)) {
    const field = byName.get(name)
    if (!field) {
      problems.push({ reason: 'invalid', location: name, message: `no such field: ${name}.` })
    } else if (value !== null && !fits(value, field.type, jsonColumns)) {
      problems.push({
        reason: 'invalid',
        location: name,
        message: `Cannot convert value to ${field.type.toLowerCase()}: ${JSON.stringify(value).slice(0, 40)}`,
      })
    }
  }
  for (const field of fields) {
    if (field.mode === 'REQUIRED' && json[field.name] === undefined) {
      problems.push({
        reason: 'invalid',
        location: field.name,
        message: `Missing required field: ${field.name}.`,
      })
    }
  }
  return problems
}

function fits(value: unknown, type: string, jsonColumns: 'text' | 'value'): boolean {
  switch (type) {
    case 'STRING':
      return typeof value === 'string'
    case 'TIMESTAMP':
      return (
        (typeof value === 'string' || typeof value === 'number') && !Number.isNaN(new Date(value).getTime())
      )
    case 'JSON':
      if (jsonColumns === 'value') return true
      if (typeof value !== 'string') return false
      try {
        JSON.parse(value)
        return true
      } catch {
        return false
      }
    case 'INTEGER':
    case 'INT64':
      return Number.isInteger(Number(value)) && (typeof value === 'number' || typeof value === 'string')
    case 'FLOAT':
    case 'FLOAT64':
      return typeof value === 'number' || (typeof value === 'string' && !Number.isNaN(Number(value)))
    case 'BOOLEAN':
    case 'BOOL':
      return typeof value === 'boolean'
    default:
      return true
  }
}
