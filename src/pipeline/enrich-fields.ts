// The fields enrichment reads from an entry or its request: the W3C traceparent and OpenTelemetry's trace ids, the
// Cloud Logging severity of a level, the entry's own time.
/** A trace id (32 lower-case hex digits) and, when known, a span id (16). */
export interface TraceIds {
  readonly traceId: string
  readonly spanId?: string
}

/** What a whole request says about its entries: the W3C `traceparent` header of a POST to /logs. */
export interface RequestContext {
  readonly trace?: TraceIds
}

const TRACEPARENT = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-[\da-f]{2}(-|$)/
const HEX32 = /^[\da-f]{32}$/
const HEX16 = /^[\da-f]{16}$/
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)

/** The ids of a W3C traceparent (`00-<trace>-<span>-<flags>`); undefined for anything else, all-zero ids and version ff. */
export function parseTraceparent(value: unknown): TraceIds | undefined {
  if (typeof value !== 'string') return undefined
  const match = TRACEPARENT.exec(value.trim().toLowerCase())
  if (!match || match[1] === 'ff' || match[2] === ZERO_TRACE || match[3] === ZERO_SPAN) return undefined
  return { traceId: match[2] as string, spanId: match[3] as string }
}

/** OpenTelemetry's correlation fields, an entry's `trace_id` and `span_id` (as pino's and Go's OTel bridges write). */
export function otelIdsOf(traceId: unknown, spanId: unknown): TraceIds | undefined {
  if (typeof traceId !== 'string' || !HEX32.test(traceId) || traceId === ZERO_TRACE) return undefined
  return typeof spanId === 'string' && HEX16.test(spanId) && spanId !== ZERO_SPAN
    ? { traceId, spanId }
    : { traceId }
}

/** The context of one request to /logs, from its headers. */
export function requestContextOf(headers: Record<string, string | string[] | undefined>): RequestContext {
  const trace = parseTraceparent(headers.traceparent)
  return trace ? { trace } : {}
}

/** Cloud Logging severities for pino's numeric levels and the common level names. */
const SEVERITY_BY_LEVEL: Record<string, string> = {
  '10': 'DEBUG',
  '20': 'DEBUG',
  '30': 'INFO',
  '40': 'WARNING',
  '50': 'ERROR',
  '60': 'CRITICAL',
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  notice: 'NOTICE',
  warn: 'WARNING',
  warning: 'WARNING',
  error: 'ERROR',
  err: 'ERROR',
  critical: 'CRITICAL',
  crit: 'CRITICAL',
  fatal: 'CRITICAL',
  alert: 'ALERT',
  emergency: 'EMERGENCY',
  emerg: 'EMERGENCY',
  panic: 'EMERGENCY',
}

export function severityOf(level: unknown): string | undefined {
  if (typeof level !== 'string' && typeof level !== 'number') return undefined
  const key = String(level).toLowerCase()
  // Own keys only: `level: "constructor"` must not find Object.prototype's.
  return Object.hasOwn(SEVERITY_BY_LEVEL, key) ? SEVERITY_BY_LEVEL[key] : undefined
}

/** An entry's own `time` when it is one sidelog understands (pino's epoch-ms number, or an ISO string). */
export function timestampOf(time: unknown, receivedAt: string): string {
  if (typeof time === 'number' || typeof time === 'string') {
    const date = new Date(time)
    if (!Number.isNaN(date.getTime())) return date.toISOString()
  }
  return receivedAt
}
