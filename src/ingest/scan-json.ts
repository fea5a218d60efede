// A validating scan of one JSON object in a body's bytes, without building it: where it ends, and where the values of
// the top-level keys enrichment reads are. The http source's byte path (see enrich-bytes.ts) uses it instead of
// JSON.parse for the common case, and copies each entry's bytes as received; anything the scan does not take falls
// back to the parsing path, which gives every refusal and every rare case its exact answer. Imports nothing from src
// but the scan's WebAssembly module.
//
// What the scan takes is a subset of JSON that needs no decoding to be copied: every object and array nested at most
// MAX_DEPTH deep, spaces and tabs between tokens (a newline or carriage return between tokens is refused: the entry
// would span lines, and the parsing path encodes such an entry again), no key with a backslash escape (it could spell
// a forbidden key), and no key `__proto__` or `constructor` at any depth (the parsing path refuses or checks those).
// Strings are checked as JSON requires (no control character, valid escapes); UTF-8 is the caller's to check.
//
// The scan itself is WebAssembly (scan-json.wat, assembled into scan-json.wasm.ts): the same state machine as a
// JavaScript loop reads from linear memory without a bounds and type check per byte, and reads a string's bytes 16
// at a time. Each body is copied into the module's memory once, then scanned object by object.
import { SCAN_JSON_WASM } from './scan-json.wasm.js'

/** How a top-level value was written: the kinds enrichment tells apart. */
export const STRING = 1
/** A string with at least one backslash escape: decode it (JSON.parse) before use. */
export const ESCAPED_STRING = 2
export const NUMBER = 3
/** An object, an array, true, false or null. */
export const OTHER = 4

/** Deeper than this, an entry goes to the parsing path (which encodes long entries again and so checks their depth). */
export const MAX_DEPTH = 64

/** After the bytes: the 0 that ends every scan there, and room for a string's 16-byte read from just before it. */
const AFTER_BODY = 1 + 16
const PAGE = 64 * 1024
/**
 * Memory kept between bodies: past it, the memory a body and its lines grew is let go once they are done (see
 * forget). A 100-entry request's body and lines take about 70 KiB: two pages, 128 KiB.
 */
const KEPT_BYTES = 2 * 1024 * 1024
/** Bodies larger than this go to the parsing path rather than into the module's memory. */
const LARGEST_BODY = 1024 ** 3

const compiled = new WebAssembly.Module(Buffer.from(SCAN_JSON_WASM, 'base64'))

interface ScanExports {
  readonly memory: WebAssembly.Memory
  init(fields: number, heads: number, results: number, state: number, stack: number): void
  object(at: number): number
}

const align16 = (n: number) => Math.ceil(n / 16) * 16
/** Name lengths with a chain of their own in HEADS; longer names share the last one. */
const HEAD_LENGTHS = 64

/**
 * Scans objects one at a time. `fields` are the top-level keys to report (plain ASCII or UTF-8 without quotes or
 * backslashes); after `object()` succeeds, `has(k)` says whether the object had key `fields[k]` (the last one when
 * it was repeated, as JSON.parse keeps), and `kind`, `valueStart`, `valueEnd` say how and where its value was written.
 */
export class JsonScanner {
  private scan!: ScanExports
  /**
   * The module's memory as a Buffer (no copy), made again whenever it grows. Past `free` it is the caller's until
   * the next body is loaded: the byte path writes a request's lines there (see enrich-bytes.ts).
   */
  memory!: Buffer
  private words!: Int32Array
  /** The bytes in the module's memory: scanned without copying them again until another Buffer is given. */
  private loaded: Uint8Array | undefined
  /** Where the loaded bytes start in the module's memory, and where the memory after them starts. */
  bodyAt = 0
  free = 0
  /** Where RESULTS, STATE and BODY are in the module's memory (see scan-json.wat). */
  private results = 0
  private state = 0

  constructor(private readonly fields: readonly string[]) {
    this.instantiate()
  }

