// Per-sink batching: each destination gets batches of the size it handles best (files of a megabyte, Cloud Storage
// objects of megabytes or every 30 s, BigQuery requests of 500 rows), each overridable per sink. Precedence, per
// value: the sink's own setting (FILE_BATCH_SIZE, GCS_FLUSH_INTERVAL, ...), then the general one (BATCH_SIZE,
// BATCH_BYTES, FLUSH_INTERVAL) if set, then the built-in default below, which is shrunk to fit the buffers.
import { type TSchema, Type } from '@sinclair/typebox'
import type { Config, SinkKind } from '../config.js'
import type { BatcherOptions } from './batcher.js'

export type BatchLimits = Pick<BatcherOptions, 'maxBatchEvents' | 'maxBatchBytes' | 'flushIntervalMs'>

interface Defaults {
  readonly events: number
  readonly bytes: number
  readonly seconds: number
}

const MiB = 1024 ** 2

/**
 * Built-in defaults, chosen per destination (README, Performance and cost):
 * - file: a file, an fsync and a rename per batch; a megabyte makes that a small share of the work, and is few
 *   enough bytes that four writes in flight stay well inside the memory budget.
 * - stdout: one write per batch; a second keeps it prompt in Cloud Logging.
 * - gcs: Cloud Storage bills per object and analytics tools read megabyte objects well: 4 MiB, or every 30 s when
 *   traffic is low (2,880 objects a day per instance at a trickle).
 * - bigquery stream: insertAll takes 500 rows per request; BigQuery load mode stages objects, like gcs.
 */
const DEFAULTS: Record<SinkKind | 'bigquery-load', Defaults> = {
  file: { events: 10_000, bytes: 1 * MiB, seconds: 5 },
  stdout: { events: 1_000, bytes: 1 * MiB, seconds: 1 },
  gcs: { events: 100_000, bytes: 4 * MiB, seconds: 30 },
  bigquery: { events: 500, bytes: 5 * MiB, seconds: 5 },
  'bigquery-load': { events: 100_000, bytes: 4 * MiB, seconds: 30 },
}

/** The prefix of each sink's own settings. */
const PREFIX: Record<SinkKind, string> = { file: 'FILE', stdout: 'STDOUT', gcs: 'GCS', bigquery: 'BQ' }

/** A built-in default holds at most this share of a sink's buffer, so batches fill while others are written. */
const DEFAULT_SHARE_OF_BUFFER = 1 / 4

/** A setting that may be left unset: empty decodes to undefined, anything else must parse and be in range. */
function optional(pattern: string, parse: (text: string) => number, min: number, max: number) {
  return (description: string, accepts: string) =>
    Type.Transform(Type.String({ default: '', pattern: `^\\s*(${pattern})?\\s*$`, description, accepts }))
      .Decode((text): number | undefined => {
        if (text.trim() === '') return undefined
        const n = parse(text)
        if (!(n >= min && n <= max)) throw new Error('out of range')
        return n
      })
      .Encode((n) => (n === undefined ? '' : String(n)))
}

const MAX_EVENTS = 1_000_000
export const optionalEvents = optional('\\d+', Number, 1, MAX_EVENTS)
export const optionalSeconds = optional('\\d+(\\.\\d+)?', Number, Number.MIN_VALUE, 3600)
const EVENTS_ACCEPTS = `empty, or a whole number from 1 to ${MAX_EVENTS}`
const SECONDS_ACCEPTS =
  'empty, or a number of seconds greater than 0 and at most 3600 (fractions allowed, e.g. 0.5)'
const BYTES_ACCEPTS =
  'empty, or a size in bytes from 1KiB to 256MiB: a whole number or one with a unit (KiB, MiB, GiB, KB, MB, GB), e.g. 4MiB'

/** The three general settings: unset means each sink's own default. */
export function generalBatchingSettings(parseBytes: (text: string) => number) {
  const optionalBytes = optional('\\d+(\\.\\d+)?\\s*([KMG]i?B|B)?', parseBytes, 1024, 256 * MiB)
  return {
    events: (description: string) => optionalEvents(description, EVENTS_ACCEPTS),
    bytes: (description: string) => optionalBytes(description, BYTES_ACCEPTS),
    seconds: (description: string) => optionalSeconds(description, SECONDS_ACCEPTS),
  }
}

const describe = (kind: SinkKind, what: string, general: string, fallback: string) =>
  `${what} for the ${kind} sink; unset: ${general} if that is set, else ${fallback}.`

