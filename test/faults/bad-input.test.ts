// Fault scenario 6: bad input against the real process. A corpus of malformed bodies, then property-based random
// bodies (fast-check): every answer is a 202 or a 4xx, never a 5xx or a dropped connection; the process stays
// healthy; and the entries accepted before, between and after are delivered once.

import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { tempDir } from '../helpers.js'
import { fileIds, getHealth } from './harness.js'

const NDJSON = 'application/x-ndjson'
const JSON_TYPE = 'application/json'

let sidelog: SidelogProcess
let dir: string
/** event_ids of good entries sent around the bad ones: each must be delivered once. */
const goodIds: string[] = []

beforeAll(async () => {
  dir = await tempDir()
  sidelog = await spawnSidelog({ DATA_DIR: join(dir, 'data'), DEAD_LETTER_DIR: join(dir, 'dead-letter') })
})

afterAll(async () => {
  sidelog?.child.kill('SIGKILL')
})

async function post(
  body: Buffer | string,
  headers: Record<string, string>,
): Promise<{ status: number; error?: string }> {
  const res = await fetch(`${sidelog.url}/logs`, { method: 'POST', headers, body })
  const text = await res.text()
  let error: string | undefined
  try {
    error = (JSON.parse(text) as { error?: string }).error
  } catch {
    error = text.slice(0, 80)
  }
  return { status: res.status, ...(error ? { error } : {}) }
}

async function sendGood(batch: string): Promise<void> {
  const ids = Array.from({ length: 20 }, (_, i) => `good-${batch}-${i}`)
  const res = await post(ids.map((id) => JSON.stringify({ event_id: id, message: 'fine' })).join('\n'), {
    'content-type': NDJSON,
  })
  expect(res.status).toBe(202)
  goodIds.push(...ids)
}

const valid = Buffer.from('{"message":"a"}\n{"message":"b"}\n')
const deepArray = `${'['.repeat(100_000)}${']'.repeat(100_000)}`
const deepObject = `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`

