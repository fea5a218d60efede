// The real process receiving OTLP from the OpenTelemetry JS SDK's own exporters, JSON (gzip) and protobuf: every
// record is delivered once to the file sink and to the gcs fake, mapped field by field; malformed bodies get 400.
import { join } from 'node:path'
import { ROOT_CONTEXT, trace } from '@opentelemetry/api'
import { SeverityNumber } from '@opentelemetry/api-logs'
import { OTLPLogExporter as JsonExporter } from '@opentelemetry/exporter-logs-otlp-http'
import { OTLPLogExporter as ProtobufExporter } from '@opentelemetry/exporter-logs-otlp-proto'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BatchLogRecordProcessor, LoggerProvider, type LogRecordExporter } from '@opentelemetry/sdk-logs'
import { afterEach, describe, expect, it } from 'vitest'
import { RpcStatus } from '../../src/sources/otlp/proto.js'
import { FakeGcsServer } from '../fakes/gcs-server.js'
import { listFiles, readJsonlTree, tempDir } from '../helpers.js'
import { spawnSidelog } from './spawn.js'

const PER_EXPORTER = 1500
const BASE_MS = Date.UTC(2026, 0, 2, 3, 4, 5)

let fake: FakeGcsServer | undefined
afterEach(async () => {
  await fake?.stop()
})

const traceIdOf = (exporter: string, i: number) =>
  `${exporter === 'json' ? 'a' : 'b'}${String(i).padStart(31, '0')}`
const spanIdOf = (i: number) => `c${String(i).padStart(15, '0')}`

/** Emits PER_EXPORTER records through one SDK pipeline and waits until the exporter has sent them all. */
async function emitAll(name: string, exporter: LogRecordExporter): Promise<void> {
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ 'service.name': `shop-${name}`, 'service.version': '3.1.0' }),
    processors: [
      new BatchLogRecordProcessor({
        exporter,
        maxExportBatchSize: 200,
        maxQueueSize: PER_EXPORTER,
        scheduledDelayMillis: 20,
      }),
    ],
  })
  const logger = provider.getLogger('e2e.scope', '0.9.1')
  for (let i = 0; i < PER_EXPORTER; i++) {
    const traced = i % 2 === 0
    logger.emit({
      timestamp: new Date(BASE_MS + i),
      severityNumber: i % 3 === 0 ? SeverityNumber.ERROR : SeverityNumber.INFO,
      severityText: i % 3 === 0 ? 'ERROR' : 'INFO',
      body: i % 5 === 0 ? { event: 'structured', n: i } : `record ${i}`,
      attributes: {
        tag: `${name}-${i}`,
        'http.status_code': 200 + (i % 3),
        ratio: 0.25,
        cached: i % 2 === 1,
      },
      ...(traced
        ? {
            context: trace.setSpanContext(ROOT_CONTEXT, {
              traceId: traceIdOf(name, i),
              spanId: spanIdOf(i),
              traceFlags: 1,
            }),
          }
        : {}),
    })
  }
  await provider.forceFlush()
  await provider.shutdown()
}

function expectMapped(row: Record<string, unknown>, name: string) {
  const i = Number(String(row.tag).split('-')[1])
  expect(row).toMatchObject({
    message: i % 5 === 0 ? { event: 'structured', n: i } : `record ${i}`,
    severity: i % 3 === 0 ? 'ERROR' : 'INFO',
    severity_text: i % 3 === 0 ? 'ERROR' : 'INFO',
    timestamp: new Date(BASE_MS + i).toISOString().replace('Z', '000Z'),
    'service.name': `shop-${name}`,
    'service.version': '3.1.0',
    'otel.scope.name': 'e2e.scope',
    'otel.scope.version': '0.9.1',
    'http.status_code': 200 + (i % 3),
    ratio: 0.25,
    cached: i % 2 === 1,
    service: 'e2e-otlp',
    event_id: expect.stringMatching(/^[0-9a-f]{20}-[0-9a-z]+$/),
  })
  if (i % 2 === 0) {
    expect(row['logging.googleapis.com/trace']).toBe(`projects/e2e-project/traces/${traceIdOf(name, i)}`)
    expect(row['logging.googleapis.com/spanId']).toBe(spanIdOf(i))
    expect(row['logging.googleapis.com/trace_sampled']).toBe(true)
  } else {
    expect(row).not.toHaveProperty('logging.googleapis.com/trace')
  }
}

describe('sidelog process with OTLP/HTTP from the OpenTelemetry SDK', () => {
  it('delivers every record of the JSON and protobuf exporters once to the file sink and the bucket', async () => {
    fake = new FakeGcsServer()
    await fake.start()
    fake.buckets.add('otlp-logs')
    const dir = await tempDir()
    const sidelog = await spawnSidelog({
      SINKS: 'file,gcs',
      LOG_BUCKET: 'otlp-logs',
      GCS_ENDPOINT: fake.url,
      METADATA_SERVER_DETECTION: 'none',
      GOOGLE_CLOUD_PROJECT: 'e2e-project',
      K_SERVICE: 'e2e-otlp',
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
    })
    const url = `${sidelog.url}/v1/logs`
    await Promise.all([
      emitAll('json', new JsonExporter({ url, compression: 'gzip' as never })),
      emitAll('proto', new ProtobufExporter({ url })),
    ])

    // Malformed bodies to the real process: 400 with a google.rpc.Status, never a 5xx.
    const badProto = await fetch(url, {
      method: 'POST',
      body: Buffer.from([0x0a, 0x05, 0x01]),
      headers: { 'content-type': 'application/x-protobuf' },
    })
    expect(badProto.status).toBe(400)
    expect(RpcStatus.toObject(RpcStatus.decode(Buffer.from(await badProto.arrayBuffer())))).toMatchObject({
      code: 3,
      message: expect.stringMatching(/^INVALID_OTLP/),
    })
    const badJson = await fetch(url, {
      method: 'POST',
      body: '{"resourceLogs":[{"scopeLogs":',
      headers: { 'content-type': 'application/json' },
    })
    expect(badJson.status).toBe(400)
    expect(await badJson.json()).toMatchObject({ code: 3, message: expect.stringMatching(/^INVALID_JSON/) })

    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })

    const total = 2 * PER_EXPORTER
    const files = await readJsonlTree(join(dir, 'data'))
    const objects = fake.list('otlp-logs').flatMap((o) =>
      o.data
        .toString()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    )
    for (const rows of [files, objects]) {
      expect(rows).toHaveLength(total)
      const tags = new Set(rows.map((r) => r.tag))
      expect(tags.size).toBe(total)
      for (const name of ['json', 'proto']) {
        for (let i = 0; i < PER_EXPORTER; i++) expect(tags.has(`${name}-${i}`)).toBe(true)
      }
      for (const row of rows) expectMapped(row, String(row.tag).split('-')[0] as string)
    }
    // Each entry was enriched once: the file sink and the bucket hold the same event ids.
    expect(new Set(objects.map((r) => r.event_id))).toEqual(new Set(files.map((r) => r.event_id)))
    expect(await listFiles(join(dir, 'dead-letter'))).toEqual([])
    const stopped = sidelog.logs.find((l) => String(l.msg).startsWith('stopped'))
    expect(stopped).toMatchObject({ delivered: 2 * total, dead_lettered: 0 })
  })
})
