// Per-sink batching: each destination gets batches of the size it handles best (files of a megabyte, Cloud Storage
// objects of megabytes or every 30 s, BigQuery requests of 500 rows), each overridable per sink. Precedence, per
// value: the sink's own setting (FILE_BATCH_SIZE, GCS_FLUSH_INTERVAL, ...), then the general one (BATCH_SIZE,
// BATCH_BYTES, FLUSH_INTERVAL) if set, then the sink's built-in default (its module's `batching`), shrunk to fit
// the buffers.
import { optionalBytes, optionalEvents, optionalSeconds } from '../settings/fields.js'
import type { BatchDefaults, SinkModule } from '../sinks/sink.js'
import type { BatcherOptions } from './batcher.js'

export type BatchLimits = Pick<BatcherOptions, 'maxBatchEvents' | 'maxBatchBytes' | 'flushIntervalMs'>

const MiB = 1024 ** 2

/** A built-in default holds at most this share of a sink's buffer, so batches fill while others are written. */
const DEFAULT_SHARE_OF_BUFFER = 1 / 4

type Setting = 'BATCH_SIZE' | 'BATCH_BYTES' | 'FLUSH_INTERVAL'

/** The three general settings: unset means each sink's own default. */
export const generalBatchingSettings = {
  events: optionalEvents,
  bytes: optionalBytes,
  seconds: optionalSeconds,
}

function describeDefaults(defaults: BatchDefaults, others: Record<string, BatchDefaults>) {
  const each = (pick: (d: BatchDefaults) => string) =>
    `${pick(defaults)}${Object.entries(others)
      .map(([when, d]) => ` (${when}: ${pick(d)})`)
      .join('')}`
  return {
    events: each((d) => String(d.events)),
    bytes: each((d) => (d.bytes % MiB === 0 ? `${d.bytes / MiB}MiB` : String(d.bytes))),
    seconds: each((d) => String(d.seconds)),
  }
}

/**
 * A sink's <PREFIX>_BATCH_SIZE, <PREFIX>_BATCH_BYTES and <PREFIX>_FLUSH_INTERVAL, for its module's settings.
 * `others` names the defaults of its other modes, for the description (bigquery: `{ 'load mode': ... }`).
 */
export function batchSettings<const P extends string>(
  prefix: P,
  kind: string,
  defaults: BatchDefaults,
  others: Record<string, BatchDefaults> = {},
) {
  const d = describeDefaults(defaults, others)
  const describe = (what: string, general: Setting, fallback: string) =>
    `${what} for the ${kind} sink; unset: ${general} if that is set, else ${fallback}.`
  return {
    [`${prefix}_BATCH_SIZE`]: optionalEvents(describe('Entries per batch', 'BATCH_SIZE', d.events)),
    [`${prefix}_BATCH_BYTES`]: optionalBytes(describe('Bytes of JSONL per batch', 'BATCH_BYTES', d.bytes)),
    [`${prefix}_FLUSH_INTERVAL`]: optionalSeconds(
      describe('Seconds after its first entry before a batch flushes', 'FLUSH_INTERVAL', d.seconds),
    ),
  } as { [K in `${P}_${Setting}`]: ReturnType<typeof optionalEvents> }
}

/** The settings batching reads besides a sink's own. */
export interface BatchingConfig {
  readonly BATCH_SIZE: number | undefined
  readonly BATCH_BYTES: number | undefined
  readonly FLUSH_INTERVAL: number | undefined
  readonly BUFFER_MAX_EVENTS: number
  readonly BUFFER_MAX_BYTES: number
  readonly MAX_ENTRY_BYTES: number
}

/** A sink's own value of one of the three settings, if set. */
function own(module: SinkModule, settings: object, name: Setting): number | undefined {
  return (settings as Record<string, number | undefined>)[`${module.batchPrefix}_${name}`]
}

/**
 * The batch limits of one sink: its own setting, else the general one, else its default shrunk to fit the buffer.
 * `settings` holds the sink's own settings (the whole configuration will do).
 */
export function batchingFor(module: SinkModule, settings: object, config: BatchingConfig): BatchLimits {
  const d = module.batching(settings as never)
  const defaultEvents = Math.max(
    1,
    Math.min(d.events, Math.floor(config.BUFFER_MAX_EVENTS * DEFAULT_SHARE_OF_BUFFER)),
  )
  const defaultBytes = Math.max(
    Math.min(config.MAX_ENTRY_BYTES, config.BUFFER_MAX_BYTES),
    Math.min(d.bytes, Math.floor(config.BUFFER_MAX_BYTES * DEFAULT_SHARE_OF_BUFFER)),
  )
  return {
    maxBatchEvents: own(module, settings, 'BATCH_SIZE') ?? config.BATCH_SIZE ?? defaultEvents,
    maxBatchBytes: own(module, settings, 'BATCH_BYTES') ?? config.BATCH_BYTES ?? defaultBytes,
    flushIntervalMs: (own(module, settings, 'FLUSH_INTERVAL') ?? config.FLUSH_INTERVAL ?? d.seconds) * 1000,
  }
}

/** What the settings of a configured sink must respect: an entry fits in a batch, a batch in the buffer. */
export function checkBatchingSettings(
  module: SinkModule,
  settings: object,
  config: BatchingConfig,
): string[] {
  const problems: string[] = []
  const limits = batchingFor(module, settings, config)
  const name = (setting: 'BATCH_SIZE' | 'BATCH_BYTES') =>
    own(module, settings, setting) !== undefined ? `${module.batchPrefix}_${setting}` : setting
  // Built-in defaults are shrunk to fit; only a value someone set can be wrong.
  const bytesSet = own(module, settings, 'BATCH_BYTES') ?? config.BATCH_BYTES
  if (bytesSet !== undefined && config.MAX_ENTRY_BYTES > limits.maxBatchBytes) {
    problems.push(
      `MAX_ENTRY_BYTES (${config.MAX_ENTRY_BYTES}) must not exceed ${name('BATCH_BYTES')} (${limits.maxBatchBytes}): one entry must fit in a batch`,
    )
  }
  if (bytesSet !== undefined && limits.maxBatchBytes > config.BUFFER_MAX_BYTES) {
    problems.push(
      `${name('BATCH_BYTES')} (${limits.maxBatchBytes}) must not exceed BUFFER_MAX_BYTES (${config.BUFFER_MAX_BYTES}): one batch must fit in the buffer`,
    )
  }
  const eventsSet = own(module, settings, 'BATCH_SIZE') ?? config.BATCH_SIZE
  if (eventsSet !== undefined && limits.maxBatchEvents > config.BUFFER_MAX_EVENTS) {
    problems.push(
      `${name('BATCH_SIZE')} (${limits.maxBatchEvents}) must not exceed BUFFER_MAX_EVENTS (${config.BUFFER_MAX_EVENTS}): one batch must fit in the buffer`,
    )
  }
  return problems
}
