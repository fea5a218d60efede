// The byte path (enrich-bytes.ts, scan-json.ts) against the parsing path it stands in for: for any body, either the
// byte path gives up, or both write the same bytes and ids; and whatever the parsing path refuses, the byte path gives
// up on. The property is checked on bodies written every way an app might (whitespace, escapes, CRLF, blank lines,
// arrays over several lines), and the byte path must take most of them, so the property cannot hold by giving up.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { type EventRun, SPAN_FIELD, TRACE_FIELD } from '../../src/event.js'
import { parseJson, parseNdjson } from '../../src/ingest/parse-body.js'
import { JsonScanner, MAX_DEPTH } from '../../src/ingest/scan-json.js'
import { createEnricher, type EnrichContext, type RequestContext } from '../../src/pipeline/enrich.js'
import { writeBase36 } from '../../src/pipeline/enrich-bytes.js'

const receivedAt = '2026-01-02T03:04:05.678Z'
const MAX_ENTRIES = 20

function contextWithIds(labels: Record<string, string> = { env: 'prod', team: 'pay' }): EnrichContext {
  let n = 0
  return {
    service: 'checkout',
    revision: 'r"1',
    host: 'hôst',
    labels,
    maxEntryBytes: 1000,
    newId: () => `id-${n++}`,
    project: 'demo',
  }
}

type Format = 'json' | 'ndjson'

/** What the http source does without the byte path: the run's lines and ids, or the error's code. */
function parsingPath(
  enrich: ReturnType<typeof createEnricher>,
  body: Buffer,
  format: Format,
  request: RequestContext,
  idOf?: (i: number) => string,
  maxEntries = MAX_ENTRIES,
) {
  try {
    const text = body.toString('utf8')
    if (!/\S/.test(text)) return { error: 'EMPTY_BODY' }
    const parsed = format === 'json' ? parseJson(text, maxEntries) : parseNdjson(text, maxEntries)
    if (parsed.entries.length === 0) return { error: 'NO_ENTRIES' }
    const { lines } = parsed
    const placeOf = lines ? (i: number) => ({ line: lines[i] as number }) : (i: number) => ({ index: i })
    const run = enrich.request(parsed.entries, parsed.texts, receivedAt, placeOf, request, idOf)
    return { run }
  } catch (err) {
    return { error: (err as { code?: string }).code ?? String(err) }
  }
}

function linesAndIds(run: { chunk: Buffer; events(): { id: string }[] }) {
  return { bytes: run.chunk.toString('latin1'), ids: run.events().map((e) => e.id) }
}

// Entries: keys enrichment reads, with values of every kind, and others, nested.
const readKeys = [
  'event_id',
  'service',
  'host',
  'processed_at',
  'timestamp',
  'time',
  'severity',
  'level',
  'msg',
  'message',
  'traceparent',
  'trace_id',
  'span_id',
  TRACE_FIELD,
  SPAN_FIELD,
  'env',
]
const text = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
  fc.constantFrom('info', 'WARN', '30', 'error', 'x\ny', 'tab\there', '"q"', 'é', '\u2028', 'a/b', ''),
  fc.constantFrom(
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '4bf92f3577b34da6a3ce929d0e0e4736',
    '00f067aa0ba902b7',
    '2026-05-01T10:00:00Z',
    'not a date',
  ),
)
const scalar = fc.oneof(
  text,
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(30, 50, 1.5e12, -0, 0, true, false, null),
)
const value = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar,
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 4 }), tie('value'), { maxKeys: 3 }),
  ),
})).value
// Keys as apps write them mostly; any string (quotes, backslashes, __proto__) now and then.
const key = fc.oneof(
  { arbitrary: fc.constantFrom(...readKeys), weight: 4 },
  { arbitrary: fc.stringMatching(/^[a-z_]{0,6}$/), weight: 4 },
  { arbitrary: fc.string({ maxLength: 6 }), weight: 1 },
)
const entry = fc
  .tuple(
    fc.array(fc.tuple(key, value), { maxLength: 6 }),
    fc.option(fc.string({ minLength: 1, maxLength: 8 }), { freq: 2 }),
  )
  // Object.fromEntries: __proto__ as a key is an own key, as JSON.parse makes it.
  .map(([pairs, id]) => {
    const made = Object.fromEntries(pairs) as Record<string, unknown>
    if (id !== null) made.event_id = id
    return made
  })

