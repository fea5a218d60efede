// A validating scan of one JSON object in a body's bytes, without building it: where it ends, and where the values of
// the top-level keys enrichment reads are. The http source's byte path (see enrich-bytes.ts) uses it instead of
// JSON.parse for the common case, and copies each entry's bytes as received; anything the scan does not take falls
// back to the parsing path, which gives every refusal and every rare case its exact answer. Imports nothing from src.
//
// What the scan takes is a subset of JSON that needs no decoding to be copied: every object and array nested at most
// MAX_DEPTH deep, spaces and tabs between tokens (a newline or carriage return between tokens is refused: the entry
// would span lines, and the parsing path encodes such an entry again), no key with a backslash escape (it could spell
// a forbidden key), and no key `__proto__` or `constructor` at any depth (the parsing path refuses or checks those).
// Strings are checked as JSON requires (no control character, valid escapes); UTF-8 is the caller's to check.

/** How a top-level value was written: the kinds enrichment tells apart. */
export const STRING = 1
/** A string with at least one backslash escape: decode it (JSON.parse) before use. */
export const ESCAPED_STRING = 2
export const NUMBER = 3
/** An object, an array, true, false or null. */
export const OTHER = 4

/** Deeper than this, an entry goes to the parsing path (which encodes long entries again and so checks their depth). */
export const MAX_DEPTH = 64

/** Bytes a string may hold as they are: anything from a space up, but the quote and the backslash. */
const PLAIN = new Uint8Array(256)
for (let c = 0x20; c < 256; c++) PLAIN[c] = 1
PLAIN[0x22] = 0
PLAIN[0x5c] = 0

const HEX = new Uint8Array(256)
for (const c of '0123456789abcdefABCDEF') HEX[c.charCodeAt(0)] = 1

const EMPTY_WORDS = new DataView(new ArrayBuffer(0))

const FORBIDDEN_KEYS = ['__proto__', 'constructor'].map((key) => Buffer.from(key))

/**
 * Scans objects one at a time. `fields` are the top-level keys to report (plain ASCII or UTF-8 without quotes or
 * backslashes); after `object()` succeeds, `has(k)` says whether the object had key `fields[k]` (the last one when
 * it was repeated, as JSON.parse keeps), and `kind`, `valueStart`, `valueEnd` say how and where its value was written.
 */
export class JsonScanner {
  /** Top-level keys of the last object scanned. */
  keys = 0
  private readonly kinds: Uint8Array
  private readonly starts: Int32Array
  private readonly ends: Int32Array
  /** The object each field was last seen in: no reset per object. */
  private readonly seenIn: Int32Array
  private objectNo = 0
  /** Candidate fields by key length, each with its key's bytes. */
  private readonly byLength: { bytes: Buffer; field: number }[][] = []
  /** Container kinds of the open objects (1) and arrays (2). */
  private readonly stack = new Uint8Array(MAX_DEPTH + 1)
  /** Whether the last string scanned had an escape. */
  private escaped = false
  /** The bytes being scanned, read four at a time (see string()); dropped by forget(). */
  private words: DataView<ArrayBufferLike> = EMPTY_WORDS
  private wordsOf: Uint8Array | undefined

  constructor(fields: readonly string[]) {
    const n = fields.length
    this.kinds = new Uint8Array(n)
    this.starts = new Int32Array(n)
    this.ends = new Int32Array(n)
    this.seenIn = new Int32Array(n)
    fields.forEach((name, field) => {
      const bytes = Buffer.from(name)
      this.byLength[bytes.length] ??= []
      const candidates = this.byLength[bytes.length] as { bytes: Buffer; field: number }[]
      // A name given twice is reported under its first field.
      if (!candidates.some((c) => c.bytes.equals(bytes))) candidates.push({ bytes, field })
    })
  }

  has(field: number): boolean {
    return this.seenIn[field] === this.objectNo
  }
  kind(field: number): number {
    return this.kinds[field] as number
  }
  valueStart(field: number): number {
    return this.starts[field] as number
  }
  valueEnd(field: number): number {
    return this.ends[field] as number
  }

