// The body parser against JSON.parse as the reference: every entry it returns is what JSON.parse makes of the body,
// every text it keeps is that entry's exact text and parses to the same value, and it refuses what JSON.parse
// refuses. Generated bodies (fast-check) with arbitrary spacing and adversarial strings, and hand-picked ones.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InputError } from '../../src/errors.js'
import { elementTexts, mayHoldForbiddenKey, parseJson, parseNdjson } from '../../src/ingest/parse-body.js'

/** Strings a boundary scanner could trip on: brackets, quotes, backslashes and escapes inside strings. */
const trickyString = fc.oneof(
  fc.string({
    unit: fc.constantFrom('{', '}', '[', ']', '"', '\\', ',', ':', ' ', 'a', '\n', '\u2028', 'é', '😀'),
  }),
  fc.string(),
)
/**
 * Keys: the same, without the two sidelog refuses (fc.string() makes `__proto__` and `constructor` on purpose, and a
 * body holding one is refused: see FORBIDDEN_KEY in test/sources/http.test.ts and test/faults/bad-input.test.ts).
 */
const key = trickyString.filter((k) => k !== '__proto__' && k !== 'constructor')
const jsonValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    trickyString,
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(key, tie('value'), { maxKeys: 4 }),
  ),
})).value
const entry = fc.dictionary(key, jsonValue, { maxKeys: 6 })
const whitespace = fc.string({ unit: fc.constantFrom(' ', '\t', '\n', '\r'), maxLength: 3 })

/** JSON text of `value` with generated whitespace between its tokens (valid JSON, spaced as a client might). */
function spaced(value: unknown, spaces: () => string): string {
  if (Array.isArray(value)) {
    return `[${spaces()}${value.map((v) => spaced(v, spaces)).join(`${spaces()},${spaces()}`)}${spaces()}]`
  }
  if (value !== null && typeof value === 'object') {
    const members = Object.entries(value).map(
      ([k, v]) => `${JSON.stringify(k)}${spaces()}:${spaces()}${spaced(v, spaces)}`,
    )
    return `{${spaces()}${members.join(`${spaces()},${spaces()}`)}${spaces()}}`
  }
  return JSON.stringify(value)
}

/** The error `fn` throws, or undefined. */
function errorOf(fn: () => unknown): unknown {
  try {
    fn()
    return undefined
  } catch (err) {
    return err
  }
}

function spacer(seed: string[]): () => string {
  let i = 0
  return () => seed[i++ % seed.length] ?? ''
}

describe('parseJson: arrays, against JSON.parse', () => {
  it('gives JSON.parse’s entries, and each kept text is the element as sent and parses to the same value', () => {
    fc.assert(
      fc.property(
        fc.array(entry, { maxLength: 8 }),
        fc.array(whitespace, { minLength: 1 }),
        (entries, ws) => {
          const text = spaced(entries, spacer(ws))
          const parsed = parseJson(text, 1000)
          expect(parsed.isArray).toBe(true)
          expect(parsed.entries).toEqual(JSON.parse(text))
          expect(parsed.texts).toHaveLength(entries.length)
          parsed.texts.forEach((kept, i) => {
            if (kept === undefined) return
            expect(kept).not.toMatch(/[\n\r]/)
            expect(text.includes(kept)).toBe(true)
            expect(JSON.parse(kept)).toEqual(parsed.entries[i])
          })
          // On one line, every element keeps its text.
          if (!/[\n\r]/.test(text)) expect(parsed.texts.every((t) => t !== undefined)).toBe(true)
        },
      ),
      { numRuns: 400 },
    )
  })

  it('finds the elements of hand-picked adversarial arrays', () => {
    const bodies = [
      '[{"a":"}"},{"b":"\\"}{"}]',
      '[{"a":"\\\\"},{"b":"\\\\\\""}]',
      '[ {"a":[{"x":"]"}]} , { } ,{"c":{"d":"{"}}]',
      '\ufeff[{"bom":1}]',
      '[{"u":"\\u007d\\u005d"},{"e":"\u2028"}]',
    ]
    for (const body of bodies) {
      const parsed = parseJson(body, 1000)
      expect(parsed.texts.map((t) => (t === undefined ? undefined : JSON.parse(t)))).toEqual(
        JSON.parse(body.replace(/^\ufeff/, '')),
      )
    }
    expect(elementTexts('[{"a":1},\n{"b":\n2}]', 2)).toEqual(['{"a":1}', undefined])
  })

  it('refuses what JSON.parse refuses, and non-objects, naming the index', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (text) => {
        let reference: unknown
        try {
          reference = JSON.parse(text.replace(/^\ufeff/, ''))
        } catch {
          reference = Symbol.for('invalid')
        }
        const err = errorOf(() => parseJson(text, 1000))
        const isEntry = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v)
        const accepts = isEntry(reference) || (Array.isArray(reference) && reference.every(isEntry))
        if (accepts && !/__proto__|constructor|\\u00/.test(text)) expect(err).toBeUndefined()
        if (!accepts) expect(err).toBeInstanceOf(InputError)
      }),
      { numRuns: 2000 },
    )
    const err = errorOf(() => parseJson('[{"a":1},2]', 1000)) as InputError
    expect(err.where).toEqual({ index: 1 })
  })
})

describe('parseNdjson, against JSON.parse per line', () => {
  it('gives each line’s JSON.parse value and its trimmed text, with its line number', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(entry, fc.constantFrom('', ' ', '\t'), fc.boolean()), { maxLength: 8 }),
        ([...rows]) => {
          const lines = rows.map(
            ([e, pad, blankAfter]) => `${pad}${JSON.stringify(e)}${pad}${blankAfter ? '\n' : ''}`,
          )
          const text = lines.join('\n')
          const parsed = parseNdjson(text, 1000)
          expect(parsed.entries).toEqual(rows.map(([e]) => JSON.parse(JSON.stringify(e))))
          parsed.texts.forEach((kept, i) => {
            expect(kept).toBe(JSON.stringify(rows[i]?.[0]))
            expect(text.split('\n')[(parsed.lines?.[i] as number) - 1]?.trim()).toBe(kept)
          })
        },
      ),
      { numRuns: 300 },
    )
  })
})

describe('mayHoldForbiddenKey', () => {
  it('is the three substring searches it replaced', () => {
    const reference = (t: string) =>
      t.includes('__proto__') || t.includes('constructor') || t.includes('\\u00')
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom('_', 'p', 'r', 'o', 't', 'c', 'n', 's', 'u', '\\', '0', 'x') }),
        (t) => {
          expect(mayHoldForbiddenKey(t)).toBe(reference(t))
        },
      ),
      { numRuns: 3000 },
    )
    for (const t of ['{"__proto__":1}', '{"constructor":{}}', '{"\\u005f_proto__":1}', '{"a":1}']) {
      expect(mayHoldForbiddenKey(t)).toBe(reference(t))
    }
  })
})