/** JSON as an app might write it: compact or spaced, with the escapes a JSON writer may choose in its strings. */
function write(value: unknown, style: { space: boolean; escape: boolean; slash: boolean }): string {
  const gap = style.space ? ' \t' : ''
  const string = (s: string) => {
    let json = JSON.stringify(s)
    if (style.escape)
      json = json.replace(/[é\u2028a]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    if (style.slash) json = json.replace(/\//g, '\\/')
    return json
  }
  if (typeof value === 'string') return string(value)
  if (Array.isArray(value)) return `[${gap}${value.map((v) => write(v, style)).join(`${gap},${gap}`)}${gap}]`
  if (typeof value === 'object' && value !== null) {
    const members = Object.entries(value).map(
      ([k, v]) => `${JSON.stringify(k)}${gap}:${gap}${write(v, style)}`,
    )
    return `{${gap}${members.join(`,${gap}`)}${gap}}`
  }
  return JSON.stringify(value)
}
const style = fc.record({ space: fc.boolean(), escape: fc.boolean(), slash: fc.boolean() })

const body = fc.record({
  entries: fc.array(entry, { minLength: 1, maxLength: 8 }),
  style,
  format: fc.constantFrom<Format>('json', 'ndjson'),
  shape: fc.constantFrom('lines', 'crlf', 'blank-lines', 'array', 'array-over-lines', 'one-object', 'pretty'),
  keyed: fc.boolean(),
  trace: fc.boolean(),
  labelsLikeFields: fc.boolean(),
})

function bodyText({ entries, style: s, format, shape }: BodyCase): string {
  const items = entries.map((e) => write(e, s))
  if (format === 'ndjson') {
    if (shape === 'crlf') return `${items.join('\r\n')}\r\n`
    if (shape === 'blank-lines') return `\n${items.join('\n  \n')}\n\n`
    if (shape === 'pretty') return JSON.stringify(entries[0], null, 2)
    return items.join('\n')
  }
  if (shape === 'one-object') return ` ${items[0]}\n`
  if (shape === 'pretty') return JSON.stringify(entries, null, 2)
  if (shape === 'array-over-lines' || shape === 'crlf') return `[\r\n${items.join(',\r\n')}\r\n]`
  return `[${items.join(',')}]`
}
interface BodyCase {
  entries: Record<string, unknown>[]
  style: { space: boolean; escape: boolean; slash: boolean }
  format: Format
  shape: string
}

describe('the byte path against the parsing path', () => {
  it('writes the same lines and ids for every body it takes, and takes none the parsing path refuses', () => {
    let taken = 0
    let runs = 0
    fc.assert(
      fc.property(body, (c) => {
        runs++
        const bytes = Buffer.from(bodyText(c))
        const request: RequestContext = c.trace
          ? { trace: { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16) } }
          : {}
        const idOf = c.keyed ? (i: number) => `key-${i}` : undefined
        // Labels named like fields sidelog reads too, which must be added only where the entry lacks them.
        const labels = c.labelsLikeFields
          ? { env: 'prod', msg: 'L', severity: 'DEFAULT', service: 'S' }
          : undefined
        const fast = createEnricher(contextWithIds(labels)).body(
          bytes,
          c.format,
          receivedAt,
          request,
          idOf,
          MAX_ENTRIES,
        )
        const slow = parsingPath(createEnricher(contextWithIds(labels)), bytes, c.format, request, idOf)
        if (fast === undefined) return
        taken++
        expect(slow.error).toBeUndefined()
        expect(fast.count).toBe(slow.run?.count)
        expect(linesAndIds(fast)).toEqual(linesAndIds(slow.run as NonNullable<typeof slow.run>))
      }),
      { numRuns: 3000 },
    )
    // Most bodies written these ways are the byte path's: a byte path that gave up on everything would pass above.
    expect(taken / runs).toBeGreaterThan(0.3)
  })

  it('takes the bodies apps send most, with built-in ids, and writes what the parsing path writes', () => {
    const entries = Array.from({ length: 100 }, (_, i) => ({
      level: i % 3 ? 'info' : 'error',
      msg: `GET /api/orders/${i} 200`,
      time: 1_700_000_000_000 + i,
      status: 200,
      nested: { ok: true, list: [1, 2.5, null] },
    }))
    const ctx = { service: 's', revision: 'r', host: 'h', labels: {}, maxEntryBytes: 10_000 }
    for (const [format, text] of [
      ['ndjson', entries.map((e) => JSON.stringify(e)).join('\n')],
      ['json', JSON.stringify(entries)],
      ['json', JSON.stringify(entries[0])],
    ] as const) {
      const bytes = Buffer.from(text)
      const fast = createEnricher(ctx).body(bytes, format, receivedAt, {}, undefined, 1000)
      const slow = parsingPath(createEnricher(ctx), bytes, format, {}, undefined, 1000)
      expect(fast, format).toBeDefined()
      // Built-in ids differ between the two runs (one counter for the process): compare the lines without them.
      const withoutIds = (run: { chunk: Buffer }) =>
        run.chunk.toString().replace(/"event_id":"[0-9a-f]+-[0-9a-z]+"/g, '"event_id":"*"')
      expect(withoutIds(fast as NonNullable<typeof fast>)).toBe(
        withoutIds(slow.run as NonNullable<typeof slow.run>),
      )
      const events = (fast as NonNullable<typeof fast>).events()
      expect(new Set(events.map((e) => e.id)).size).toBe(events.length)
      for (const event of events) expect(JSON.parse(event.line).event_id).toBe(event.id)
    }
  })

  // With built-in ids, the usual entry's id, identity and times are written as one piece (additions.ts): an entry with
  // any of those fields of its own takes the long way, on both paths.
  it('with built-in ids, keeps each identity or time field an entry has and adds the others, both ways', () => {
    const ctx = { service: 's', revision: 'r', host: 'h', labels: {}, maxEntryBytes: 10_000 }
    const own: Record<string, unknown>[] = [
      {},
      { service: 'mine' },
      { revision: 'mine' },
      { host: 'mine' },
      { processed_at: 'mine' },
      { timestamp: 'mine' },
      { time: 1_700_000_000_000 },
      { time: '2020-01-01T00:00:00Z', service: 'mine' },
    ]
    const bytes = Buffer.from(own.map((e) => JSON.stringify({ a: 1, ...e })).join('\n'))
    const fast = createEnricher(ctx).body(bytes, 'ndjson', receivedAt, {}, undefined, 100)
    const slow = parsingPath(createEnricher(ctx), bytes, 'ndjson', {}, undefined, 100).run
    for (const run of [fast, slow]) {
      const lines = (run as EventRun).chunk
        .toString()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
      lines.forEach((line, i) => {
        const entry = own[i] as Record<string, unknown>
        const expected = {
          a: 1,
          ...entry,
          event_id: expect.stringMatching(/^[0-9a-f]{20}-[0-9a-z]+$/),
          service: entry.service ?? 's',
          revision: entry.revision ?? 'r',
          host: entry.host ?? 'h',
          processed_at: entry.processed_at ?? receivedAt,
          timestamp:
            entry.timestamp ??
            (entry.time === undefined ? receivedAt : new Date(entry.time as string | number).toISOString()),
        }
        expect(line, JSON.stringify(entry)).toEqual(expected)
      })
    }
  })

  // The lines are written into the scanner's memory after the body (enrich-bytes.ts, BytesOut): a large request grows
  // it while its lines are written, and the memory is let go after it.
  it('writes a large request (the memory grown under its lines) as the parsing path does, and the next one too', () => {
    const ctx = { service: 's', revision: 'r', host: 'h', labels: {}, maxEntryBytes: 10_000 }
    const enrich = createEnricher(ctx)
    const slowEnrich = createEnricher(ctx)
    const withoutIds = (run: { chunk: Buffer }) =>
      run.chunk.toString().replace(/"event_id":"[0-9a-f]+-[0-9a-z]+"/g, '"event_id":"*"')
    for (const count of [20_000, 3, 5_000]) {
      const text = Array.from({ length: count }, (_, i) =>
        JSON.stringify({ level: 'info', msg: `m${i}`, time: 1_700_000_000_000 + i, pad: 'é'.repeat(i % 50) }),
      ).join('\n')
      const bytes = Buffer.from(text)
      const fast = enrich.body(bytes, 'ndjson', receivedAt, {}, undefined, 100_000)
      const slow = parsingPath(slowEnrich, bytes, 'ndjson', {}, undefined, 100_000)
      expect(fast, `${count} entries`).toBeDefined()
      expect((fast as NonNullable<typeof fast>).count).toBe(count)
      expect(withoutIds(fast as NonNullable<typeof fast>)).toBe(
        withoutIds(slow.run as NonNullable<typeof slow.run>),
      )
    }
  })

  it.each([
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])],
    ['a byte-order mark', Buffer.from('\ufeff{"a":1}')],
    ['a carriage return inside an entry', Buffer.from('{"a":\r1}')],
    ['a __proto__ key', Buffer.from('{"a":{"__proto__":{"x":1}}}')],
    ['a constructor key', Buffer.from('{"constructor":{"prototype":{}}}')],
    ['an escaped key', Buffer.from('{"\\u005f_proto__":1}')],
    ['an entry nested deeper than the scan goes', Buffer.from(`{"a":${'['.repeat(70)}${']'.repeat(70)}}`)],
    ['an entry over MAX_ENTRY_BYTES', Buffer.from(JSON.stringify({ a: 'x'.repeat(1000) }))],
    ['an event_id sidelog refuses', Buffer.from('{"event_id":""}\n{"event_id":7}')],
    ['invalid JSON on a later line', Buffer.from('{"a":1}\n{"a":01}')],
    ['a line that is not an object', Buffer.from('{"a":1}\n[1]')],
    ['trailing bytes', Buffer.from('{"a":1} x')],
    ['more entries than a request may hold', Buffer.from('{}\n'.repeat(MAX_ENTRIES + 1))],
    ['a blank body', Buffer.from(' \n\t')],
  ])('gives %s to the parsing path', (_name, bytes) => {
    const enrich = createEnricher(contextWithIds())
    expect(enrich.body(bytes, 'ndjson', receivedAt, {}, undefined, MAX_ENTRIES)).toBeUndefined()
  })
})

