// Every setting in one schema (name, default, description, what it accepts), validated once at start-up and frozen.
// The core settings are here; the Google ones, each sink's and each source's come from their own folders through
// the registries, so this file composes them, checks how they relate, and prints --help and the README's table.
import { type StaticDecode, type TSchema, Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { ConfigError } from './errors.js'
import { checkGoogleSettings, googleSettings } from './google/settings.js'
import { DEFAULT_HOST, DEFAULT_PORT } from './listen-address.js'
import { generalBatchingSettings as general } from './pipeline/batching.js'
import { bytes, integer, parseBytes, seconds, text } from './settings/fields.js'
import { checkSinkSettings, SINK_KINDS, type SinkKind, sinkModules, sinkSettings } from './sinks/index.js'
import { checkSourceSettings, sourceModules, sourceSettings } from './sources/index.js'

export { parseBytes, SINK_KINDS, type SinkKind }

/** Where dead letters can go (delivery/dead-letters.ts builds each). */
export const DEAD_LETTER_KINDS = ['dir', 'gcs', 'stderr'] as const
export type DeadLetterKind = (typeof DEAD_LETTER_KINDS)[number]

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

const SINKS_ACCEPTS = `a comma-separated list of: ${SINK_KINDS.join(', ')}`
const LABEL_PATTERN =
  '^\\s*([A-Za-z_][A-Za-z0-9_.-]*=[^,=]*)?(\\s*,\\s*[A-Za-z_][A-Za-z0-9_.-]*=[^,=]*)*\\s*$'

/** The settings of sidelog itself: listening, buffers, delivery, the spool, shutdown, its own logs. */
const coreSettings = {
  SIDELOG_HOST: text(
    DEFAULT_HOST,
    'Address to listen on. The default lets only processes in the same network namespace (the app beside it) reach sidelog.',
  ),
  SIDELOG_PORT: integer(
    DEFAULT_PORT,
    0,
    65535,
    'Port to listen on (0 picks a free one). PORT is not read: it belongs to the app.',
  ),
  SINKS: Type.Transform(
    Type.String({
      default: 'file',
      pattern: `^\\s*(${SINK_KINDS.join('|')})\\s*(,\\s*(${SINK_KINDS.join('|')})\\s*)*$`,
      description:
        'Where batches are delivered. Each sink has its own buffer, so a slow sink cannot hold back a fast one.',
      accepts: SINKS_ACCEPTS,
    }),
  )
    .Decode((list) => [...new Set(list.split(',').map((s) => s.trim() as SinkKind))])
    .Encode((kinds) => kinds.join(',')),
  DATA_DIR: text(
    './data',
    'Root of the file sink: batches land as <DATA_DIR>/logs/YYYY/MM/DD/HHMMSS-<instance>-<seq>.jsonl.',
  ),
  DEAD_LETTER_DIR: text(
    './data/dead-letter',
    'Where entries that cannot be delivered are kept, as JSONL with the reason: <DEAD_LETTER_DIR>/<sink>/YYYY/MM/DD/...',
  ),
  DEAD_LETTER: Type.Transform(
    Type.String({
      default: 'dir',
      pattern: `^\\s*(${DEAD_LETTER_KINDS.join('|')})\\s*(,\\s*(${DEAD_LETTER_KINDS.join('|')})\\s*)*$`,
      description:
        "Where entries that cannot be delivered go, tried in order until one takes them: dir (DEAD_LETTER_DIR, on this instance's disk), gcs (objects under DEAD_LETTER_GCS_PREFIX in LOG_BUCKET), stderr (one JSON line per entry, marked sidelog=dead-letter, kept by the platform's log collection). gcs and stderr outlive the instance; a list ending in gcs ends in stderr.",
      accepts: `a comma-separated list of: ${DEAD_LETTER_KINDS.join(', ')}`,
    }),
  )
    .Decode((list) => [...new Set(list.split(',').map((s) => s.trim() as DeadLetterKind))])
    .Encode((kinds) => kinds.join(',')),
  DEAD_LETTER_GCS_PREFIX: Type.String({
    default: 'dead-letter/',
    pattern: '^[^/].*/$',
    description:
      'With DEAD_LETTER=gcs: prefix of the dead-letter objects in LOG_BUCKET (<prefix><sink>/YYYY/MM/DD/...jsonl, never overwritten).',
    accepts: 'a prefix ending in / that does not start with /, e.g. dead-letter/',
  }),
  BATCH_SIZE: general.events(
    'Flush a batch when it holds this many entries, for every sink without its own <SINK>_BATCH_SIZE; unset: each sink its own default (file 10000, stdout 1000, gcs 100000, bigquery 500).',
  ),
  BATCH_BYTES: general.bytes(
    'Flush a batch before it grows past this many bytes of JSONL, for every sink without its own <SINK>_BATCH_BYTES; unset: each sink its own default (file and stdout 1MiB, gcs 4MiB, bigquery 5MiB).',
  ),
  FLUSH_INTERVAL: general.seconds(
    'Flush a batch this many seconds after its first entry arrived, for every sink without its own <SINK>_FLUSH_INTERVAL; unset: each sink its own default (file and bigquery 5, stdout 1, gcs 30).',
  ),
  BUFFER_MAX_EVENTS: integer(
    50_000,
    1,
    10_000_000,
    'Entries each sink may hold (open, queued and in-flight batches); past it requests get 429.',
  ),
  BUFFER_MAX_BYTES: bytes(
    '32MiB',
    1024,
    16 * 1024 ** 3,
    'Bytes each sink may hold; past it requests get 429.',
  ),
  MAX_BODY_BYTES: bytes(
    '5MiB',
    1024,
    1024 ** 3,
    'Largest request body, measured after gzip decompression; larger bodies get 413.',
  ),
  MAX_ENTRY_BYTES: bytes(
    '256KiB',
    64,
    64 * 1024 ** 2,
    'Largest single entry as JSON; a larger one gets 413.',
  ),
  MAX_INFLIGHT_BYTES: bytes(
    '16MiB',
    1024,
    16 * 1024 ** 3,
    'Body bytes all requests together may hold while they are read and parsed; past it requests get 429 (INFLIGHT_FULL).',
  ),
  MAX_CONNECTIONS: integer(
    256,
    1,
    1_000_000,
    'Open connections at most; more are closed at once (counted as refused_connections in /health).',
  ),
  REQUEST_TIMEOUT: seconds(
    30,
    3600,
    'Time a client has to send a whole request, headers and body; a stalled request is closed.',
  ),
  SINK_CONCURRENCY: integer(4, 1, 64, 'Batches each sink writes at the same time.'),
  SINK_TIMEOUT: seconds(
    30,
    3600,
    'Time one write attempt may take before it counts as failed (and is retried).',
  ),
  RETRY_INITIAL_BACKOFF: seconds(
    0.5,
    3600,
    'Upper bound of the first retry delay; it doubles per attempt, with full jitter.',
  ),
  RETRY_MAX_BACKOFF: seconds(30, 3600, 'Largest upper bound of one retry delay.'),
  RETRY_MAX_ELAPSED: seconds(
    300,
    86_400,
    'How long a batch is retried before it goes to the dead-letter store; meanwhile the buffer fills and requests get 429.',
  ),
  SHUTDOWN_TIMEOUT: seconds(
    8,
    3600,
    'On SIGTERM/SIGINT, time to flush and deliver before what is left is dead-lettered; Cloud Run kills at 10 s.',
  ),
  SHUTDOWN_ACCEPT: Type.Number({
    default: 5,
    minimum: 0,
    maximum: 3600,
    description:
      "After SIGTERM, how long sidelog still takes entries (flushing each at once), for the app's own shutdown logs: the platform signals both at about the same time. Part of SHUTDOWN_TIMEOUT, and at most half of it, so that what is taken can be delivered; 0: refuse at once (503).",
    accepts: 'a number of seconds from 0 to 3600',
  }),
  SHUTDOWN_QUIET: seconds(
    2,
    3600,
    'After SIGTERM, stop taking entries early once no request has come for this long: an app that has already stopped does not hold the drain back.',
  ),
  SPOOL_DIR: Type.String({
    default: '',
    description:
      'Disk spool: with it, a 202 means the entries are on disk, and a restart after a crash delivers them (once per sink, by batch name and event_id). Empty: memory only.',
    accepts: 'a directory path, or empty for no spool',
  }),
  SPOOL_FSYNC: Type.Union([Type.Literal('always'), Type.Literal('interval'), Type.Literal('never')], {
    default: 'always',
    description:
      'always: fsync before every 202 (survives power loss); interval: fsync every second (a crash of sidelog loses nothing, power loss up to a second); never: the OS decides.',
    accepts: 'always, interval or never',
  }),
  SPOOL_MAX_BYTES: bytes(
    '256MiB',
    1024 ** 2,
    1024 ** 4,
    'Disk the spool may use; past it new requests get 429 until sinks catch up.',
  ),
  IDEMPOTENCY_MAX_KEYS: integer(
    20_000,
    1,
    10_000_000,
    'Idempotency-Key values remembered at most (about 270 bytes of heap each with UUID keys); past it the oldest is forgotten before its window ends.',
  ),
  IDEMPOTENCY_WINDOW: seconds(
    600,
    7 * 86_400,
    'How long a request with an Idempotency-Key is remembered after its answer: a repeat within it gets the first answer and takes nothing again. With SPOOL_DIR it survives a restart.',
  ),
  LABELS: Type.Transform(
    Type.String({
      default: '',
      pattern: LABEL_PATTERN,
      description: 'Static fields added to every entry that lacks them, e.g. env=prod,team=payments.',
      accepts: 'a comma-separated list of name=value pairs (names start with a letter or _)',
    }),
  )
    .Decode((list) => {
      const labels: Record<string, string> = {}
      for (const pair of list.split(',')) {
        const eq = pair.indexOf('=')
        if (eq > 0) labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim()
      }
      return labels
    })
    .Encode((labels) =>
      Object.entries(labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    ),
  LOG_LEVEL: Type.Union(
    LOG_LEVELS.map((level) => Type.Literal(level)),
    {
      default: 'info',
      description: "Level of sidelog's own logs (pino JSON on stderr).",
      accepts: `one of ${LOG_LEVELS.join(', ')}`,
    },
  ),
  K_SERVICE: text('unknown', 'Service name added to every entry as `service` (Cloud Run sets it).'),
  K_REVISION: text('unknown', 'Revision added to every entry as `revision` (Cloud Run sets it).'),
  LOG_FORMAT: Type.Union([Type.Literal('auto'), Type.Literal('gcp'), Type.Literal('json')], {
    default: 'auto',
    description:
      "Format of sidelog's own logs. gcp: Cloud Logging's structured JSON (severity, message, time, stack_trace; errors reach Error Reporting); json: pino's plain JSON (numeric level, msg); auto: gcp when K_SERVICE is set (Cloud Run, Knative, the Kubernetes manifest), json elsewhere.",
    accepts: 'auto, gcp or json',
  }),
  ADMIN_HOST: text(
    '0.0.0.0',
    'Address of the admin listener (/health, /ready, /metrics only, never /logs), when ADMIN_PORT is set: the platform reaches it while /logs stays on SIDELOG_HOST.',
  ),
  ADMIN_PORT: Type.Transform(
    Type.String({
      default: '',
      pattern: '^\\s*(\\d{1,5})?\\s*$',
      description:
        'Port of the admin listener serving /health, /ready and /metrics (0 picks a free one). Empty: no admin listener; the same routes are on SIDELOG_PORT anyway.',
      accepts: 'empty, or a port from 0 to 65535',
    }),
  )
    .Decode((port) => {
      if (port.trim() === '') return undefined
      const n = Number(port)
      if (n > 65535) throw new Error('out of range')
      return n
    })
    .Encode((port) => (port === undefined ? '' : String(port))),
}

export const ConfigSchema = Type.Object({
  ...coreSettings,
  ...googleSettings,
  ...sinkSettings,
  ...sourceSettings,
})

export type Config = Readonly<StaticDecode<typeof ConfigSchema>>
type SettingName = keyof typeof ConfigSchema.properties

function settingSchemas(): [SettingName, TSchema][] {
  return Object.entries(ConfigSchema.properties) as [SettingName, TSchema][]
}

/**
 * Reads every setting from `env` (unknown variables are ignored; an empty value counts as unset), and throws one
 * ConfigError listing every bad setting with what it accepts.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const problems: string[] = []
  const decoded: Record<string, unknown> = {}
  for (const [name, schema] of settingSchemas()) {
    const raw = env[name] === '' ? undefined : env[name]
    const value = Value.Convert(schema, Value.Default(schema, raw))
    try {
      if (!Value.Check(schema, value)) throw new Error('invalid')
      decoded[name] = Value.Decode(schema, value)
    } catch {
      problems.push(`${name}=${JSON.stringify(raw)} is not valid: expected ${schema.accepts}`)
    }
  }
  if (problems.length === 0) problems.push(...crossCheck(decoded as Config))
  if (problems.length > 0) {
    throw new ConfigError(
      `invalid configuration:\n  ${problems.join('\n  ')}\nRun sidelog --help for every setting.`,
    )
  }
  return Object.freeze(decoded as Config)
}

/**
 * Buffered entries cost about 1.5 times their JSONL bytes of heap (bench/buffer-heap.ts: 28.8 MiB took 43 MiB), and
 * every sink holds the same entries, so the heap must fit 1.5 × BUFFER_MAX_BYTES plus room to work in. A capped
 * heap (NODE_OPTIONS=--max-old-space-size, as the container image sets) that cannot is a start-up error: it would
 * otherwise crash with every buffered entry the first time a sink is down for long.
 */
export const HEAP_PER_BUFFERED_BYTE = 1.5
export const HEAP_WORKING_BYTES = 48 * 1024 ** 2

export function heapProblem(
  config: Pick<Config, 'BUFFER_MAX_BYTES'>,
  heapLimitBytes: number,
): string | undefined {
  const need = config.BUFFER_MAX_BYTES * HEAP_PER_BUFFERED_BYTE + HEAP_WORKING_BYTES
  if (need <= heapLimitBytes) return undefined
  const mib = (n: number) => `${Math.ceil(n / 1024 ** 2)} MiB`
  return (
    `BUFFER_MAX_BYTES (${mib(config.BUFFER_MAX_BYTES)}) needs about ${mib(need)} of heap when a sink is down, ` +
    `but the heap limit is ${mib(heapLimitBytes)} (NODE_OPTIONS --max-old-space-size): lower BUFFER_MAX_BYTES or raise the limit`
  )
}

/** Relations between settings that no single field can express. */
function crossCheck(c: Config): string[] {
  const problems: string[] = []
  const order = (small: SettingName, big: SettingName, why: string) => {
    if ((c[small] as number) > (c[big] as number)) {
      problems.push(`${small} (${c[small]}) must not exceed ${big} (${c[big]}): ${why}`)
    }
  }
  order('MAX_BODY_BYTES', 'MAX_INFLIGHT_BYTES', 'one request body must fit in what may be in flight')
  order('RETRY_INITIAL_BACKOFF', 'RETRY_MAX_BACKOFF', 'the first delay cannot be above the largest')
  if (c.SPOOL_DIR) order('BUFFER_MAX_BYTES', 'SPOOL_MAX_BYTES', 'the spool must hold a full buffer')
  if (c.ADMIN_PORT !== undefined && c.ADMIN_PORT !== 0 && c.ADMIN_PORT === c.SIDELOG_PORT) {
    problems.push(
      `ADMIN_PORT (${c.ADMIN_PORT}) must differ from SIDELOG_PORT: the admin listener is a second port`,
    )
  }
  problems.push(...checkGoogleSettings(c))
  if (c.DEAD_LETTER.includes('gcs') && !(c.GCS_BUCKET || c.LOG_BUCKET)) {
    problems.push('DEAD_LETTER includes gcs, so LOG_BUCKET (or GCS_BUCKET) must name the bucket')
  }
  problems.push(...checkSinkSettings(c))
  problems.push(...checkSourceSettings(c))
  return problems
}

/** One component's settings, as --help and the README's settings table show them. */
export interface SettingGroup {
  readonly title: string
  /** What the component is, for a sink its module's summary. */
  readonly about?: string
  readonly names: readonly SettingName[]
}

/** Every setting, grouped by the component that owns it: sidelog itself, Google Cloud, each sink, each source. */
export function settingGroups(): SettingGroup[] {
  const names = (settings: object) => Object.keys(settings) as SettingName[]
  return [
    { title: 'sidelog', names: names(coreSettings) },
    {
      title: 'Google Cloud',
      about: 'Shared by the gcs and bigquery sinks and the gcs dead-letter store.',
      names: names(googleSettings),
    },
    ...Object.values(sinkModules).map((module) => ({
      title: `${module.kind} sink`,
      about: module.summary,
      names: names(module.settings),
    })),
    ...Object.values(sourceModules).map((module) => ({
      title: `${module.kind} source`,
      about: module.summary,
      names: names(module.settings),
    })),
  ]
}

/** `sidelog --help`: every setting from the same schema, with default, description and accepted values. */
export function helpText(): string {
  const lines = [
    'sidelog: a log-processing sidecar. POST JSON, a JSON array or NDJSON (optionally gzip) to /logs.',
    '',
    'Usage: sidelog [--help]     (configuration comes from environment variables)',
  ]
  for (const group of settingGroups()) {
    lines.push('', `Settings of ${group.title}:${group.about ? ` ${group.about}` : ''}`)
    for (const name of group.names) {
      const schema = ConfigSchema.properties[name] as TSchema
      const defaultValue = schema.default === '' ? '(none)' : String(schema.default)
      lines.push(
        `  ${name}  (default: ${defaultValue})`,
        `      ${schema.description}`,
        `      Accepts ${schema.accepts}.`,
      )
    }
  }
  return lines.join('\n')
}

/** The README's settings tables sit between these two lines. */
export const SETTINGS_START =
  '<!-- settings: made by npm run docs:settings from the schema; do not edit by hand -->'
export const SETTINGS_END = '<!-- settings end -->'

/**
 * The README's settings table, made from the same schema (scripts/settings-table.ts writes it between the README's
 * markers; test/readme.test.ts fails when the README's copy differs).
 */
export function settingsTable(): string {
  // A cell is markdown: a | would end it, and <DATA_DIR> would be taken for an HTML tag.
  const cell = (text: string) => text.replaceAll('|', '\\|').replaceAll('<', '&lt;')
  const lines: string[] = []
  for (const group of settingGroups()) {
    lines.push('', `**${group.title}**${group.about ? `: ${group.about}` : ''}`, '')
    lines.push('| Setting | Default | Meaning | Accepts |', '| --- | --- | --- | --- |')
    for (const name of group.names) {
      const schema = ConfigSchema.properties[name] as TSchema
      const defaultValue = schema.default === '' ? '(none)' : `\`${String(schema.default)}\``
      lines.push(
        `| \`${name}\` | ${defaultValue} | ${cell(schema.description ?? '')} | ${cell(schema.accepts ?? '')} |`,
      )
    }
  }
  return lines.join('\n').trim()
}
