// POST /v1/logs through inject(): both encodings, gzip, the mapping, and every refusal as a google.rpc.Status.
import { PassThrough } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { type App, createApp } from '../../src/app.js'
import { isoFromNanos } from '../../src/sources/otlp/decode.js'
import {
  ExportLogsServiceRequest,
  ExportLogsServiceResponse,
  RpcStatus,
} from '../../src/sources/otlp/proto.js'
import { readJsonlTree, silentLogger, tempDir, testConfig } from '../helpers.js'

const TRACE = '5b8efff798038103d269b633813fc60c'
const SPAN = 'eee19b7ec3c1b174'

async function startApp(env: Record<string, string> = {}) {
  const config = testConfig(await tempDir(), { GOOGLE_CLOUD_PROJECT: 'my-project', ...env })
  const app = await createApp(config, { logger: silentLogger, stdout: new PassThrough(), instanceId: 'test' })
  return { app, config }
}

/** An OTLP/JSON request (ids in hex, 64-bit integers as strings), as the OTLP specification shows them. */
function jsonRequest(records: object[]) {
  return {
    resourceLogs: [
      {
        resource: {
          attributes: [
            { key: 'service.name', value: { stringValue: 'checkout' } },
            { key: 'service.version', value: { stringValue: '1.4.2' } },
          ],
        },
        scopeLogs: [{ scope: { name: 'my.library', version: '2.0.0' }, logRecords: records }],
      },
    ],
  }
}

const RECORD = {
  timeUnixNano: '1767225600123456789',
  observedTimeUnixNano: '1767225601000000000',
  severityNumber: 13,
  severityText: 'Warning',
  body: { stringValue: 'stock low' },
  attributes: [
    { key: 'sku', value: { stringValue: 'A-1' } },
    { key: 'count', value: { intValue: '3' } },
    { key: 'big', value: { intValue: '9007199254740993' } },
    { key: 'ratio', value: { doubleValue: 0.5 } },
    { key: 'ok', value: { boolValue: true } },
    { key: 'tags', value: { arrayValue: { values: [{ stringValue: 'a' }, { intValue: 2 }] } } },
    { key: 'service.version', value: { stringValue: 'overridden by the record' } },
  ],
  traceId: TRACE,
  spanId: SPAN,
  flags: 1,
}

/** The same request in protobuf: the generated code, with the ids as bytes. */
function protobufRequest(records: Record<string, unknown>[]): Buffer {
  const request = jsonRequest(
    records.map((r) => ({
      ...r,
      ...(typeof r.traceId === 'string' ? { traceId: Buffer.from(r.traceId, 'hex') } : {}),
      ...(typeof r.spanId === 'string' ? { spanId: Buffer.from(r.spanId, 'hex') } : {}),
    })),
  )
  return Buffer.from(ExportLogsServiceRequest.encode(ExportLogsServiceRequest.fromObject(request)).finish())
}

function postOtlp(app: App, payload: string | Buffer, type: string, headers: Record<string, string> = {}) {
  return app.server.inject({
    method: 'POST',
    url: '/v1/logs',
    payload,
    headers: { 'content-type': type, ...headers },
  })
}

const PROTO = 'application/x-protobuf'
const JSON_TYPE = 'application/json'

function decodeStatus(body: Buffer): { code: number; message: string } {
  return RpcStatus.toObject(RpcStatus.decode(body)) as { code: number; message: string }
}

