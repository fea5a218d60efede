// OTLP logs request → sidelog entries: decodes protobuf or OTLP/JSON with the generated message classes, then maps
// each LogRecord to one entry (body → message, severity, attributes, times, Cloud Logging's trace fields).
import type { IConversionOptions } from 'protobufjs'
import sjson from 'secure-json-parse'
import { InputError } from '../../errors.js'
import { SPAN_FIELD, TRACE_FIELD } from '../../event.js'
import { severityOf } from '../../pipeline/enrich.js'
import { ExportLogsServiceRequest } from './proto.js'

export type Entry = Record<string, unknown>

/** One plain shape for both encodings: 64-bit integers as decimal strings, bytes as base64. */
const PLAIN: IConversionOptions = {
  longs: String,
  bytes: String,
  enums: Number,
  defaults: false,
  arrays: true,
}
const SAFE_PARSE = { protoAction: 'error', constructorAction: 'error' } as const

interface PlainAnyValue {
  stringValue?: string
  boolValue?: boolean
  intValue?: string
  doubleValue?: number
  arrayValue?: { values?: PlainAnyValue[] }
  kvlistValue?: { values?: PlainKeyValue[] }
  bytesValue?: string
}
interface PlainKeyValue {
  key?: string
  value?: PlainAnyValue
}
interface PlainLogRecord {
  timeUnixNano?: string
  observedTimeUnixNano?: string
  severityNumber?: number
  severityText?: string
  body?: PlainAnyValue
  attributes?: PlainKeyValue[]
  flags?: number
  traceId?: string
  spanId?: string
  eventName?: string
}
interface PlainRequest {
  resourceLogs?: {
    resource?: { attributes?: PlainKeyValue[] }
    scopeLogs?: {
      scope?: { name?: string; version?: string; attributes?: PlainKeyValue[] }
      logRecords?: PlainLogRecord[]
    }[]
  }[]
}

function invalid(message: string): InputError {
  return new InputError(400, 'INVALID_OTLP', message)
}

/** Decodes a binary ExportLogsServiceRequest; anything the decoder refuses is a 400. */
export function decodeProtobuf(body: Buffer): PlainRequest {
  try {
    return ExportLogsServiceRequest.toObject(ExportLogsServiceRequest.decode(body), PLAIN) as PlainRequest
  } catch (err) {
    throw invalid(`body is not a valid protobuf ExportLogsServiceRequest: ${(err as Error).message}`)
  }
}

const HEX = /^(?:[\da-fA-F]{2})*$/

/**
 * Decodes an OTLP/JSON ExportLogsServiceRequest. OTLP/JSON differs from protobuf's JSON mapping in one place the
 * generated code cannot know: trace and span ids are hex, not base64. They are turned into bytes first.
 */
export function decodeJson(body: Buffer): PlainRequest {
  let value: unknown
  try {
    value = sjson.parse(body.toString('utf8'), undefined, SAFE_PARSE)
  } catch (err) {
    const position = /position (\d+)/.exec((err as Error).message)?.[1]
    throw new InputError(
      400,
      'INVALID_JSON',
      `body is not valid JSON: ${(err as Error).message}`,
      position === undefined ? {} : { position: Number(position) },
    )
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid('body must be a JSON object (an ExportLogsServiceRequest)')
  }
  const resourceLogs = (value as { resourceLogs?: unknown }).resourceLogs
  if (Array.isArray(resourceLogs)) {
    resourceLogs.forEach((rl, r) => {
      const scopeLogs = (rl as { scopeLogs?: unknown } | null)?.scopeLogs
      if (!Array.isArray(scopeLogs)) return
      scopeLogs.forEach((sl, s) => {
        const records = (sl as { logRecords?: unknown } | null)?.logRecords
        if (!Array.isArray(records)) return
        records.forEach((lr: Record<string, unknown> | null, l) => {
          for (const [field, length] of [
            ['traceId', 16],
            ['spanId', 8],
          ] as const) {
            const id = lr?.[field]
            if (id === undefined || id === null || id === '') continue
            if (typeof id !== 'string' || !HEX.test(id) || id.length !== length * 2) {
              throw invalid(
                `resourceLogs[${r}].scopeLogs[${s}].logRecords[${l}].${field} must be ${length * 2} hex digits`,
              )
            }
            ;(lr as Record<string, unknown>)[field] = Buffer.from(id, 'hex')
          }
        })
      })
    })
  }
  try {
    return ExportLogsServiceRequest.toObject(
      ExportLogsServiceRequest.fromObject(value as Record<string, unknown>),
      PLAIN,
    ) as PlainRequest
  } catch (err) {
    // The generated code names the field: ".opentelemetry.proto.logs.v1.ResourceLogs.scopeLogs: array expected".
    throw invalid(`body is not a valid OTLP/JSON ExportLogsServiceRequest: ${(err as Error).message}`)
  }
}

