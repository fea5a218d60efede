// CRC32C for Cloud Storage's validation of uploads (given with each object: see createObject), from crc-32 (SheetJS;
// sixteen bytes a step): 1.1 ms for a 1.6 MiB object, where MD5 (OpenSSL) took 2.2 ms, 22% of the main thread's time
// in the bench's gcs scenario, and the client's own CRC32C (JavaScript, a byte at a time) 8.3 ms. A native one
// (@node-rs/crc32, 0.12 ms) was measured too: loading it added 3.6 MiB of RSS, and gcs gzip at saturation then
// peaked over the 128 MiB budget.
import crc32c from 'crc-32/crc32c.js'

/** The CRC32C of `data` as Cloud Storage writes it: big-endian, base64. */
export function crc32cOf(data: Buffer): string {
  const crc = new Crc32c()
  crc.update(data)
  return crc.toString()
}

/** The client's CRC32CValidator (its `crc32cGenerator`), for the validation it does itself. */
export class Crc32c {
  private value = 0

  update(data: Buffer): void {
    this.value = crc32c.buf(data, this.value)
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