describe('POST /v1/logs: accepted requests', () => {
  const expected = {
    message: 'stock low',
    severity: 'WARNING',
    severity_text: 'Warning',
    timestamp: '2026-01-01T00:00:00.123456Z',
    'service.name': 'checkout',
    'service.version': 'overridden by the record',
    'otel.scope.name': 'my.library',
    'otel.scope.version': '2.0.0',
    sku: 'A-1',
    count: 3,
    big: '9007199254740993',
    ratio: 0.5,
    ok: true,
    tags: ['a', 2],
    'logging.googleapis.com/trace': `projects/my-project/traces/${TRACE}`,
    'logging.googleapis.com/spanId': SPAN,
    'logging.googleapis.com/trace_sampled': true,
    service: 'unknown',
    revision: 'unknown',
    host: expect.any(String),
    processed_at: expect.any(String),
    event_id: expect.stringMatching(/^[0-9a-f]{20}-[0-9a-z]+$/),
  }

  it.each([
    ['protobuf', PROTO, () => protobufRequest([RECORD])],
    ['JSON', JSON_TYPE, () => JSON.stringify(jsonRequest([RECORD]))],
  ])('maps a %s LogRecord field by field, and answers 200 with an empty response', async (_, type, body) => {
    const { app, config } = await startApp()
    const res = await postOtlp(app, body(), type)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(type)
    if (type === PROTO) {
      expect(
        ExportLogsServiceResponse.toObject(ExportLogsServiceResponse.decode(res.rawPayload), {}),
      ).toEqual({})
    } else {
      expect(res.json()).toEqual({})
    }
    await app.close()
    const rows = await readJsonlTree(config.DATA_DIR)
    expect(rows).toEqual([expected])
  })

  it('takes gzip in both encodings, and keeps a structured body as an object', async () => {
    const { app, config } = await startApp()
    const structured = {
      body: {
        kvlistValue: {
          values: [
            { key: 'event', value: { stringValue: 'login' } },
            { key: 'user', value: { kvlistValue: { values: [{ key: 'id', value: { intValue: '7' } }] } } },
          ],
        },
      },
      severityNumber: 17,
    }
    const proto = await postOtlp(app, gzipSync(protobufRequest([structured])), PROTO, {
      'content-encoding': 'gzip',
    })
    const json = await postOtlp(
      app,
      gzipSync(JSON.stringify(jsonRequest([{ body: { stringValue: 'j' } }]))),
      JSON_TYPE,
      {
        'content-encoding': 'gzip',
      },
    )
    expect([proto.statusCode, json.statusCode]).toEqual([200, 200])
    await app.close()
    const rows = await readJsonlTree(config.DATA_DIR)
    const byMessage = (m: unknown) => rows.find((r) => JSON.stringify(r.message) === JSON.stringify(m))
    expect(byMessage({ event: 'login', user: { id: 7 } })).toMatchObject({ severity: 'ERROR' })
    // No time in the record: the time sidelog received it.
    expect(byMessage('j')?.timestamp).toBe(byMessage('j')?.processed_at)
    expect(byMessage('j')).not.toHaveProperty('logging.googleapis.com/trace')
  })

  it('answers 200 to a request with no records, and takes nothing', async () => {
    const { app } = await startApp()
    expect((await postOtlp(app, Buffer.alloc(0), PROTO)).statusCode).toBe(200)
    expect((await postOtlp(app, '{}', JSON_TYPE)).statusCode).toBe(200)
    expect(app.pipeline.acceptedEvents).toBe(0)
    await app.close()
  })

  it('turns nanoseconds into microsecond RFC 3339, the observed time standing in for a missing time', () => {
    expect(isoFromNanos('1767225600000000001')).toBe('2026-01-01T00:00:00.000000Z')
    expect(isoFromNanos('0')).toBeUndefined()
    expect(isoFromNanos(undefined)).toBeUndefined()
  })
})