describe('writeBase36', () => {
  it('writes what toString(36) writes, from 0 to the largest safe integer', () => {
    const target = Buffer.alloc(20, 0x2a)
    const samples = [
      0,
      1,
      9,
      10,
      35,
      36,
      37,
      1295,
      1296,
      46655,
      46656,
      2 ** 31,
      2 ** 32 + 7,
      Number.MAX_SAFE_INTEGER,
    ]
    fc.assert(
      fc.property(fc.oneof(fc.constantFrom(...samples), fc.maxSafeNat()), (n) => {
        target.fill(0x2a)
        const end = writeBase36(target, 3, n)
        expect(target.toString('latin1', 3, end)).toBe(n.toString(36))
        expect(target[2]).toBe(0x2a)
        expect(target[end]).toBe(0x2a)
      }),
      { numRuns: 2000 },
    )
  })
})

describe('built-in ids on the byte path', () => {
  it('writes each line the id its run reports, across digits that carry (a shared prefix of consecutive ids)', () => {
    const { newId: _, ...context } = contextWithIds()
    const enrich = createEnricher(context)
    // Past 36 * 36 entries, the id's last two digits carry at least once.
    for (const entries of [1, 40, 1400]) {
      const body = Buffer.from('{"n":1}\n'.repeat(entries))
      const run = enrich.body(body, 'ndjson', receivedAt, {}, undefined, 2000)
      if (run === undefined) throw new Error('the byte path gave up')
      const written = run.chunk
        .toString('latin1')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line).event_id)
      const reported = run.events().map((e) => e.id)
      expect(written).toEqual(reported)
      expect(new Set(written).size).toBe(entries)
    }
  })
})