/** <SINK>_BATCH_SIZE, <SINK>_BATCH_BYTES and <SINK>_FLUSH_INTERVAL for every sink, composed into config's schema. */
export function batchingSettings(parseBytes: (text: string) => number) {
  const general = generalBatchingSettings(parseBytes)
  const settings: Record<string, TSchema> = {}
  for (const kind of Object.keys(PREFIX) as SinkKind[]) {
    const d = DEFAULTS[kind]
    const load = kind === 'bigquery' ? ` (load mode: ${DEFAULTS['bigquery-load'].events})` : ''
    const loadBytes = kind === 'bigquery' ? ` (load mode: ${DEFAULTS['bigquery-load'].bytes / MiB}MiB)` : ''
    const loadSeconds = kind === 'bigquery' ? ` (load mode: ${DEFAULTS['bigquery-load'].seconds})` : ''
    settings[`${PREFIX[kind]}_BATCH_SIZE`] = general.events(
      describe(kind, 'Entries per batch', 'BATCH_SIZE', `${d.events}${load}`),
    )
    settings[`${PREFIX[kind]}_BATCH_BYTES`] = general.bytes(
      describe(kind, 'Bytes of JSONL per batch', 'BATCH_BYTES', `${d.bytes / MiB}MiB${loadBytes}`),
    )
    settings[`${PREFIX[kind]}_FLUSH_INTERVAL`] = general.seconds(
      describe(
        kind,
        'Seconds after its first entry before a batch flushes',
        'FLUSH_INTERVAL',
        `${d.seconds}${loadSeconds}`,
      ),
    )
  }
  return settings as {
    [K in `${'FILE' | 'STDOUT' | 'GCS' | 'BQ'}_${'BATCH_SIZE' | 'BATCH_BYTES' | 'FLUSH_INTERVAL'}`]: ReturnType<
      typeof general.events
    >
  }
}

type BatchingConfig = Pick<
  Config,
  | 'BATCH_SIZE'
  | 'BATCH_BYTES'
  | 'FLUSH_INTERVAL'
  | 'BUFFER_MAX_EVENTS'
  | 'BUFFER_MAX_BYTES'
  | 'MAX_ENTRY_BYTES'
  | 'BQ_MODE'
>

/** A sink's own value of one of the three settings, if set. */
function own(
  config: Config | BatchingConfig,
  kind: SinkKind,
  name: 'BATCH_SIZE' | 'BATCH_BYTES' | 'FLUSH_INTERVAL',
) {
  return (config as Record<string, unknown>)[`${PREFIX[kind]}_${name}`] as number | undefined
}

/** The batch limits of one sink: its own setting, else the general one, else its default shrunk to fit the buffer. */
export function batchingFor(kind: SinkKind, config: BatchingConfig): BatchLimits {
  const d = DEFAULTS[kind === 'bigquery' && config.BQ_MODE === 'load' ? 'bigquery-load' : kind]
  const defaultEvents = Math.max(
    1,
    Math.min(d.events, Math.floor(config.BUFFER_MAX_EVENTS * DEFAULT_SHARE_OF_BUFFER)),
  )
  const defaultBytes = Math.max(
    Math.min(config.MAX_ENTRY_BYTES, config.BUFFER_MAX_BYTES),
    Math.min(d.bytes, Math.floor(config.BUFFER_MAX_BYTES * DEFAULT_SHARE_OF_BUFFER)),
  )
  return {
    maxBatchEvents: own(config, kind, 'BATCH_SIZE') ?? config.BATCH_SIZE ?? defaultEvents,
    maxBatchBytes: own(config, kind, 'BATCH_BYTES') ?? config.BATCH_BYTES ?? defaultBytes,
    flushIntervalMs: (own(config, kind, 'FLUSH_INTERVAL') ?? config.FLUSH_INTERVAL ?? d.seconds) * 1000,
  }
}

/** What the settings of a configured sink must respect: an entry fits in a batch, a batch in the buffer. */
export function checkBatchingSettings(config: Config): string[] {
  const problems: string[] = []
  for (const kind of config.SINKS) {
    const limits = batchingFor(kind, config)
    const name = (setting: 'BATCH_SIZE' | 'BATCH_BYTES') =>
      own(config, kind, setting) !== undefined ? `${PREFIX[kind]}_${setting}` : setting
    // Built-in defaults are shrunk to fit; only a value someone set can be wrong.
    const bytesSet = own(config, kind, 'BATCH_BYTES') ?? config.BATCH_BYTES
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
    const eventsSet = own(config, kind, 'BATCH_SIZE') ?? config.BATCH_SIZE
    if (eventsSet !== undefined && limits.maxBatchEvents > config.BUFFER_MAX_EVENTS) {
      problems.push(
        `${name('BATCH_SIZE')} (${limits.maxBatchEvents}) must not exceed BUFFER_MAX_EVENTS (${config.BUFFER_MAX_EVENTS}): one batch must fit in the buffer`,
      )
    }
  }
  return [...new Set(problems)]
}