  /**
   * Scans the object that starts at `b[p]` (a `{`) and returns the position just after it, or -1 when the bytes from
   * `p` are not an object this scan takes (see the header). Never reads a value's bytes twice.
   */
  object(b: Uint8Array, p: number): number {
    if (b[p] !== 0x7b) return -1
    if (b !== this.wordsOf) {
      this.words = new DataView(b.buffer, b.byteOffset, b.byteLength)
      this.wordsOf = b
    }
    const stack = this.stack
    // Numbered in an Int32Array: before the number would wrap (after 2^31 objects), every field is forgotten.
    if (this.objectNo === 0x7fffffff) {
      this.seenIn.fill(0)
      this.objectNo = 0
    }
    this.objectNo++
    this.keys = 0
    stack[1] = 1
    let depth = 1
    p++
    // The field whose value is being scanned (a key at depth 1 that is one of `fields`), or -1.
    let field = -1
    let valueStart = 0
    // 0: a value is expected; 1: a value has ended; 2: a key or `}` is expected; 3: a key is expected (after a comma).
    let state = 2
    let c: number | undefined
    for (;;) {
      c = b[p]
      while (c === 0x20 || c === 0x09) c = b[++p]
      if (state === 0) {
        let kind = OTHER
        if (c === 0x22) {
          p = this.string(b, p + 1)
          if (p < 0) return -1
          kind = this.escaped ? ESCAPED_STRING : STRING
        } else if (c === 0x7b) {
          if (depth === MAX_DEPTH) return -1
          stack[++depth] = 1
          p++
          state = 2
          continue
        } else if (c === 0x5b) {
          if (depth === MAX_DEPTH) return -1
          stack[++depth] = 2
          c = b[++p]
          while (c === 0x20 || c === 0x09) c = b[++p]
          if (c !== 0x5d) continue // state stays 0: the array's first value
          depth--
          p++
        } else if (c === 0x2d || (c !== undefined && c >= 0x30 && c <= 0x39)) {
          p = number(b, p)
          if (p < 0) return -1
          kind = NUMBER
        } else if (c === 0x74) {
          if (b[p + 1] !== 0x72 || b[p + 2] !== 0x75 || b[p + 3] !== 0x65) return -1
          p += 4
        } else if (c === 0x66) {
          if (b[p + 1] !== 0x61 || b[p + 2] !== 0x6c || b[p + 3] !== 0x73 || b[p + 4] !== 0x65) return -1
          p += 5
        } else if (c === 0x6e) {
          if (b[p + 1] !== 0x75 || b[p + 2] !== 0x6c || b[p + 3] !== 0x6c) return -1
          p += 4
        } else {
          return -1
        }
        state = 1
        if (depth === 1 && field !== -1) this.setField(field, kind, valueStart, p)
        continue
      }
      if (state === 1) {
        const inObject = stack[depth] === 1
        if (c === 0x2c) {
          p++
          state = inObject ? 3 : 0
          continue
        }
        if (c !== (inObject ? 0x7d : 0x5d)) return -1
        p++
        if (--depth === 0) return p
        if (depth === 1 && field !== -1) this.setField(field, OTHER, valueStart, p)
        continue
      }
      // A key (state 3), or a key or the end of an empty object (state 2).
      if (c === 0x7d && state === 2) {
        p++
        state = 1
        if (--depth === 0) return p
        if (depth === 1 && field !== -1) this.setField(field, OTHER, valueStart, p)
        continue
      }
      if (c !== 0x22) return -1
      const keyStart = p + 1
      p = this.string(b, keyStart)
      if (p < 0 || this.escaped) return -1
      const keyLength = p - 1 - keyStart
      if ((keyLength === 9 || keyLength === 11) && isForbiddenKey(b, keyStart, keyLength)) return -1
      c = b[p]
      while (c === 0x20 || c === 0x09) c = b[++p]
      if (c !== 0x3a) return -1
      c = b[++p]
      while (c === 0x20 || c === 0x09) c = b[++p]
      state = 0
      if (depth === 1) {
        this.keys++
        field = this.fieldOf(b, keyStart, keyLength)
        valueStart = p
      }
    }
  }