describe('JsonScanner', () => {
  const scanner = new JsonScanner(['level', 'msg'])
  const accepts = (text: string) => {
    const b = Buffer.from(text)
    return scanner.object(b, 0) === b.length
  }

  it('never takes what JSON.parse refuses: valid objects, then every one-byte change of them', () => {
    fc.assert(
      fc.property(entry, style, fc.nat(), fc.integer({ min: 0, max: 255 }), (e, s, at, byte) => {
        const text = write(e, s)
        const b = Buffer.from(text)
        const mutated = Buffer.from(b)
        mutated[at % b.length] = byte
        for (const candidate of [b, mutated]) {
          const end = scanner.object(candidate, 0)
          if (end !== candidate.length) continue
          const parsed = JSON.parse(candidate.toString('utf8')) as unknown
          expect(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)).toBe(true)
        }
      }),
      { numRuns: 5000 },
    )
  })

  // The scan reads a string's bytes 16 at a time (see scan-json.wat): a quote, a backslash or a control character must
  // be seen at any offset from where the string starts, and wherever the body's bytes start in their memory.
  it('sees a quote, backslash or control character at every offset of a string, read 16 bytes at a time', () => {
    const specials = [0x00, 0x01, 0x0a, 0x1f, 0x22, 0x5c]
    let checked = 0
    for (let length = 0; length <= 40; length++) {
      for (let at = 0; at < length; at++) {
        for (const special of [...specials, 0x20, 0x7f, 0xc3]) {
          const content = Buffer.alloc(length, 0x61)
          content[at] = special
          if (special === 0xc3) content[at + 1] = 0xa9 // é: two bytes of UTF-8, both plain
          for (const shift of [0, 1, 2, 3]) {
            const text = Buffer.concat([Buffer.from('{"k":"'), content, Buffer.from('"}')])
            const memory = Buffer.alloc(text.length + shift)
            text.copy(memory, shift)
            const b = memory.subarray(shift)
            let valid = true
            try {
              JSON.parse(b.toString('utf8'))
            } catch {
              valid = false
            }
            expect(
              scanner.object(b, 0) === b.length,
              `${JSON.stringify(b.toString('latin1'))} from ${shift}`,
            ).toBe(valid)
            checked++
          }
        }
      }
    }
    expect(checked).toBe(820 * 9 * 4)
  })

  it('reports the top-level fields it was asked for, the last of a repeated key, and how each is written', () => {
    const text = '{"level":"info","a":{"level":1},"msg":"x\\"y","level": 30 ,"z":[{"msg":2}]}'
    const b = Buffer.from(text)
    expect(scanner.object(b, 0)).toBe(b.length)
    expect(scanner.keys).toBe(5)
    expect(b.toString('utf8', scanner.valueStart(0), scanner.valueEnd(0))).toBe('30')
    expect(b.toString('utf8', scanner.valueStart(1), scanner.valueEnd(1))).toBe('"x\\"y"')
    expect([scanner.kind(0), scanner.kind(1)]).toEqual([3, 2])
    expect(scanner.object(Buffer.from('{"a":1}'), 0)).toBe(7)
    expect([scanner.has(0), scanner.has(1)]).toEqual([false, false])
  })

  it('still tells which fields an object has after 2^31 objects', () => {
    const worn = new JsonScanner(['level', 'msg'])
    const { words, state, results } = worn as unknown as { words: Int32Array; state: number; results: number }
    // The object number is the first word of the module's STATE; each field's slot in RESULTS starts with the number
    // of the object it was last seen in (see scan-json.wat). `msg` was last seen in object 2 of the numbers before
    // the wrap: it must not count as seen in the object numbered 2 after it.
    words[state / 4] = 2 ** 31 - 3
    words[results / 4 + 4] = 2
    for (let n = 0; n < 6; n++) {
      const withLevel = n % 2 === 0
      worn.object(Buffer.from(withLevel ? '{"level":1}' : '{"a":1}'), 0)
      expect([worn.has(0), worn.has(1)], `object ${n}`).toEqual([withLevel, false])
    }
  })

  it('reports any number of fields, with names of any length (LABELS add theirs)', () => {
    const names = Array.from({ length: 200 }, (_, i) => `label_${i}_${'x'.repeat(i * 3)}`)
    const many = new JsonScanner(names)
    const b = Buffer.from(JSON.stringify({ [names[199] as string]: 'last', a: 1, [names[0] as string]: [1] }))
    expect(many.object(b, 0)).toBe(b.length)
    expect(names.map((_, i) => many.has(i)).filter(Boolean)).toHaveLength(2)
    expect(b.toString('utf8', many.valueStart(199), many.valueEnd(199))).toBe('"last"')
    expect(b.toString('utf8', many.valueStart(0), many.valueEnd(0))).toBe('[1]')
  })

  it(`takes objects and arrays nested ${MAX_DEPTH} deep, and no deeper`, () => {
    const nested = (levels: number) => `{"a":${'['.repeat(levels - 1)}${']'.repeat(levels - 1)}}`
    expect(accepts(nested(MAX_DEPTH))).toBe(true)
    expect(accepts(nested(MAX_DEPTH + 1))).toBe(false)
    expect(accepts(`{"a":${'{"b":'.repeat(MAX_DEPTH - 1)}1${'}'.repeat(MAX_DEPTH - 1)}}`)).toBe(true)
    expect(accepts(`{"a":${'{"b":'.repeat(MAX_DEPTH)}1${'}'.repeat(MAX_DEPTH)}}`)).toBe(false)
    // Far deeper than the module's stack of open containers: refused, and the next object is scanned as ever.
    expect(accepts(nested(5000))).toBe(false)
    expect(accepts('{"level":"info"}')).toBe(true)
    expect(scanner.has(0)).toBe(true)
  })

  it.each([
    '{"a":"\u0001"}',
    '{"a":"\\x"}',
    '{"a":"\\u12g4"}',
    '{"a":01}',
    '{"a":1.}',
    '{"a":-}',
    '{"a":1e}',
    '{"a":tru}',
    '{"a":[1,]}',
    '{"a":1,}',
    '{,}',
    '{"a" 1}',
    '{"a":1',
    '{"a":[1}',
    '{"a":{]}',
  ])('refuses %j', (text) => {
    expect(accepts(text)).toBe(false)
    expect(() => JSON.parse(text)).toThrow()
  })

  it.each([
    '{}',
    '{ }',
    '{"a":[]}',
    '{"a":[ ]}',
    '{"a":{}}',
    '{"a":-0.5e+10,"b":0,"c":1E-2}',
    '{"a":true,"b":false,"c":null}',
    '{"a":"\\u00e9\\n\\/\\\\"}',
    '{"a":"é😀"}',
    '{\t"a" :\t[ 1 , {"b" : [ ] } ] }',
    // Keys one byte away from the two the scan gives up on.
    '{"constructos":1,"constructo":2,"__proto_x":3,"__proto_":4,"Constructor":5}',
  ])('takes %j', (text) => {
    expect(accepts(text)).toBe(true)
  })
})
