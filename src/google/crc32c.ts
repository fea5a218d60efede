// CRC32C for Cloud Storage's validation of uploads (given with each object: see createObject). Large inputs natively
// where it loads (@node-rs/crc32, with the CPU's CRC32 instruction): 0.12 ms for a 1.6 MiB object. Small ones, and
// all on a platform without a prebuilt binary, in WebAssembly (crc32c.wat: sixteen bytes a step, as crc-32's
// JavaScript does): 0.76 ms for 1.6 MiB, the copy into the module's memory included; crc-32 (SheetJS) took 1.3 ms,
// MD5 (OpenSSL) 2.2 ms, the client's own CRC32C (a byte at a time) 8.3 ms. Each is loaded on first use: the file sink
// never needs one.
import { createRequire } from 'node:module'
import { CRC32C_WASM } from './crc32c.wasm.js'

/** The tables (16 of 256 words) at 0 in the module's memory, then the bytes being hashed, a piece at a time. */
const TABLES_BYTES = 16 * 256 * 4
const PIECE_BYTES = 256 * 1024
const PAGE = 64 * 1024

interface Crc32cExports {
  readonly memory: WebAssembly.Memory
  update(crc: number, at: number, bytes: number): number
}

/** The module, made on first use. */
let made: { update: Crc32cExports['update']; memory: Uint8Array } | undefined

function module() {
  if (made !== undefined) return made
  const exports = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(CRC32C_WASM, 'base64')), {})
    .exports as unknown as Crc32cExports
  exports.memory.grow(
    Math.ceil((TABLES_BYTES + PIECE_BYTES) / PAGE) - exports.memory.buffer.byteLength / PAGE,
  )
  const words = new Int32Array(exports.memory.buffer, 0, TABLES_BYTES / 4)
  // Table 0: the CRC of each byte (0x82F63B78, Castagnoli's polynomial reflected); table t: a byte t places on.
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    words[n] = c
  }
  for (let t = 1; t < 16; t++) {
    for (let n = 0; n < 256; n++) {
      const before = words[(t - 1) * 256 + n] as number
      words[t * 256 + n] = (before >>> 8) ^ (words[before & 0xff] as number)
    }
  }
  made = { update: exports.update, memory: new Uint8Array(exports.memory.buffer) }
  return made
}

/** Gives the CRC32C of `data` continued from `crc` (0 to start), as a signed 32-bit number. */
export type Crc32cUpdate = (crc: number, data: Uint8Array) => number

/** In WebAssembly: inputs under 256 KiB, and all of them on a platform @node-rs/crc32 has no binary for. */
export const wasmUpdate: Crc32cUpdate = (crc, data) => {
  const { update, memory } = module()
  for (let at = 0; at < data.length; at += PIECE_BYTES) {
    const piece = data.subarray(at, Math.min(at + PIECE_BYTES, data.length))
    memory.set(piece, TABLES_BYTES)
    crc = update(crc, TABLES_BYTES, piece.length)
  }
  return crc
}

/** Native, or undefined where @node-rs/crc32 has no binary that loads. */
export function nativeUpdate(): Crc32cUpdate | undefined {
  let crc32c: (data: Uint8Array, initial?: number) => number
  try {
    ;({ crc32c } = createRequire(import.meta.url)('@node-rs/crc32') as typeof import('@node-rs/crc32'))
  } catch {
    return undefined
  }
  return (crc, data) => crc32c(data, crc >>> 0) | 0
}

/**
 * Inputs from this size on are hashed natively. Loading the native binary costs 3.6 MiB of RSS once, which pays for
 * hashing megabyte objects (gcs at saturation: 20 µs less CPU per 100-entry request) but not gzip's objects of tens of
 * KiB: with it, gcs gzip at saturation peaked at 124 and 129 MiB, against 121 and 122 without. (Logs that compress
 * less than the bench's, to gzip objects of 256 KiB or more, load it too.)
 */
const NATIVE_FROM_BYTES = 256 * 1024

/** The native one once tried: undefined until then, null where it does not load. */
let native: Crc32cUpdate | null | undefined

/** Which CRC32C hashes an input of `bytes`. */
export function crc32cFor(bytes: number): 'native' | 'wasm' {
  if (bytes < NATIVE_FROM_BYTES) return 'wasm'
  native ??= nativeUpdate() ?? null
  return native === null ? 'wasm' : 'native'
}

function update(crc: number, data: Uint8Array): number {
  return crc32cFor(data.length) === 'native' ? (native as Crc32cUpdate)(crc, data) : wasmUpdate(crc, data)
}

/** The CRC32C of `data` as Cloud Storage writes it: big-endian, base64. */
export function crc32cOf(data: Buffer): string {
  const crc = new Crc32c()
  crc.update(data)
  return crc.toString()
}

/** The client's CRC32CValidator (its `crc32cGenerator`), for the validation it does itself. */
export class Crc32c {
  private value = 0

  /** `using` for a test that checks one implementation; the uploads' by default. */
  constructor(private readonly using: Crc32cUpdate = update) {}

  update(data: Buffer): void {
    this.value = this.using(this.value, data)
  }

  /** Big-endian, base64, as Cloud Storage writes it. */
  toString(): string {
    const bytes = Buffer.alloc(4)
    bytes.writeInt32BE(this.value | 0)
    return bytes.toString('base64')
  }

  validate(value: string): boolean {
    return value === this.toString()
  }
}