describe('POST /v1/logs: refused requests keep nothing and answer a google.rpc.Status', () => {
  it('400 for bytes that are not an ExportLogsServiceRequest, as a protobuf Status', async () => {
    const { app } = await startApp()
    const res = await postOtlp(app, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]), PROTO)
    expect(res.statusCode).toBe(400)
    expect(res.headers['content-type']).toMatch(PROTO)
    const status = decodeStatus(res.rawPayload)
    expect(status.code).toBe(3)
    expect(status.message).toMatch(/^INVALID_OTLP: body is not a valid protobuf ExportLogsServiceRequest/)
    expect(app.pipeline.acceptedEvents).toBe(0)
    await app.close()
  })

  it.each([
    ['malformed JSON', '{"resourceLogs": [', /^INVALID_JSON: /],
    ['not an object', '[1,2]', /^INVALID_OTLP: body must be a JSON object/],
    ['a wrong type', '{"resourceLogs": {"a": 1}}', /^INVALID_OTLP: .*resourceLogs: array expected/],
    [
      'a trace id that is not hex',
      JSON.stringify(jsonRequest([{ ...RECORD, traceId: 'xyz' }])),
      /logRecords\[0\]\.traceId must be 32 hex digits/,
    ],
    ['a __proto__ key', '{"__proto__": {"x": 1}}', /^INVALID_JSON: .*prototype/i],
  ])('400 for %s, as a JSON Status', async (_, body, message) => {
    const { app } = await startApp()
    const res = await postOtlp(app, body, JSON_TYPE)
    expect(res.statusCode).toBe(400)
    expect(res.json()).toEqual({ code: 3, message: expect.stringMatching(message) })
    expect(app.pipeline.acceptedEvents).toBe(0)
    await app.close()
  })

  it('400 for a body that is not gzip, 413 past MAX_BODY_BYTES after decompression, 415 otherwise', async () => {
    const { app } = await startApp({ MAX_BODY_BYTES: '4KiB' })
    const notGzip = await postOtlp(app, 'plain', JSON_TYPE, { 'content-encoding': 'gzip' })
    expect([notGzip.statusCode, notGzip.json().message]).toEqual([
      400,
      expect.stringMatching(/^INVALID_GZIP/),
    ])
    const bomb = gzipSync(Buffer.alloc(1024 * 1024))
    const tooBig = await postOtlp(app, bomb, PROTO, { 'content-encoding': 'gzip' })
    expect(tooBig.statusCode).toBe(413)
    expect(decodeStatus(tooBig.rawPayload).message).toMatch(/^BODY_TOO_LARGE/)
    const encoding = await postOtlp(app, 'x', JSON_TYPE, { 'content-encoding': 'br' })
    expect(encoding.statusCode).toBe(415)
    const type = await postOtlp(app, 'x', 'text/plain')
    expect([type.statusCode, type.json().code]).toEqual([415, 3])
    await app.close()
  })

  it('413 for a record over MAX_ENTRY_BYTES, naming its index; the other records are not taken', async () => {
    const { app } = await startApp({ MAX_ENTRY_BYTES: '1KiB' })
    const big = { body: { stringValue: 'x'.repeat(2000) } }
    const res = await postOtlp(app, protobufRequest([{ body: { stringValue: 'ok' } }, big]), PROTO)
    expect(res.statusCode).toBe(413)
    expect(decodeStatus(res.rawPayload).message).toMatch(/^ENTRY_TOO_LARGE: .* \(index 1\)$/)
    expect(app.pipeline.acceptedEvents).toBe(0)
    await app.close()
  })

  it('429 with Retry-After when a buffer is full, 503 with Retry-After while draining', async () => {
    const { app } = await startApp({ BUFFER_MAX_EVENTS: '10', BATCH_SIZE: '10', FLUSH_INTERVAL: '3600' })
    const records = Array.from({ length: 9 }, (_, i) => ({ body: { stringValue: `r${i}` } }))
    expect((await postOtlp(app, protobufRequest(records), PROTO)).statusCode).toBe(200)
    const full = await postOtlp(app, protobufRequest(records), PROTO)
    expect(full.statusCode).toBe(429)
    expect(full.headers['retry-after']).toBe('1')
    expect(decodeStatus(full.rawPayload)).toMatchObject({
      code: 8,
      message: expect.stringMatching(/^BUFFER_FULL/),
    })
    app.pipeline.stopAccepting()
    const draining = await postOtlp(app, '{}', JSON_TYPE)
    expect(draining.statusCode).toBe(503)
    expect(draining.headers['retry-after']).toBe('1')
    expect(draining.json()).toMatchObject({ code: 14 })
    await app.close()
  })

  it('is off with OTLP_ENABLED=false', async () => {
    const { app } = await startApp({ OTLP_ENABLED: 'false' })
    expect((await postOtlp(app, '{}', JSON_TYPE)).statusCode).toBe(404)
    await app.close()
  })
})
