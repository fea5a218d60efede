// An entry as the payload of a spool record, and back: the log (record.ts) frames and checks payloads, this says what
// one holds.
import { ChunkEvent, type LogEvent } from '../event.js'

/**
 * An entry as a spool record: [u32 byte length of the event id][event id][line]. The id's length is explicit, so no
 * byte an app puts in its event_id can move where the line starts.
 */
export function eventToRecord(event: LogEvent): Buffer {
  const id = event.id
  const idBytes = Buffer.byteLength(id)
  // A request's event is copied from the bytes it points to; any other is written from its line.
  const line = event instanceof ChunkEvent ? undefined : event.line
  const record = Buffer.allocUnsafe(
    4 + idBytes + (line === undefined ? event.bytes - 1 : Buffer.byteLength(line)),
  )
  record.writeUInt32BE(idBytes, 0)
  record.write(id, 4)
  if (event instanceof ChunkEvent)
    event.chunk.copy(record, 4 + idBytes, event.start, event.start + event.bytes - 1)
  else record.write(line as string, 4 + idBytes)
  return record
}

/** Only the event id of a spool record, without decoding its line. */
export function recordEventId(payload: Buffer): string {
  return payload.toString('utf8', 4, 4 + payload.readUInt32BE(0))
}

/** A spool record back as the entry it was. */
export function recordToEvent({ seq, payload }: { seq: number; payload: Buffer }): LogEvent {
  const idBytes = payload.readUInt32BE(0)
  const line = payload.toString('utf8', 4 + idBytes)
  return { id: payload.toString('utf8', 4, 4 + idBytes), line, bytes: Buffer.byteLength(line) + 1, seq }
}

/** The first format's payload, `<event_id>\n<line>`, in today's (for a spool written by an earlier version). */
export function upgradePayload(payload: Buffer): Buffer {
  const newline = payload.indexOf(10)
  const id = payload.toString('utf8', 0, newline)
  const line = payload.toString('utf8', newline + 1)
  return eventToRecord({ id, line, bytes: 0 })
}