/** Body, headers, and the answer sidelog must give. */
const CORPUS: [string, Buffer | string, Record<string, string>, number, string?][] = [
  [
    'truncated gzip',
    gzipSync(valid).subarray(0, 20),
    { 'content-type': NDJSON, 'content-encoding': 'gzip' },
    400,
    'INVALID_GZIP',
  ],
  [
    'gzip of garbage',
    Buffer.from('not gzip at all'),
    { 'content-type': NDJSON, 'content-encoding': 'gzip' },
    400,
    'INVALID_GZIP',
  ],
  [
    'gzip bomb (100 MB of zeros)',
    gzipSync(Buffer.alloc(100 * 1024 ** 2)),
    { 'content-type': NDJSON, 'content-encoding': 'gzip' },
    413,
    'BODY_TOO_LARGE',
  ],
  [
    'invalid UTF-8 (replaced, accepted)',
    Buffer.from([0x7b, 0x22, 0x6d, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    { 'content-type': JSON_TYPE },
    202,
  ],
  ['deeply nested array', deepArray, { 'content-type': JSON_TYPE }, 400],
  ['deeply nested object', deepObject, { 'content-type': JSON_TYPE }, 400],
  ['deeply nested NDJSON line', deepObject, { 'content-type': NDJSON }, 400],
  [
    'huge numbers (accepted, as doubles)',
    '{"n":1e400,"big":123456789012345678901234567890}',
    { 'content-type': JSON_TYPE },
    202,
  ],
  ['duplicate keys (accepted, last wins)', '{"a":1,"a":2}', { 'content-type': JSON_TYPE }, 202],
  ['NUL and control characters (accepted)', '{"m":"a\\u0000b\\u0007c"}', { 'content-type': JSON_TYPE }, 202],
  [
    '10 MB single line',
    `{"m":"${'x'.repeat(10 * 1024 ** 2)}"}`,
    { 'content-type': NDJSON },
    413,
    'BODY_TOO_LARGE',
  ],
  [
    'one entry over MAX_ENTRY_BYTES',
    `{"m":"${'x'.repeat(300 * 1024)}"}`,
    { 'content-type': NDJSON },
    413,
    'ENTRY_TOO_LARGE',
  ],
  [
    'binary',
    Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)),
    { 'content-type': NDJSON },
    400,
  ],
  ['empty body', '', { 'content-type': NDJSON }, 400],
  ['whitespace only', '\n \n\t\n', { 'content-type': NDJSON }, 400],
  ['JSON null', 'null', { 'content-type': JSON_TYPE }, 400, 'NOT_AN_OBJECT'],
  ['JSON string', '"hello"', { 'content-type': JSON_TYPE }, 400, 'NOT_AN_OBJECT'],
  ['array of numbers', '[1,2,3]', { 'content-type': JSON_TYPE }, 400, 'NOT_AN_OBJECT'],
  ['unterminated array', '[{"a":1}', { 'content-type': JSON_TYPE }, 400, 'INVALID_JSON'],
  [
    'one bad line among good ones',
    '{"a":1}\n{"a":\n{"a":3}',
    { 'content-type': NDJSON },
    400,
    'INVALID_JSON',
  ],
  ['__proto__ key', '{"__proto__":{"x":1}}', { 'content-type': JSON_TYPE }, 400, 'FORBIDDEN_KEY'],
  [
    'event_id too long',
    `{"event_id":"${'e'.repeat(500)}"}`,
    { 'content-type': JSON_TYPE },
    400,
    'INVALID_EVENT_ID',
  ],
  ['XML', '<log>hi</log>', { 'content-type': 'application/xml' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
  [
    'brotli encoding',
    'xx',
    { 'content-type': NDJSON, 'content-encoding': 'br' },
    415,
    'UNSUPPORTED_ENCODING',
  ],
]

describe('fault: bad input', () => {
  const cases = CORPUS.map(([name, body, headers, status, error]) => ({ name, body, headers, status, error }))
  it.each(cases)('$name → $status', async ({ name, body, headers, status, error }) => {
    await sendGood(`before ${name}`)
    const res = await post(body, headers)
    expect(res.status).toBe(status)
    if (error) expect(res.error).toBe(error)
    await sendGood(`after ${name}`)
  })

  it('random bodies, raw or gzip, in every accepted content type: only 202 or 4xx', async () => {
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 3000 }).map((bytes) => Buffer.from(bytes)),
      fc.string({ maxLength: 2000 }).map((text) => Buffer.from(text)),
      fc.json({ maxDepth: 6 }).map((json) => Buffer.from(json)),
      fc
        .array(fc.json({ maxDepth: 4 }), { minLength: 1, maxLength: 20 })
        .map((lines) => Buffer.from(lines.join('\n'))),
      fc
        .array(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 })), { maxLength: 20 })
        .map((objects) => Buffer.from(objects.map((o) => JSON.stringify(o)).join('\n'))),
    )
    const contentType = fc.constantFrom(
      JSON_TYPE,
      NDJSON,
      'application/jsonl',
      'text/plain',
      'application/octet-stream',
    )
    const statuses = new Map<number, number>()
    await fc.assert(
      fc.asyncProperty(body, contentType, fc.boolean(), async (bytes, type, gzip) => {
        const headers: Record<string, string> = { 'content-type': type }
        if (gzip) headers['content-encoding'] = 'gzip'
        const { status } = await post(gzip ? gzipSync(bytes) : bytes, headers)
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
        return status === 202 || (status >= 400 && status < 500)
      }),
      { numRuns: 400, seed: Number(process.env.FAULT_SEED ?? 20261122) },
    )
    // The generators reach both outcomes, so the property was tested on accepted and refused bodies alike.
    expect(statuses.get(202)).toBeGreaterThan(10)
    expect(statuses.get(400)).toBeGreaterThan(10)
    await sendGood('after-random')
  })

  it('stays healthy, and delivers every good entry once', async () => {
    const health = await getHealth(sidelog.url)
    expect(health.status).toBe('healthy')
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    const delivered = await fileIds(join(dir, 'data/logs'))
    const counts = new Map<string, number>()
    for (const id of delivered) counts.set(id, (counts.get(id) ?? 0) + 1)
    expect(goodIds.filter((id) => counts.get(id) !== 1)).toEqual([])
    expect(delivered.length).toBe(new Set(delivered).size)
  })
})
