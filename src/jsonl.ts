// JSONL encoding and object layout, shared by every sink that writes files or objects.
import { type Batch, copyLines, FormedBatch, type LogEvent } from './event.js'

/** JSONL built from each event's line as a string: the path for events whose size does not match their line. */
function encodeJsonl(events: readonly LogEvent[]): string {
  let out = ''
  for (const event of events) out += `${event.line}\n`
  return out
}

/**
 * The same JSONL as one Buffer of the batch's size, copied from the events' own bytes where they have them
 * (`copyLines`): no batch-sized string is built (and flattened, and copied again into bytes) on the way. Should an
 * event's size not match its line, the string path is taken instead, so a wrong count can never cut a line short.
 */
export function encodeJsonlBuffer(events: readonly LogEvent[]): Buffer {
  let total = 0
  for (const event of events) total += event.bytes
  const out = Buffer.allocUnsafe(total)
  try {
    copyLines(events, out, 0)
  } catch (err) {
    if (err instanceof RangeError) return Buffer.from(encodeJsonl(events))
    throw err
  }
  return out
}

/**
 * A batch as JSONL: a formed batch's runs are copied from their requests' chunks, one copy per run, without making
 * an event per line; any other batch goes through its events (encodeJsonlBuffer).
 */
export function batchJsonl(batch: Batch): Buffer {
  return batch instanceof FormedBatch
    ? batchJsonlInto(batch, Buffer.allocUnsafe(batch.bytes))
    : encodeJsonlBuffer(batch.events)
}

/**
 * The same JSONL written into `target` (at least `batch.bytes` long), returned as the part of it written; a batch that
 * is not a formed one, or whose bytes do not add up, gets a Buffer of its own instead (see encodeJsonlBuffer).
 */
export function batchJsonlInto(batch: Batch, target: Buffer): Buffer {
  if (batch instanceof FormedBatch && target.length >= batch.bytes) {
    try {
      if (batch.copyTo(target, 0) === batch.bytes) return target.subarray(0, batch.bytes)
    } catch (err) {
      if (!(err instanceof RangeError)) throw err
    }
  }
  return encodeJsonlBuffer(batch.events)
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0')

export type Layout = 'date' | 'hive'

/**
 * `<prefix>YYYY/MM/DD/HHMMSS-<batch name><extension>` (or `<prefix>dt=YYYY-MM-DD/...` for the hive layout), in
 * UTC by the time the batch was opened. The batch name (instance id and sequence) keeps names unique across
 * instances and across flushes within one second, and the same for every retry of one batch.
 */
export function objectName(
  batch: Batch,
  prefix: string,
  extension = '.jsonl',
  layout: Layout = 'date',
): string {
  const t = batch.openedAt
  const [y, m, d] = [t.getUTCFullYear(), pad(t.getUTCMonth() + 1), pad(t.getUTCDate())]
  const day = layout === 'hive' ? `dt=${y}-${m}-${d}` : `${y}/${m}/${d}`
  const time = `${pad(t.getUTCHours())}${pad(t.getUTCMinutes())}${pad(t.getUTCSeconds())}`
  return `${prefix}${day}/${time}-${batch.name}${extension}`
}