  private setField(field: number, kind: number, start: number, end: number): void {
    this.kinds[field] = kind
    this.starts[field] = start
    this.ends[field] = end
    this.seenIn[field] = this.objectNo
  }

  private fieldOf(b: Uint8Array, start: number, length: number): number {
    const candidates = this.byLength[length]
    if (candidates === undefined) return -1
    const first = b[start]
    for (let n = 0; n < candidates.length; n++) {
      const { bytes, field } = candidates[n] as { bytes: Buffer; field: number }
      if (bytes[0] !== first) continue
      let k = 1
      while (k < length && b[start + k] === bytes[k]) k++
      if (k >= length) return field
    }
    return -1
  }

  /** Lets go of the bytes last scanned. */
  forget(): void {
    this.words = EMPTY_WORDS
    this.wordsOf = undefined
  }

  /** Scans a string from just after its opening quote; returns the position after its closing quote, or -1. */
  private string(b: Uint8Array, p: number): number {
    this.escaped = false
    const words = this.words
    const last = b.length - 4
    for (;;) {
      // Four bytes at a time while none needs a look (a third less time for the bench's entries): `t` has a byte's
      // high bit set where x's byte is below 0x20 or equals 0x22 or 0x5c, and possibly in the bytes above such a one,
      // never where there is none. Bytes from 0x80 up are plain (UTF-8, which the caller checks).
      while (p <= last) {
        const x = words.getInt32(p, true)
        const quote = x ^ 0x22222222
        const backslash = x ^ 0x5c5c5c5c
        const t =
          (((x - 0x20202020) | 0) & ~x) |
          (((quote - 0x01010101) | 0) & ~quote) |
          (((backslash - 0x01010101) | 0) & ~backslash)
        if ((t & 0x80808080) !== 0) break
        p += 4
      }
      while (PLAIN[b[p] as number] === 1) p++
      const c = b[p]
      if (c === 0x22) return p + 1
      if (c !== 0x5c) return -1 // a control character, or the end of the bytes
      this.escaped = true
      const e = b[p + 1]
      if (e === 0x75) {
        if (
          HEX[b[p + 2] as number] !== 1 ||
          HEX[b[p + 3] as number] !== 1 ||
          HEX[b[p + 4] as number] !== 1 ||
          HEX[b[p + 5] as number] !== 1
        )
          return -1
        p += 6
      } else if (
        e === 0x22 ||
        e === 0x5c ||
        e === 0x2f ||
        e === 0x62 ||
        e === 0x66 ||
        e === 0x6e ||
        e === 0x72 ||
        e === 0x74
      ) {
        p += 2
      } else {
        return -1
      }
    }
  }
}

function isForbiddenKey(b: Uint8Array, start: number, length: number): boolean {
  for (const key of FORBIDDEN_KEYS) {
    if (key.length !== length) continue
    let k = 0
    while (k < length && b[start + k] === key[k]) k++
    if (k === length) return true
  }
  return false
}

/** Scans a JSON number from `p`; returns the position after it, or -1. */
function number(b: Uint8Array, p: number): number {
  if (b[p] === 0x2d) p++
  let c = b[p]
  if (c === 0x30) {
    c = b[++p]
  } else if (c !== undefined && c >= 0x31 && c <= 0x39) {
    do c = b[++p]
    while (c !== undefined && c >= 0x30 && c <= 0x39)
  } else {
    return -1
  }
  if (c === 0x2e) {
    c = b[++p]
    if (c === undefined || c < 0x30 || c > 0x39) return -1
    do c = b[++p]
    while (c !== undefined && c >= 0x30 && c <= 0x39)
  }
  if (c === 0x65 || c === 0x45) {
    c = b[++p]
    if (c === 0x2b || c === 0x2d) c = b[++p]
    if (c === undefined || c < 0x30 || c > 0x39) return -1
    do c = b[++p]
    while (c !== undefined && c >= 0x30 && c <= 0x39)
  }
  return p
}
