// One frame of `sidelog top`, from two readings of /health and /metrics: rates in and out, each sink's buffer fill as
// a bar, spool lag, retries, dead letters and last error. Pure: the CLI polls and draws, tests call it directly.
import { parseExposition, type Sample, sampleValue } from './exposition.js'

export interface SinkHealth {
  readonly delivered_events: number
  readonly retries: number
  readonly dead_lettered_events: number
  readonly dead_letter_failed_events: number
  readonly buffered_events: number
  readonly buffered_bytes: number
  readonly spooled_events?: number
  readonly healthy: boolean
  readonly last_error: { message: string; at: string } | null
}

export interface HealthDocument {
  readonly status: string
  readonly lines_processed: number
  readonly uptime_s: number
  readonly instance: string
  readonly sinks: Readonly<Record<string, SinkHealth>>
  readonly refused_requests: Readonly<Record<string, number>>
}

/** One poll of a running sidelog. */
export interface Reading {
  /** When it was taken, in milliseconds. */
  readonly at: number
  readonly health: HealthDocument
  readonly metrics: readonly Sample[]
}

export function reading(at: number, health: HealthDocument, metricsText: string): Reading {
  return { at, health, metrics: parseExposition(metricsText) }
}

export interface FrameOptions {
  readonly url: string
  /** Columns available; every line is cut to fit. */
  readonly width: number
  readonly intervalS: number
  /** Shown in the title line: how to quit, in the interactive view. */
  readonly hint?: string
}

const BAR_WIDTH = 20

const count = (n: number) => Math.round(n).toLocaleString('en-US')

function bytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${n} B`
}

function duration(s: number): string {
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = Math.floor(s % 60)
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`
  return `${sec}s`
}

/** `[#####...............]`: `fraction` of the bar filled, clamped to [0, 1]. */
export function bar(fraction: number, width = BAR_WIDTH): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width)
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`
}

/** Per second between two readings; '-' without an earlier one. */
function rate(now: number, before: number | undefined, seconds: number): string {
  if (before === undefined || seconds <= 0) return '-'
  return count(Math.max(0, now - before) / seconds)
}

function table(rows: string[][], alignRight: ReadonlySet<number>): string[] {
  const widths: number[] = []
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length)
    })
  }
  return rows.map((row) =>
    row
      .map((cell, i) => {
        // The last column is free text (an error message): never padded.
        if (i === row.length - 1) return cell
        const w = widths[i] ?? 0
        return alignRight.has(i) ? cell.padStart(w) : cell.padEnd(w)
      })
      .join('  ')
      .trimEnd(),
  )
}

function ago(at: string, now: number): string {
  const s = Math.max(0, (now - Date.parse(at)) / 1000)
  return `${duration(s)} ago`
}

/** The frame's lines. `previous` is the reading before `current` (the rates need two). */
export function renderFrame(
  current: Reading,
  previous: Reading | undefined,
  options: FrameOptions,
): string[] {
  const { health, metrics } = current
  const seconds = previous ? (current.at - previous.at) / 1000 : 0
  const lines: string[] = []
  lines.push(
    `sidelog top  ${options.url}  instance ${health.instance}  ${health.status.toUpperCase()}  up ${duration(health.uptime_s)}  every ${options.intervalS}s${options.hint ? `  ${options.hint}` : ''}`,
    '',
  )

  const refused =
    Object.entries(health.refused_requests)
      .sort(([, a], [, b]) => b - a)
      .map(([code, n]) => `${code} ${count(n)}`)
      .join(', ') || '-'
  lines.push(
    ...table(
      [
        ['INPUT', 'in/s', 'accepted', 'refused requests'],
        [
          'http',
          rate(health.lines_processed, previous?.health.lines_processed, seconds),
          count(health.lines_processed),
          refused,
        ],
      ],
      new Set([1, 2]),
    ),
    '',
  )

  const rows: string[][] = [
    [
      'SINK',
      'out/s',
      'delivered',
      'buffer',
      'fill',
      'spool lag',
      'retries',
      'dead letters',
      'state',
      'last error',
    ],
  ]
  for (const [name, sink] of Object.entries(health.sinks)) {
    const labels = { component_id: name }
    const maxEvents = sampleValue(metrics, 'sidelog_buffer_max_events', labels)
    const maxBytes = sampleValue(metrics, 'sidelog_buffer_max_byte_size', labels)
    const fill = Math.max(
      maxEvents ? sink.buffered_events / maxEvents : 0,
      maxBytes ? sink.buffered_bytes / maxBytes : 0,
    )
    const lost = sink.dead_letter_failed_events > 0 ? ` +${count(sink.dead_letter_failed_events)} LOST` : ''
    const error = sink.last_error
      ? `${sink.last_error.message} (${ago(sink.last_error.at, current.at)})`
      : '-'
    rows.push([
      name,
      rate(sink.delivered_events, previous?.health.sinks[name]?.delivered_events, seconds),
      count(sink.delivered_events),
      maxEvents === undefined && maxBytes === undefined ? '' : bar(fill),
      maxEvents === undefined && maxBytes === undefined ? '' : `${Math.round(fill * 100)}%`,
      sink.spooled_events === undefined ? '-' : count(sink.spooled_events),
      count(sink.retries),
      `${count(sink.dead_lettered_events)}${lost}`,
      sink.healthy ? 'ok' : 'FAILING',
      error,
    ])
  }
  lines.push(...table(rows, new Set([1, 2, 4, 5, 6, 7])))

  const spoolBytes = sampleValue(metrics, 'sidelog_spool_byte_size')
  const spoolMax = sampleValue(metrics, 'sidelog_spool_max_byte_size')
  if (spoolBytes !== undefined && spoolMax) {
    lines.push(
      '',
      `SPOOL  ${bar(spoolBytes / spoolMax)}  ${Math.round((spoolBytes / spoolMax) * 100)}%  ${bytes(spoolBytes)} of ${bytes(spoolMax)}`,
    )
  }
  return lines.map((line) => (line.length > options.width ? line.slice(0, options.width) : line))
}
