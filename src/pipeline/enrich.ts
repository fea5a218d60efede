// Enrichment, once per entry at ingest: adds (never overwrites) event_id, service, revision, host, processed_at,
// timestamp and severity, and serialises the result to the JSON line every sink writes.
import { randomUUID } from 'node:crypto'
import { InputError } from '../errors.js'
import { createLogEvent, type LogEvent } from '../event.js'

export interface EnrichContext {
  readonly service: string
  readonly revision: string
  readonly host: string
  /** Static labels from LABELS, added where the entry lacks the field. */
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

/**
 * Enriches one parsed entry and serialises it. Throws InputError (with `where`) when the entry is too large, too
 * deeply nested to serialise, or carries an event_id sidelog cannot use.
 */
export function enrichEntry(
  entry: Record<string, unknown>,
  ctx: EnrichContext,
  receivedAt: string,
  where: { line?: number; index?: number },
): LogEvent {
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
  const added: string[] = []
  const add = (name: string, value: string) => {
    if (!Object.hasOwn(entry, name)) added.push(`${JSON.stringify(name)}:${JSON.stringify(value)}`)
  }
  if (id === undefined) {
    id = (ctx.newId ?? randomUUID)()
    add('event_id', id as string)
  } else if (typeof id !== 'string' || id.length === 0 || id.length > MAX_EVENT_ID_LENGTH) {
    throw new InputError(
      400,
      'INVALID_EVENT_ID',
      `event_id must be a string of 1 to ${MAX_EVENT_ID_LENGTH} characters when the app sets it`,
      where,
    )
  }
  add('service', ctx.service)
  add('revision', ctx.revision)
  add('host', ctx.host)
  add('processed_at', receivedAt)
  if (!Object.hasOwn(entry, 'timestamp')) add('timestamp', timestampOf(entry, receivedAt))
  const severity = severityOf(entry.level)
  if (severity !== undefined) add('severity', severity)
  for (const [name, value] of Object.entries(ctx.labels)) add(name, value)

  // Splice the added fields into the serialised object instead of copying it: one stringify per entry.
  const line = json === '{}' ? `{${added.join(',')}}` : `${json.slice(0, -1)},${added.join(',')}}`
  return createLogEvent(id as string, added.length === 0 ? json : line)
}
