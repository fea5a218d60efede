import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ChunkEvent, createLogEvent } from '../../src/event.js'
import { eventToRecord, recordEventId, recordToEvent } from '../../src/spool/entry-payload.js'

describe('a spool record holds an entry', () => {
  const text = fc.oneof(fc.string({ minLength: 1 }), fc.string({ unit: 'grapheme', minLength: 1 }))

  it('gives back the same id and line, from a plain event or from one that points into a request', () => {
    fc.assert(
      fc.property(text, text, fc.string(), fc.string(), (id, value, before, after) => {
        const line = JSON.stringify({ value })
        // The request's other lines sit before and after it in the same Buffer.
        const head = `${JSON.stringify({ before })}\n`
        const chunk = Buffer.from(`${head}${line}\n${JSON.stringify({ after })}\n`)
        const pointing = new ChunkEvent(id, chunk, Buffer.byteLength(head), Buffer.byteLength(line) + 1)
        for (const event of [createLogEvent(id, line), pointing]) {
          const payload = eventToRecord(event)
          expect(recordEventId(payload)).toBe(id)
          const back = recordToEvent({ seq: 9, payload })
          expect(back).toEqual({ id, line, bytes: Buffer.byteLength(line) + 1, seq: 9 })
        }
      }),
      { numRuns: 300 },
    )
  })
})