/** Number of LogRecords in a request, to refuse one larger than any buffer before mapping it. */
export function countRecords(request: PlainRequest): number {
  let count = 0
  for (const rl of request.resourceLogs ?? []) {
    for (const sl of rl.scopeLogs ?? []) count += sl.logRecords?.length ?? 0
  }
  return count
}

/**
 * Cloud Logging's severity for OTLP's SeverityNumber, as Google's own OpenTelemetry exporter maps it: TRACE and
 * DEBUG → DEBUG, INFO–INFO2 → INFO, INFO3–4 → NOTICE, WARN → WARNING, ERROR–ERROR2 → ERROR, ERROR3–4 → CRITICAL,
 * FATAL–FATAL2 → ALERT, FATAL3–4 → EMERGENCY.
 */
const SEVERITY_BY_NUMBER = [
  ...Array<string>(8).fill('DEBUG'),
  'INFO',
  'INFO',
  'NOTICE',
  'NOTICE',
  ...Array<string>(4).fill('WARNING'),
  'ERROR',
  'ERROR',
  'CRITICAL',
  'CRITICAL',
  'ALERT',
  'ALERT',
  'EMERGENCY',
  'EMERGENCY',
]

function severityFor(record: PlainLogRecord): string | undefined {
  const n = record.severityNumber ?? 0
  if (n >= 1 && n <= 24) return SEVERITY_BY_NUMBER[n - 1]
  return severityOf(record.severityText)
}

/** RFC 3339 with microseconds (what BigQuery's TIMESTAMP keeps) from nanoseconds since the epoch; 0 is unset. */
export function isoFromNanos(nanos: string | undefined): string | undefined {
  if (!nanos || nanos === '0') return undefined
  const ns = BigInt(nanos)
  const date = new Date(Number(ns / 1_000_000n))
  if (Number.isNaN(date.getTime())) return undefined
  const micros = String((ns % 1_000_000_000n) / 1000n).padStart(6, '0')
  return `${date.toISOString().slice(0, 20)}${micros}Z`
}

/** A null-prototype object: an attribute named __proto__ becomes a field, never a prototype. */
function record(): Entry {
  return Object.create(null) as Entry
}

function plainValue(value: PlainAnyValue | undefined): unknown {
  if (!value) return null
  if (value.stringValue !== undefined) return value.stringValue
  if (value.boolValue !== undefined) return value.boolValue
  if (value.intValue !== undefined) {
    const n = Number(value.intValue)
    return Number.isSafeInteger(n) ? n : value.intValue
  }
  if (value.doubleValue !== undefined) return value.doubleValue
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(plainValue)
  if (value.kvlistValue !== undefined) return addAttributes(record(), value.kvlistValue.values)
  if (value.bytesValue !== undefined) return value.bytesValue
  return null
}

function addAttributes(target: Entry, attributes: PlainKeyValue[] | undefined): Entry {
  for (const { key, value } of attributes ?? []) {
    if (key) target[key] = plainValue(value)
  }
  return target
}

const hexOf = (base64: string | undefined) =>
  base64 ? Buffer.from(base64, 'base64').toString('hex') : undefined

/**
 * One entry per LogRecord. Resource attributes come first, then the scope, then the record's attributes, then the
 * fields sidelog maps (message, severity, timestamp, trace), so a field a record sets wins over its resource's.
 */
export function toEntries(request: PlainRequest, project: string): Entry[] {
  const tracePrefix = project ? `projects/${project}/traces/` : ''
  const entries: Entry[] = []
  for (const rl of request.resourceLogs ?? []) {
    const resource = addAttributes(record(), rl.resource?.attributes)
    for (const sl of rl.scopeLogs ?? []) {
      for (const lr of sl.logRecords ?? []) {
        const entry = Object.assign(record(), resource)
        if (sl.scope?.name) entry['otel.scope.name'] = sl.scope.name
        if (sl.scope?.version) entry['otel.scope.version'] = sl.scope.version
        addAttributes(entry, lr.attributes)
        if (lr.body !== undefined) entry.message = plainValue(lr.body)
        const severity = severityFor(lr)
        if (severity !== undefined) entry.severity = severity
        if (lr.severityText) entry.severity_text = lr.severityText
        const timestamp = isoFromNanos(lr.timeUnixNano) ?? isoFromNanos(lr.observedTimeUnixNano)
        if (timestamp !== undefined) entry.timestamp = timestamp
        if (lr.eventName) entry.event_name = lr.eventName
        const traceId = hexOf(lr.traceId)
        if (traceId && /[^0]/.test(traceId)) {
          entry[TRACE_FIELD] = `${tracePrefix}${traceId}`
          const spanId = hexOf(lr.spanId)
          if (spanId && /[^0]/.test(spanId)) entry[SPAN_FIELD] = spanId
          entry['logging.googleapis.com/trace_sampled'] = ((lr.flags ?? 0) & 1) === 1
        }
        entries.push(entry)
      }
    }
  }
  return entries
}
