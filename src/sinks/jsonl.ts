// JSONL encoding and object layout, shared by every sink that writes files or objects.
import type { Batch, LogEvent } from '../event.js'

export function encodeJsonl(events: readonly LogEvent[]): string {
  let out = ''
  for (const event of events) out += `${event.line}\n`
  return out
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0')

/**
 * `<prefix>YYYY/MM/DD/HHMMSS-<batch name><extension>`, in UTC by the time the batch was opened. The batch name
 * (instance id and sequence) keeps names unique across instances and across flushes within one second, and the
 * same for every retry of one batch.
 */
export function objectName(batch: Batch, prefix: string, extension = '.jsonl'): string {
  const t = batch.openedAt
  const day = `${t.getUTCFullYear()}/${pad(t.getUTCMonth() + 1)}/${pad(t.getUTCDate())}`
  const time = `${pad(t.getUTCHours())}${pad(t.getUTCMinutes())}${pad(t.getUTCSeconds())}`
  return `${prefix}${day}/${time}-${batch.name}${extension}`
}
