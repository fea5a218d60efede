// `sidelog top`'s frame from two readings: rates, the buffer bar, spool, dead letters and errors; and the parser of
// the exposition text it reads them from.
import { describe, expect, it } from 'vitest'
import { parseExposition, sampleValue } from '../../src/top/exposition.js'
import { bar, type HealthDocument, reading, renderFrame, type SinkHealth } from '../../src/top/view.js'

const sinkHealth = (over: Partial<SinkHealth> = {}): SinkHealth => ({
  delivered_events: 0,
  retries: 0,
  dead_lettered_events: 0,
  dead_letter_failed_events: 0,
  buffered_events: 0,
  buffered_bytes: 0,
  healthy: true,
  last_error: null,
  ...over,
})

const health = (over: Partial<HealthDocument> = {}): HealthDocument => ({
  status: 'healthy',
  lines_processed: 0,
  uptime_s: 65,
  instance: 'abc123',
  sinks: { gcs: sinkHealth(), bigquery: sinkHealth() },
  refused_requests: {},
  ...over,
})

const METRICS = `# HELP sidelog_buffer_max_events BUFFER_MAX_EVENTS: past it, 429.
# TYPE sidelog_buffer_max_events gauge
sidelog_buffer_max_events{component_kind="sink",component_id="gcs"} 1000
sidelog_buffer_max_events{component_kind="sink",component_id="bigquery"} 1000
sidelog_buffer_max_byte_size{component_kind="sink",component_id="gcs"} 1048576
sidelog_buffer_max_byte_size{component_kind="sink",component_id="bigquery"} 1048576
sidelog_spool_byte_size 52428800
sidelog_spool_max_byte_size 209715200
`

describe('parseExposition', () => {
  it('reads names, labels (with escapes) and values, and skips comments', () => {
    const samples = parseExposition(
      `# HELP x help\nx{a="1",b="say \\"hi\\"\\n"} 2.5\ny 3\nz_bucket{le="+Inf"} 4\nnan_metric NaN\n`,
    )
    expect(samples).toEqual([
      { name: 'x', labels: { a: '1', b: 'say "hi"\n' }, value: 2.5 },
      { name: 'y', labels: {}, value: 3 },
      { name: 'z_bucket', labels: { le: '+Inf' }, value: 4 },
      { name: 'nan_metric', labels: {}, value: Number.NaN },
    ])
    expect(sampleValue(samples, 'x', { a: '1' })).toBe(2.5)
    expect(sampleValue(samples, 'x', { a: '2' })).toBeUndefined()
  })
})

describe('renderFrame', () => {
  const options = { url: 'http://127.0.0.1:9090', width: 200, intervalS: 1 }

  it('shows rates between two readings, the buffer fill as a bar, spool, dead letters and the last error', () => {
    const before = reading(
      1_000,
      health({
        lines_processed: 1000,
        sinks: {
          gcs: sinkHealth({ delivered_events: 900 }),
          bigquery: sinkHealth({ delivered_events: 500 }),
        },
      }),
      METRICS,
    )
    const now = reading(
      3_000,
      health({
        status: 'degraded',
        lines_processed: 5000,
        sinks: {
          gcs: sinkHealth({ delivered_events: 4900, buffered_events: 100, spooled_events: 0 }),
          bigquery: sinkHealth({
            delivered_events: 500,
            buffered_events: 250,
            buffered_bytes: 1024 * 1024 * 0.8,
            retries: 7,
            dead_lettered_events: 12,
            dead_letter_failed_events: 1,
            spooled_events: 3210,
            healthy: false,
            last_error: { message: 'HTTP 503', at: new Date(1_000).toISOString() },
          }),
        },
        refused_requests: { BUFFER_FULL: 4, INVALID_JSON: 1 },
      }),
      METRICS,
    )
    const lines = renderFrame(now, before, options)
    const text = lines.join('\n')
    expect(lines[0]).toBe('sidelog top  http://127.0.0.1:9090  instance abc123  DEGRADED  up 1m05s  every 1s')
    // 4,000 entries in 2 s in; gcs delivered 4,000 in 2 s; bigquery none.
    expect(text).toMatch(/^http\s+2,000\s+5,000\s+BUFFER_FULL 4, INVALID_JSON 1$/m)
    expect(text).toMatch(/^gcs\s+2,000\s+4,900\s+\[##\.{18}\]\s+10%\s+0\s+0\s+0\s+ok\s+-$/m)
    // bigquery: bytes are the fuller bound (80%), over events (25%).
    expect(text).toMatch(
      /^bigquery\s+0\s+500\s+\[#{16}\.{4}\]\s+80%\s+3,210\s+7\s+12 \+1 LOST\s+FAILING\s+HTTP 503 \(2s ago\)$/m,
    )
    expect(text).toMatch(/^SPOOL {2}\[#{5}\.{15}\] {2}25% {2}50\.0 MiB of 200\.0 MiB$/m)
  })

  it('shows no rate from a single reading, and cuts lines to the terminal width', () => {
    const lines = renderFrame(reading(0, health({ lines_processed: 10 }), METRICS), undefined, {
      ...options,
      width: 40,
    })
    expect(lines.every((line) => line.length <= 40)).toBe(true)
    expect(lines.join('\n')).toMatch(/^http\s+-\s+10\s+-$/m)
  })

  it('draws bars clamped to their width', () => {
    expect(bar(0)).toBe(`[${'.'.repeat(20)}]`)
    expect(bar(1.7)).toBe(`[${'#'.repeat(20)}]`)
    expect(bar(0.5, 4)).toBe('[##..]')
  })
})
