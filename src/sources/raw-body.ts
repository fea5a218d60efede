// A /logs body as the http source reads it: its bytes (after gzip) and how to parse them, decoded as text only when
// the parsing path or an Idempotency-Key fingerprint needs it. Its own module so that the idempotency hooks read it
// without importing the source that registers them.
import { isUtf8 } from 'node:buffer'

export type Format = 'json' | 'ndjson'

/** A /logs body as received (after gzip), and decoded as text only when the parsing path or a key needs it. */
export class RawBody {
  private decoded: string | undefined
  constructor(
    readonly format: Format,
    readonly bytes: Buffer,
  ) {}

  /**
   * What identifies the body (see idempotency/keys.ts): its bytes, when they are valid UTF-8, hash as the text they
   * decode to, without decoding them.
   */
  get fingerprinted(): Buffer | string {
    return isUtf8(this.bytes) ? this.bytes : this.text
  }

  /** The body decoded as Fastify decodes a text body: invalid UTF-8 becomes replacement characters. */
  get text(): string {
    this.decoded ??= this.bytes.toString('utf8')
    return this.decoded
  }
}