  /** A fresh instance with the fields' names in its memory, laid out as scan-json.wat says. */
  private instantiate(): void {
    const instance = new WebAssembly.Instance(compiled, {})
    this.scan = instance.exports as unknown as ScanExports
    const names = this.fields.map((name) => Buffer.from(name))
    const heads = this.fields.length * 12
    let at = heads + HEAD_LENGTHS * 4
    const nameAt = names.map((name) => {
      const start = at
      at += name.length
      return start
    })
    this.results = align16(at)
    this.state = this.results + this.fields.length * 16
    const stack = this.state + 16
    this.bodyAt = align16(stack + MAX_DEPTH + 1)
    this.free = align16(this.bodyAt + AFTER_BODY)
    this.reserve(this.free)
    // Each name length's fields chained in order from its head (see scan-json.wat).
    const { words } = this
    words.fill(-1, heads >> 2, (heads >> 2) + HEAD_LENGTHS)
    const last = new Map<number, number>()
    names.forEach((name, field) => {
      this.memory.set(name, nameAt[field] as number)
      words[field * 3] = name.length
      words[field * 3 + 1] = nameAt[field] as number
      words[field * 3 + 2] = -1
      const head = Math.min(name.length, HEAD_LENGTHS - 1)
      const before = last.get(head)
      if (before === undefined) words[(heads >> 2) + head] = field
      else words[before * 3 + 2] = field
      last.set(head, field)
    })
    this.scan.init(this.fields.length, heads, this.results, this.state, stack)
    this.loaded = undefined
  }

  /** Memory of at least `bytes`, grown by whole pages (and `memory` made again); throws a RangeError if it cannot. */
  reserve(bytes: number): void {
    const { memory } = this.scan
    const size = memory.buffer.byteLength
    // The same memory, large enough: the views stand (a fresh instance, or a grown memory, needs new ones).
    if (size >= bytes && this.memory?.buffer === memory.buffer) return
    if (size < bytes) memory.grow(Math.ceil((bytes - size) / PAGE))
    this.memory = Buffer.from(memory.buffer)
    this.words = new Int32Array(memory.buffer)
  }

  /** Top-level keys of the last object scanned. */
  get keys(): number {
    return this.words[(this.state >> 2) + 1] as number
  }

  has(field: number): boolean {
    const { words } = this
    return words[(this.results >> 2) + field * 4] === words[this.state >> 2]
  }
  kind(field: number): number {
    return this.words[(this.results >> 2) + field * 4 + 1] as number
  }
  valueStart(field: number): number {
    return (this.words[(this.results >> 2) + field * 4 + 2] as number) - this.bodyAt
  }
  valueEnd(field: number): number {
    return (this.words[(this.results >> 2) + field * 4 + 3] as number) - this.bodyAt
  }

  /**
   * Scans the object that starts at `b[p]` (a `{`) and returns the position just after it, or -1 when the bytes from
   * `p` are not an object this scan takes (see the header). `b` is copied into the module's memory when it is not the
   * Buffer scanned last: its bytes must not change between the calls that scan it.
   */
  object(b: Uint8Array, p: number): number {
    // Outside the bytes, the module's memory holds whatever was there before (an earlier body): nothing to scan.
    if (!(p >= 0 && p < b.length) || !Number.isInteger(p)) return -1
    if (b !== this.loaded && !this.load(b)) return -1
    const end = this.scan.object(this.bodyAt + p)
    return end < 0 ? -1 : end - this.bodyAt
  }

  /** Lets go of the bytes last scanned, and of the memory a large body (or what followed it) grew. */
  forget(): void {
    this.loaded = undefined
    if (this.scan.memory.buffer.byteLength > KEPT_BYTES) this.instantiate()
  }

  /**
   * Copies `b` into the module's memory (the Buffer `object()` then scans without copying it again) and moves `free`
   * past it; false when the memory cannot have the room.
   */
  load(b: Uint8Array): boolean {
    if (b.length > LARGEST_BODY) return false
    const end = this.bodyAt + b.length
    try {
      this.reserve(end + AFTER_BODY)
    } catch {
      // The module's memory could not grow (RangeError): the parsing path takes the body.
      return false
    }
    this.memory.set(b, this.bodyAt)
    this.memory[end] = 0
    this.free = align16(end + AFTER_BODY)
    this.loaded = b
    return true
  }
}
