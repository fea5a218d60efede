// Enrichment, once per entry at ingest: adds (never overwrites) event_id, service, revision, host, processed_at,
// timestamp and severity, and serialises the result to the JSON line every sink writes.
import { randomUUID } from 'node:crypto'
import { InputError } from '../errors.js'
import { createLogEvent, type LogEvent } from '../event.js'

export interface EnrichContext {
  readonly service: string
  readonly revision: string
  readonly host: string
  /** Static labels from LABELS, added (last) where the entry lacks the field. */
  readonly labels: Readonly<Record<string, string>>
  readonly maxEntryBytes: number
  readonly newId?: () => string
}

/** Longest app-supplied event_id kept as is (BigQuery's insertId has a length limit; keep ids short and opaque). */
const MAX_EVENT_ID_LENGTH = 128

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
  return SEVERITY_BY_LEVEL[String(level).toLowerCase()]
}

/** The entry's own time when it carries one sidelog understands (pino's epoch-ms `time`, or an ISO string). */
function timestampOf(entry: Record<string, unknown>, receivedAt: string): string {
  const time = entry.time
  if (typeof time === 'number' || typeof time === 'string') {
    const date = new Date(time)
    if (!Number.isNaN(date.getTime())) return date.toISOString()
  }
  return receivedAt
}

/** Enriches one parsed entry and serialises it; `where` names the line or index in errors. */
export type Enricher = (
  entry: Record<string, unknown>,
  receivedAt: string,
  where: { line?: number; index?: number },
  /** The event_id for an entry that sets none (a keyed request's derived id); a new UUID when absent. */
  id?: string,
) => LogEvent

/**
 * Builds the per-entry enrichment. The fields that never change (service, revision, host, labels) are encoded
 * once here; the rest (a generated UUID, ISO times, a severity name) need no JSON escaping, so the hot path is
 * one JSON.stringify of the entry plus own-property checks and string concatenation.
 *
 * The enricher throws InputError (with `where`) when an entry is too large, too deeply nested to serialise, or
 * carries an event_id sidelog cannot use.
 */
export function createEnricher(ctx: EnrichContext): Enricher {
  const encode = (fields: [string, string][]): [name: string, pair: string][] =>
    fields.map(([name, value]) => [name, `${JSON.stringify(name)}:${JSON.stringify(value)}`])
  const identity = encode([
    ['service', ctx.service],
    ['revision', ctx.revision],
    ['host', ctx.host],
  ])
  const labels = encode(Object.entries(ctx.labels))
  const addMissing = (entry: Record<string, unknown>, fields: [string, string][]) => {
    let added = ''
    for (const [name, pair] of fields) {
      if (!Object.hasOwn(entry, name)) added += `,${pair}`
    }
    return added
  }
  const newId = ctx.newId ?? randomUUID

  return (entry, receivedAt, where, givenId) => {
    let json: string
    try {
      json = JSON.stringify(entry)
    } catch {
      // JSON.stringify recurses; a pathologically deep entry overflows the stack rather than the heap.
      throw new InputError(400, 'ENTRY_TOO_DEEP', 'entry is nested too deeply to be processed', where)
    }
    const entryBytes = Buffer.byteLength(json)
    if (entryBytes > ctx.maxEntryBytes) {
      throw new InputError(
        413,
        'ENTRY_TOO_LARGE',
        `entry is ${entryBytes} bytes; the limit is ${ctx.maxEntryBytes} (MAX_ENTRY_BYTES)`,
        where,
      )
    }

    let id = entry.event_id
    let added = ''
    if (id === undefined) {
      id = givenId ?? newId()
      added += `,"event_id":${JSON.stringify(id)}`
    } else if (typeof id !== 'string' || id.length === 0 || id.length > MAX_EVENT_ID_LENGTH) {
      throw new InputError(
        400,
        'INVALID_EVENT_ID',
        `event_id must be a string of 1 to ${MAX_EVENT_ID_LENGTH} characters when the app sets it`,
        where,
      )
    }
    added += addMissing(entry, identity)
    // ISO 8601 strings and severity names contain nothing JSON would escape.
    if (!Object.hasOwn(entry, 'processed_at')) added += `,"processed_at":"${receivedAt}"`
    if (!Object.hasOwn(entry, 'timestamp')) added += `,"timestamp":"${timestampOf(entry, receivedAt)}"`
    const severity = Object.hasOwn(entry, 'severity') ? undefined : severityOf(entry.level)
    if (severity !== undefined) added += `,"severity":"${severity}"`
    added += addMissing(entry, labels)

    if (added === '') return createLogEvent(id as string, json)
    // Splice the added fields into the serialised object instead of copying it: one stringify per entry.
    const line = json === '{}' ? `{${added.slice(1)}}` : `${json.slice(0, -1)}${added}}`
    return createLogEvent(id as string, line)
  }
}
