import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InputError } from '../../src/errors.js'
import { type ChunkEvent, type EventRun, formatEventId, type LogEvent, newEventId } from '../../src/event.js'
import { encodeJsonlBuffer } from '../../src/jsonl.js'
import { createEnricher, type EnrichContext, severityOf } from '../../src/pipeline/enrich.js'
import { catchError } from '../helpers.js'

const context: EnrichContext = {
  service: 'checkout',
  revision: 'checkout-00042',
  host: 'host-1',
  labels: { env: 'prod' },
  maxEntryBytes: 1024,
  newId: () => 'generated-id',
}
const receivedAt = '2026-01-02T03:04:05.678Z'

function enrich(entry: Record<string, unknown>, ctx = context) {
  const event = createEnricher(ctx)(entry, receivedAt, { index: 3 })
  return { event, parsed: JSON.parse(event.line) as Record<string, unknown> }
}

describe('createEnricher', () => {
  it('keeps every field the app sent and adds the documented ones', () => {
    const { event, parsed } = enrich({ message: 'paid', amount: 12.5, nested: { a: [1, 2] } })
    expect(parsed).toEqual({
      message: 'paid',
      amount: 12.5,
      nested: { a: [1, 2] },
      event_id: 'generated-id',
      service: 'checkout',
      revision: 'checkout-00042',
      host: 'host-1',
      processed_at: receivedAt,
      timestamp: receivedAt,
      env: 'prod',
    })
    expect(event.id).toBe('generated-id')
    expect(event.bytes).toBe(Buffer.byteLength(event.line) + 1)
  })

  it('never overwrites a field the app set', () => {
    const entry = {
      event_id: 'app-id-1',
      service: 'mine',
      revision: 'r',
      host: 'h',
      processed_at: 'p',
      timestamp: 't',
      severity: 'DEBUG',
      level: 'error',
      env: 'staging',
    }
    const { event, parsed } = enrich(entry)
    expect(parsed).toEqual(entry)
    expect(event.id).toBe('app-id-1')
  })

  it('makes a new unique id per entry by default', () => {
    const ctx = { ...context, newId: undefined }
    const ids = new Set(Array.from({ length: 1000 }, () => enrich({}, ctx).event.id))
    expect(ids.size).toBe(1000)
  })

  it('enriches an empty object', () => {
    expect(enrich({}).parsed).toMatchObject({ event_id: 'generated-id', service: 'checkout' })
  })

  it("takes the timestamp from pino's epoch-ms time or an ISO time, else the receive time", () => {
    expect(enrich({ time: 1_700_000_000_000 }).parsed.timestamp).toBe('2023-11-14T22:13:20.000Z')
    expect(enrich({ time: '2024-05-06T07:08:09Z' }).parsed.timestamp).toBe('2024-05-06T07:08:09.000Z')
    expect(enrich({ time: 'not a time' }).parsed.timestamp).toBe(receivedAt)
  })

  it('adds a Cloud Logging severity from the level', () => {
    expect(enrich({ level: 50 }).parsed.severity).toBe('ERROR')
    expect(enrich({ level: 'WARN' }).parsed.severity).toBe('WARNING')
    expect(enrich({ level: 'chatty' }).parsed).not.toHaveProperty('severity')
    expect(severityOf(30)).toBe('INFO')
    expect(severityOf({})).toBeUndefined()
  })

  it('rejects an entry over MAX_ENTRY_BYTES with 413, naming where', () => {
    const error = catchError(() => enrich({ big: 'x'.repeat(2000) })) as InputError
    expect(error).toBeInstanceOf(InputError)
    expect(error).toMatchObject({ statusCode: 413, code: 'ENTRY_TOO_LARGE', where: { index: 3 } })
    expect(error.message).toMatch(/entry is 2\d{3} bytes; the limit is 1024 \(MAX_ENTRY_BYTES\)/)
  })

  it('rejects an unusable app-supplied event_id', () => {
    // A lone surrogate (JSON lets "\ud800" through) is written as U+FFFD on disk: the id would change between the
    // first send and a replay from the spool, and BigQuery would take the replay for another row.
    for (const id of [42, '', 'x'.repeat(129), '\ud800', 'a\udc00b']) {
      expect(catchError(() => enrich({ event_id: id }))).toMatchObject({
        statusCode: 400,
        code: 'INVALID_EVENT_ID',
      })
    }
    expect(enrich({ event_id: 'order-😀' }).event.id).toBe('order-😀')
  })

  it('rejects an entry too deeply nested to serialise with 400, not a crash', () => {
    const deep: Record<string, unknown> = {}
    let cursor = deep
    for (let i = 0; i < 20_000; i++) {
      const next: Record<string, unknown> = {}
      cursor.a = next
      cursor = next
    }
    const ctx = { ...context, maxEntryBytes: 10_000_000 }
    expect(catchError(() => enrich(deep, ctx))).toMatchObject({ statusCode: 400, code: 'ENTRY_TOO_DEEP' })
  })
})

