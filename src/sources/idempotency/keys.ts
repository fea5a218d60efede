// What identifies a keyed request: its Idempotency-Key header, the fingerprint of its body, and the event ids its
// entries get from both, by which a repeat is recognised in the spool even when the key's answer was never journaled.
import { createHash } from 'node:crypto'
import { InputError } from '../../errors.js'
import { recordEventId, type Spool } from '../../spool/index.js'

/** Printable ASCII without spaces, as UUIDs, ULIDs and base64 keys are; at most 255 characters. */
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/
/** A derived event id: 22 characters of the key's and body's hash, a dash, the entry's place in its request. */
const DERIVED_ID = /^([A-Za-z0-9_-]{22})-\d+$/

/** The key of a request: undefined without the header, a 400 for one sidelog cannot use. */
export function idempotencyKeyOf(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined
  if (Array.isArray(header)) {
    throw new InputError(400, 'INVALID_IDEMPOTENCY_KEY', 'send one Idempotency-Key header, not several')
  }
  // The IETF draft writes the key as a quoted string; most clients send it bare. Both mean the same key.
  const trimmed = header.trim()
  const key =
    trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"') ? trimmed.slice(1, -1) : trimmed
  if (!KEY_PATTERN.test(key)) {
    throw new InputError(
      400,
      'INVALID_IDEMPOTENCY_KEY',
      'Idempotency-Key must be 1 to 255 printable ASCII characters without spaces (a UUID is a good key)',
    )
  }
  return key
}

/**
 * What makes two requests the same: the body after decompression (its text, or its bytes when they are the UTF-8 of
 * that text, which hash the same) and how it is to be parsed.
 */
export function fingerprintOf(format: string, text: string | Buffer): string {
  return createHash('sha256').update(format).update('\n').update(text).digest('base64url')
}

/** The event id prefix of a keyed request's entries: 22 characters of SHA-256 over the key and the body's hash. */
export function derivedIdPrefix(key: string, fingerprint: string): string {
  return createHash('sha256').update(key).update('\n').update(fingerprint).digest('base64url').slice(0, 22)
}

/** Every keyed (derived) event id in the spool's log, read once at start-up before sidelog listens. */
export async function derivedIdsInSpool(spool: Spool): Promise<Map<string, number>> {
  // Counted per key as it reads, and only the ids decoded: a full spool holds millions of entries, and a list of
  // their ids (or their lines) would not fit the heap sidelog starts with.
  const counts = new Map<string, number>()
  const reader = spool.reader(0)
  for (;;) {
    const records = await reader.read(10_000, 64 * 1024 ** 2)
    if (records.length === 0) return counts
    for (const record of records) {
      const prefix = DERIVED_ID.exec(recordEventId(record.payload))?.[1]
      if (prefix !== undefined) counts.set(prefix, (counts.get(prefix) ?? 0) + 1)
    }
  }
}
