import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ChunkEvent, copyLines, createLogEvent, formatEventId, type LogEvent } from '../src/event.js'
import { encodeJsonlBuffer } from '../src/jsonl.js'

/** The events of one request, as the enricher makes them: every line and its newline in one Buffer. */
function chunkOf(lines: readonly string[], firstId = 0): ChunkEvent[] {
  const chunk = Buffer.from(lines.map((line) => `${line}\n`).join(''))
  let at = 0
  return lines.map((line, i) => {
    const bytes = Buffer.byteLength(line) + 1
    const event = new ChunkEvent(firstId + i, chunk, at, bytes)
    at += bytes
    return event
  })
}

describe('ChunkEvent', () => {
  it('reads its line and its id back from what it points to', () => {
    const [a, b] = chunkOf(['{"a":"é"}', '{"b":2}'], 7)
    expect(a?.line).toBe('{"a":"é"}')
    expect(a?.bytes).toBe(Buffer.byteLength('{"a":"é"}') + 1)
    expect(b?.line).toBe('{"b":2}')
    expect([a?.id, b?.id]).toEqual([formatEventId(7), formatEventId(8)])
    expect(a?.id).toMatch(/^[0-9a-f]{20}-7$/)
    expect(new ChunkEvent('given', Buffer.from('{}\n'), 0, 3).id).toBe('given')
  })
})

describe('copyLines and encodeJsonlBuffer', () => {
  const line = fc.oneof(fc.string(), fc.string({ unit: 'grapheme' })).map((s) => JSON.stringify({ s }))

  it('write every event as its line and a newline, whatever mix of requests and plain events, in any order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(line, { minLength: 1, maxLength: 5 }), { maxLength: 4 }),
        fc.array(line, { maxLength: 4 }),
        fc.integer(),
        (requests, plain, seed) => {
          const events: LogEvent[] = [
            ...requests.flatMap((lines) => chunkOf(lines)),
            ...plain.map((l, i) => createLogEvent(`p${i}`, l)),
          ]
          // A batch holds a request's events in order, but a retry's narrowed batch may skip some: shuffle a copy.
          const shuffled = [...events].sort(
            (x, y) => ((x.bytes * 31 + seed) % 7) - ((y.bytes * 31 + seed) % 7),
          )
          for (const batch of [events, shuffled, events.filter((_, i) => i % 2 === 0)]) {
            const expected = batch.map((e) => `${e.line}\n`).join('')
            expect(encodeJsonlBuffer(batch).toString()).toBe(expected)
          }
        },
      ),
      { numRuns: 300 },
    )
  })

  it("copies a request's consecutive events in one go, and stops where the next does not follow", () => {
    const [a, b, c] = chunkOf(['{"n":1}', '{"n":2}', '{"n":3}'])
    const out = Buffer.alloc(100, 0x2e)
    const end = copyLines([a, c, b] as LogEvent[], out, 5)
    expect(out.toString('utf8', 5, end)).toBe('{"n":1}\n{"n":3}\n{"n":2}\n')
    expect(out.subarray(0, 5).toString()).toBe('.....')
  })

  it('refuses an event whose line is not the size it says, instead of writing a line cut short', () => {
    const wrong: LogEvent = { id: 'x', line: '{"é":1}', bytes: 8 }
    expect(() => copyLines([wrong], Buffer.alloc(8), 0)).toThrow(RangeError)
    // encodeJsonlBuffer then takes the string path: the whole line, however the event counted it.
    expect(encodeJsonlBuffer([wrong]).toString()).toBe('{"é":1}\n')
  })
})
