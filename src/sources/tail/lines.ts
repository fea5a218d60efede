// From bytes read out of a tailed file to entries: complete lines only (an unfinished last line waits for its
// newline), a line longer than TAIL_MAX_LINE_BYTES cut and marked, a JSON object line taken as it is and any other
// line as `{ message }`, each with an event id from the file's identity and the line's offset.
import type { Logger } from 'pino'
import sjson from 'secure-json-parse'
import { InputError } from '../../errors.js'
import type { LogEvent } from '../../event.js'
import type { Enricher } from '../../pipeline/enrich.js'
import type { TrackedFile } from './tailed-files.js'

const SAFE_PARSE = { protoAction: 'error', constructorAction: 'error' } as const
const NEWLINE = 0x0a

export interface LineOptions {
  readonly maxLineBytes: number
  /** Lines taken into one chunk at most. */
  readonly chunkLines: number
  readonly enrich: Enricher
  readonly logger: Logger
  /** Counted here: lines cut to maxLineBytes, and lines that could not be an entry at all. */
  readonly counters: { truncated_lines: number; dropped_lines: number }
}

/** The entries of one chunk, the byte after each one's line, and the byte after the last line taken (0: none). */
export interface Chunk {
  readonly events: LogEvent[]
  readonly ends: number[]
  readonly consumed: number
}

/** Cuts UTF-8 at most `max` bytes long without splitting a character. */
function cutUtf8(bytes: Buffer, max: number): string {
  let end = max
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--
  return bytes.subarray(0, end).toString('utf8')
}

/** The complete lines of `buffer`, which holds `bytesRead` bytes of `file` from its offset, as entries. */
export async function chunkOf(
  file: TrackedFile,
  buffer: Buffer,
  bytesRead: number,
  options: LineOptions,
): Promise<Chunk> {
  const { chunkLines, maxLineBytes } = options
  const receivedAt = new Date().toISOString()
  const events: LogEvent[] = []
  const ends: number[] = []
  let start = 0
  let consumed = 0
  while (start < bytesRead && events.length < chunkLines) {
    let newline = buffer.indexOf(NEWLINE, start)
    if (newline >= bytesRead) newline = -1
    let end = newline
    if (newline === -1) {
      // An unfinished last line waits for its newline, unless it is already too long to keep whole.
      if (start > 0 || bytesRead - start <= maxLineBytes) break
      const found = await findNewline(file, file.offset + bytesRead)
      if (found === undefined) break
      end = bytesRead
      newline = found - file.offset
    }
    let line = buffer.subarray(start, end)
    const truncated = line.length > maxLineBytes || newline >= bytesRead
    if (line.at(-1) === 0x0d) line = line.subarray(0, -1)
    if (truncated) options.counters.truncated_lines++
    const lineOffset = file.offset + start
    const text = truncated ? cutUtf8(line, maxLineBytes) : line.toString('utf8')
    if (text.trim() !== '') {
      const event = toEvent(file, text, lineOffset, truncated, receivedAt, options)
      if (event) {
        events.push(event)
        ends.push(file.offset + newline + 1)
      }
    }
    start = newline + 1
    consumed = file.offset + newline + 1
  }
  return { events, ends, consumed }
}

/** The offset of the next newline at or after `from`, or undefined when the file ends first. */
async function findNewline(file: TrackedFile, from: number): Promise<number | undefined> {
  const buffer = Buffer.allocUnsafe(64 * 1024)
  for (let position = from; ; ) {
    const { bytesRead } = await file.handle.read(buffer, 0, buffer.length, position)
    if (bytesRead === 0) return undefined
    const newline = buffer.subarray(0, bytesRead).indexOf(NEWLINE)
    if (newline >= 0) return position + newline
    position += bytesRead
  }
}

/** A JSON object line as it is, any other line as `{ message }`; undefined (counted) if it cannot be an entry. */
function toEvent(
  file: TrackedFile,
  text: string,
  offset: number,
  truncated: boolean,
  receivedAt: string,
  options: LineOptions,
): LogEvent | undefined {
  let entry: Record<string, unknown> | undefined
  if (!truncated && text.trimStart().startsWith('{')) {
    try {
      const value: unknown = sjson.parse(text, undefined, SAFE_PARSE)
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
        entry = value as Record<string, unknown>
      }
    } catch {
      // Not JSON after all: kept as a message.
    }
  }
  const plain = () => ({ message: text, ...(truncated ? { truncated: true } : {}) })
  entry ??= plain()
  const addSource = (e: Record<string, unknown>) => {
    if (!Object.hasOwn(e, 'event_id')) e.event_id = `${file.idPrefix}-${offset}`
    if (!Object.hasOwn(e, 'log.file.path')) e['log.file.path'] = file.path
    return e
  }
  try {
    return options.enrich(addSource(entry), receivedAt, {})
  } catch (err) {
    if (!(err instanceof InputError)) throw err
    try {
      // A JSON line sidelog cannot take as it is (a bad event_id, too deep) is kept as text.
      return options.enrich(addSource({ ...plain(), tail_error: err.message }), receivedAt, {})
    } catch {
      options.counters.dropped_lines++
      options.logger.warn({ path: file.path, offset, err }, 'tail: line dropped')
      return undefined
    }
  }
}