describe('createEnricher: the entry as received', () => {
  const enrichText = (text: string, ctx = context) =>
    createEnricher(ctx)(JSON.parse(text), receivedAt, { line: 7 }, undefined, undefined, text)

  it('splices the added fields into the text as sent, without encoding the entry again', () => {
    const event = enrichText('{"big":12345678901234567890, "msg" : "hi"}')
    expect(event.line).toBe(
      `{"big":12345678901234567890, "msg" : "hi","event_id":"generated-id","service":"checkout","revision":"checkout-00042","host":"host-1","processed_at":"${receivedAt}","timestamp":"${receivedAt}","message":"hi","env":"prod"}`,
    )
    expect(event.bytes).toBe(Buffer.byteLength(event.line) + 1)
    expect(enrichText('{ }').line).toMatch(/^\{"event_id":"generated-id",/)
  })

  it('keeps the size, depth and event_id checks, naming the line', () => {
    expect(catchError(() => enrichText(`{"m":"${'x'.repeat(2000)}"}`))).toMatchObject({
      statusCode: 413,
      code: 'ENTRY_TOO_LARGE',
      where: { line: 7 },
    })
    const deep = `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`
    expect(catchError(() => enrichText(deep, { ...context, maxEntryBytes: 10_000_000 }))).toMatchObject({
      statusCode: 400,
      code: 'ENTRY_TOO_DEEP',
      where: { line: 7 },
    })
    expect(catchError(() => enrichText('{"event_id":7}'))).toMatchObject({ code: 'INVALID_EVENT_ID' })
    expect(enrichText('{"event_id":"mine"}').id).toBe('mine')
  })

  it('reuses the ISO form of a time shared by consecutive entries, and never a wrong one', () => {
    const enricher = createEnricher(context)
    const at = (time: unknown) => JSON.parse(enricher({ time }, receivedAt, {}).line).timestamp as string
    expect(at(1_700_000_000_000)).toBe('2023-11-14T22:13:20.000Z')
    expect(at(1_700_000_000_000)).toBe('2023-11-14T22:13:20.000Z')
    expect(at('not a time')).toBe(receivedAt)
    expect(at(1_700_000_000_001)).toBe('2023-11-14T22:13:20.001Z')
  })
})

describe('createEnricher: the built-in ids of a whole request', () => {
  it("gives each event a new id, the same one its line's event_id says, each time it is asked", () => {
    const enrich = createEnricher({ ...context, newId: undefined })
    const entries = [{ n: 1 }, { n: 2, event_id: 'app-set' }, { n: 3 }]
    const first = enrich.request(entries, [undefined, undefined, undefined], receivedAt, () => ({})).events()
    const second = enrich.request([{ n: 4 }], ['{"n":4}'], receivedAt, () => ({})).events()
    const events = [...first, ...second]
    for (const event of events) {
      expect(JSON.parse(event.line).event_id).toBe(event.id)
      expect(event.id).toBe(event.id)
    }
    expect(events[1]?.id).toBe('app-set')
    expect(new Set(events.map((e) => e.id)).size).toBe(4)
    expect(events[0]?.id).toMatch(/^[0-9a-f]{20}-[0-9a-z]+$/)
  })
})

describe('createEnricher: the memory a request keeps', () => {
  it('holds its own bytes only, whatever small Buffers are made and freed between requests (as the spool does)', () => {
    const enrich = createEnricher({ ...context, newId: undefined, maxEntryBytes: 1e6 })
    const kept: ChunkEvent[] = []
    let counted = 0
    for (let i = 0; i < 20_000; i++) {
      const text = `{"msg":"request ${i} handled in 12 ms","path":"/api/v1/items/${i}"}`
      const events = enrich.request([JSON.parse(text)], [text], receivedAt, () => ({})).events()
      // A spool's record of the entry, made and dropped right after: small Buffers from the same allocator.
      Buffer.concat([Buffer.from(events[0]?.line ?? ''), Buffer.alloc(16)])
      for (const event of events) {
        kept.push(event as ChunkEvent)
        counted += event.bytes
      }
    }
    // A one-entry request's chunk that shared Node's 8 KiB pool would keep the whole block, and the records freed
    // around it, alive as long as the entry waits in the buffer: 4.6 times its bytes. In slabs of their own, the
    // requests keep their own bytes and at most the unfilled rest of the last slab.
    const held = new Set(kept.map((event) => event.chunk.buffer))
    let heldBytes = 0
    for (const buffer of held) heldBytes += buffer.byteLength
    expect(heldBytes).toBeLessThanOrEqual(counted + 1024 * 1024)
    expect(heldBytes / counted).toBeLessThan(1.15)
  })
})

describe('the built-in event ids', () => {
  it('never repeat, and read the same each time one is formatted', () => {
    const ids = new Set<string>()
    for (let i = 0; i < 20_000; i++) ids.add(formatEventId(newEventId()))
    expect(ids.size).toBe(20_000)
    const n = newEventId()
    expect(formatEventId(n)).toBe(formatEventId(n))
    expect(formatEventId(n)).toMatch(/^[0-9a-f]{20}-[0-9a-z]+$/)
  })
})

describe("createEnricher: Cloud Logging's fields", () => {
  const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
  const SPAN = '00f067aa0ba902b7'
  const withProject = { ...context, project: 'my-project' }

  it('copies a string `msg` to `message` when the entry has none, and keeps both', () => {
    expect(enrich({ msg: 'paid "in full"' }).parsed).toMatchObject({
      msg: 'paid "in full"',
      message: 'paid "in full"',
    })
    expect(enrich({ msg: 'a', message: 'b' }).parsed).toMatchObject({ msg: 'a', message: 'b' })
    expect(enrich({ msg: { not: 'a string' } }).parsed).not.toHaveProperty('message')
  })

  it('turns a W3C traceparent field into the trace (with the project) and span fields', () => {
    const { parsed } = enrich({ traceparent: `00-${TRACE}-${SPAN}-01` }, withProject)
    expect(parsed['logging.googleapis.com/trace']).toBe(`projects/my-project/traces/${TRACE}`)
    expect(parsed['logging.googleapis.com/spanId']).toBe(SPAN)
  })

  it('uses the bare trace id when no project is known', () => {
    expect(enrich({ traceparent: `00-${TRACE}-${SPAN}-00` }).parsed['logging.googleapis.com/trace']).toBe(
      TRACE,
    )
  })

  it("reads OpenTelemetry's trace_id and span_id fields", () => {
    const { parsed } = enrich({ trace_id: TRACE, span_id: SPAN }, withProject)
    expect(parsed).toMatchObject({
      'logging.googleapis.com/trace': `projects/my-project/traces/${TRACE}`,
      'logging.googleapis.com/spanId': SPAN,
    })
  })

  it('takes the request context (a traceparent header) for entries without their own trace', () => {
    const enricher = createEnricher(withProject)
    const request = { trace: { traceId: TRACE, spanId: SPAN } }
    const own = '0af7651916cd43dd8448eb211c80319c'
    const plain = JSON.parse(enricher({}, receivedAt, {}, request).line)
    const owned = JSON.parse(enricher({ trace_id: own }, receivedAt, {}, request).line)
    expect(plain['logging.googleapis.com/trace']).toBe(`projects/my-project/traces/${TRACE}`)
    expect(owned['logging.googleapis.com/trace']).toBe(`projects/my-project/traces/${own}`)
    expect(owned).not.toHaveProperty('logging.googleapis.com/spanId')
  })

  it('never overwrites trace fields the entry has, and ignores malformed or all-zero ids', () => {
    const set = {
      'logging.googleapis.com/trace': 'projects/p/traces/x',
      traceparent: `00-${TRACE}-${SPAN}-01`,
    }
    expect(enrich(set, withProject).parsed['logging.googleapis.com/trace']).toBe('projects/p/traces/x')
    for (const traceparent of [
      'garbage',
      `00-${'0'.repeat(32)}-${SPAN}-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`,
      `ff-${TRACE}-${SPAN}-01`,
      `00-${TRACE.slice(1)}-${SPAN}-01`,
    ]) {
      expect(enrich({ traceparent }).parsed).not.toHaveProperty('logging.googleapis.com/trace')
    }
  })

  it('passes an httpRequest object through intact', () => {
    const httpRequest = { requestMethod: 'GET', requestUrl: '/a?b=1', status: 200, latency: '0.012s' }
    expect(enrich({ httpRequest }).parsed.httpRequest).toEqual(httpRequest)
  })
})

describe('createEnricher: a whole request at once', () => {
  const entryArb = fc.dictionary(
    fc.constantFrom('msg', 'level', 'time', 'event_id', 'service', 'host', 'env', 'trace_id', 'x', 'é', 'n'),
    fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.integer(), fc.constant(null)),
    { maxKeys: 5 },
  )

  it('makes the same events as one call per entry, each line in one Buffer, with its UTF-8 size', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { minLength: 1, maxLength: 6 }), fc.boolean(), (entries, asText) => {
        const texts = entries.map((e) => (asText ? JSON.stringify(e) : undefined))
        const ids = (prefix: string) => {
          let n = 0
          return () => `${prefix}${n++}`
        }
        const one = createEnricher({ ...context, maxEntryBytes: 1e6, newId: ids('g') })
        const many = createEnricher({ ...context, maxEntryBytes: 1e6, newId: ids('g') })
        const place = (i: number) => ({ line: i + 1 })
        let expected: unknown
        try {
          expected = entries.map((e, i) => one(e, receivedAt, place(i), {}, undefined, texts[i]))
        } catch (err) {
          expected = err
        }
        let actual: unknown
        let run: EventRun | undefined
        try {
          run = many.request(entries, texts, receivedAt, place, {})
          actual = run.events()
        } catch (err) {
          actual = err
        }
        if (expected instanceof InputError) {
          expect(actual).toBeInstanceOf(InputError)
          expect((actual as InputError).where).toEqual((expected as InputError).where)
          return
        }
        const plain = (events: LogEvent[]) => events.map(({ id, line, bytes }) => ({ id, line, bytes }))
        expect(plain(actual as LogEvent[])).toEqual(plain(expected as LogEvent[]))
        ;(actual as LogEvent[]).forEach((event, i) => {
          expect(event.bytes).toBe(Buffer.byteLength(event.line) + 1)
          // Independently of how the line was put together: every field the entry had, as it was, and the ones
          // sidelog adds wherever the entry lacked them (the entry's own first, in its order).
          const entry = entries[i] as Record<string, unknown>
          const parsed = JSON.parse(event.line) as Record<string, unknown>
          expect(Object.keys(parsed).slice(0, Object.keys(entry).length)).toEqual(Object.keys(entry))
          for (const [name, value] of Object.entries(entry)) expect(parsed[name]).toEqual(value)
          const added = { service: 'checkout', revision: 'checkout-00042', host: 'host-1', env: 'prod' }
          for (const [name, value] of Object.entries(added)) {
            if (!Object.hasOwn(entry, name)) expect(parsed[name]).toBe(value)
          }
          if (!Object.hasOwn(entry, 'processed_at')) expect(parsed.processed_at).toBe(receivedAt)
          expect(parsed.event_id).toBe(event.id)
        })
        // Written as JSONL, the request's events are its lines, each with its newline, whatever their characters.
        const jsonl = encodeJsonlBuffer(actual as LogEvent[]).toString()
        expect(jsonl).toBe((expected as LogEvent[]).map((e) => `${e.line}\n`).join(''))
        // The run itself is those lines, and knows how many.
        expect(run?.chunk.toString()).toBe(jsonl)
        expect(run?.count).toBe(entries.length)
      }),
      { numRuns: 500 },
    )
  })

  it('names the line or index of the entry that fails, and takes derived ids', () => {
    const enrich = createEnricher(context)
    const entries = [{ n: 1 }, { event_id: '' }]
    const err = catchError(() =>
      enrich.request(entries, [undefined, undefined], receivedAt, (i) => ({ index: i })),
    ) as InputError
    expect(err.code).toBe('INVALID_EVENT_ID')
    expect(err.where).toEqual({ index: 1 })
    const events = enrich
      .request(
        [{ n: 1 }, { n: 2 }],
        ['{"n":1}', undefined],
        receivedAt,
        () => ({}),
        {},
        (i) => `key-${i}`,
      )
      .events()
    expect(events?.map((e) => e.id)).toEqual(['key-0', 'key-1'])
    expect(events?.map((e) => JSON.parse(e.line).n)).toEqual([1, 2])
  })
})
