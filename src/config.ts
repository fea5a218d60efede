// Every setting in one schema (name, default, description, what it accepts), validated once at start-up and frozen.
import { type StaticDecode, type TSchema, Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { ConfigError } from './errors.js'
import { boundServiceCredentials } from './google-credentials.js'
import { DEFAULT_HOST, DEFAULT_PORT } from './listen-address.js'
import { batchingSettings, checkBatchingSettings, generalBatchingSettings } from './pipeline/batching.js'
import { checkOtlpSettings, otlpSettings } from './sources/otlp/settings.js'
import { checkTailSettings, tailSettings } from './sources/tail/settings.js'

/** The sinks sidelog can deliver to. `sinks/index.ts` must register a factory for each (checked by the compiler). */
export const SINK_KINDS = ['file', 'stdout', 'gcs', 'bigquery'] as const
export type SinkKind = (typeof SINK_KINDS)[number]

/** Where dead letters can go (delivery/dead-letters.ts builds each). */
export const DEAD_LETTER_KINDS = ['dir', 'gcs', 'stderr'] as const
export type DeadLetterKind = (typeof DEAD_LETTER_KINDS)[number]

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kib: 1024,
  kb: 1000,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
}
const BYTES_PATTERN = '^\\s*\\d+(\\.\\d+)?\\s*([KMG]i?B|B)?\\s*$'

/** Parses `5242880`, `512KiB`, `5MiB`, `1.5GB` into bytes. */
export function parseBytes(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const unit = UNITS[(match?.[2] ?? '').toLowerCase()]
  if (!match?.[1] || unit === undefined) throw new Error(`"${text}" is not a size`)
  return Math.floor(Number(match[1]) * unit)
}

function formatBytes(n: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (n >= size && n % size === 0) return `${n / size}${unit}`
  }
  return String(n)
}

function bytes(defaultValue: string, minimum: number, maximum: number, description: string) {
  const accepts = `a size in bytes from ${formatBytes(minimum)} to ${formatBytes(maximum)}: a whole number or one with a unit (KiB, MiB, GiB, KB, MB, GB), e.g. ${defaultValue}`
  return Type.Transform(Type.String({ pattern: BYTES_PATTERN, default: defaultValue, description, accepts }))
    .Decode((text) => {
      const n = parseBytes(text)
      if (n < minimum || n > maximum) throw new Error(`out of range`)
      return n
    })
    .Encode(formatBytes)
}

function integer(defaultValue: number, minimum: number, maximum: number, description: string) {
  return Type.Integer({
    default: defaultValue,
    minimum,
    maximum,
    description,
    accepts: `a whole number from ${minimum} to ${maximum}`,
  })
}

function seconds(defaultValue: number, maximum: number, description: string) {
  return Type.Number({
    default: defaultValue,
    exclusiveMinimum: 0,
    maximum,
    description,
    accepts: `a number of seconds greater than 0 and at most ${maximum} (fractions allowed, e.g. 0.5)`,
  })
}

function text(defaultValue: string, description: string) {
  return Type.String({ default: defaultValue, minLength: 1, description, accepts: 'a non-empty string' })
}

/** The field builders a source's settings module uses (they take them as an argument, so config.ts is not imported at run time). */
const settingHelpers = { bytes, integer, seconds, text }
/** BATCH_SIZE, BATCH_BYTES, FLUSH_INTERVAL: unset unless a user sets them (see pipeline/batching.ts). */
const general = generalBatchingSettings(parseBytes)
export type SettingHelpers = typeof settingHelpers

const BUCKET_PATTERN = '^([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])?$'
const BUCKET_ACCEPTS =
  'a Cloud Storage bucket name: 3 to 222 lower-case letters, digits, dots, dashes or underscores'
const SINKS_ACCEPTS = `a comma-separated list of: ${SINK_KINDS.join(', ')}`
const LABEL_PATTERN =
  '^\\s*([A-Za-z_][A-Za-z0-9_.-]*=[^,=]*)?(\\s*,\\s*[A-Za-z_][A-Za-z0-9_.-]*=[^,=]*)*\\s*$'

export const ConfigSchema = Type.Object({
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
  LOG_BUCKET: Type.String({
    default: '',
    pattern: BUCKET_PATTERN,
    description:
      "Cloud Storage bucket of the gcs sink, of load mode's staged objects and of DEAD_LETTER=gcs (GCS_BUCKET is the same setting).",
    accepts: BUCKET_ACCEPTS,
  }),
  GCS_BUCKET: Type.String({
    default: '',
    pattern: BUCKET_PATTERN,
    description: 'Same as LOG_BUCKET; set one of them.',
    accepts: BUCKET_ACCEPTS,
  }),
  GCS_PREFIX: Type.String({
    default: 'logs/',
    pattern: '^([^/].*/)?$',
    description: 'Object name prefix of the gcs sink.',
    accepts: 'an empty string or a prefix ending in / that does not start with /, e.g. logs/ or team/app/',
  }),
  GCS_LAYOUT: Type.Union([Type.Literal('date'), Type.Literal('hive')], {
    default: 'date',
    description:
      'Object layout under the prefix: date is YYYY/MM/DD/HHMMSS-<instance>-<seq>.jsonl; hive is dt=YYYY-MM-DD/HHMMSS-<instance>-<seq>.jsonl.',
    accepts: 'date or hive',
  }),
  GCS_COMPRESSION: Type.Union([Type.Literal('none'), Type.Literal('gzip')], {
    default: 'none',
    description: 'gzip writes .jsonl.gz objects with Content-Encoding: gzip.',
    accepts: 'none or gzip',
  }),
  GCS_ENDPOINT: Type.String({
    default: '',
    pattern: '^(https?://[^\\s/]+)?$',
    description:
      'Cloud Storage API endpoint, for an emulator such as fake-gcs-server (the client library also honours STORAGE_EMULATOR_HOST).',
    accepts: 'an http(s) URL without a path, e.g. http://127.0.0.1:4443',
  }),
  GCS_RESUMABLE_THRESHOLD: bytes(
    '8MiB',
    0,
    5 * 1024 ** 4,
    'Objects larger than this use a resumable upload (an extra request); smaller ones one request.',
  ),
  BQ_PROJECT: Type.String({
    default: '',
    pattern: '^([a-z][a-z0-9-]{4,28}[a-z0-9])?$',
    description: "Project of the bigquery sink's dataset (default: the credentials' project).",
    accepts:
      'a Google Cloud project id: 6 to 30 lower-case letters, digits or dashes, starting with a letter',
  }),
  BQ_DATASET: Type.String({
    default: '',
    pattern: '^[A-Za-z0-9_]{0,1024}$',
    description: 'Dataset of the bigquery sink.',
    accepts: 'a dataset id: letters, digits and underscores',
  }),
  BQ_TABLE: Type.String({
    default: '',
    pattern: '^[A-Za-z0-9_-]{0,1024}$',
    description:
      'Table of the bigquery sink; created with the default schema when missing and BQ_CREATE is true.',
    accepts: 'a table id: letters, digits, underscores and dashes',
  }),
  BQ_CREATE: Type.Boolean({
    default: true,
    description: 'Create the dataset and table at start-up when they are missing.',
    accepts: 'true or false',
  }),
  BQ_MODE: Type.Union([Type.Literal('stream'), Type.Literal('load')], {
    default: 'stream',
    description:
      'stream: tabledata.insertAll with insertId = event_id (billed per GB). load: batches are staged as objects in LOG_BUCKET and loaded with free load jobs every BQ_LOAD_INTERVAL.',
    accepts: 'stream or load',
  }),
  BQ_LOAD_INTERVAL: seconds(
    60,
    86_400,
    'Load mode: how often the staged objects are loaded, all in one job. Each busy instance makes up to 86400 / BQ_LOAD_INTERVAL jobs a day, and a table takes about 1,500.',
  ),
  BQ_LOAD_PREFIX: Type.String({
    default: 'bigquery-load/',
    pattern: '^[^/].*/$',
    description:
      'Load mode: prefix of the staged objects in LOG_BUCKET (row-shaped JSONL, kept after loading: give it a lifecycle rule).',
    accepts: 'a prefix ending in / that does not start with /, e.g. bigquery-load/',
  }),
  BQ_ENDPOINT: Type.String({
    default: '',
    pattern: '^(https?://[^\\s/]+)?$',
    description:
      'BigQuery API endpoint, for an emulator such as bigquery-emulator; sidelog then sends a placeholder token.',
    accepts: 'an http(s) URL without a path, e.g. http://127.0.0.1:9050',
  }),
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
  GOOGLE_CLOUD_PROJECT: Type.String({
    default: '',
    pattern: '^([a-z][a-z0-9-]{4,28}[a-z0-9])?$',
    description:
      'Project named in Cloud Logging trace fields (logging.googleapis.com/trace = projects/<project>/traces/<id>); empty: BQ_PROJECT, and without that the bare trace id.',
    accepts:
      'a Google Cloud project id: 6 to 30 lower-case letters, digits or dashes, starting with a letter',
  }),
  GOOGLE_CREDENTIALS_SERVICE: Type.String({
    default: '',
    description:
      "Cloud Foundry: the name of a bound service whose credentials (in VCAP_SERVICES) are the service-account key the Google Cloud clients use, so that no key file ships with the app. Empty: Application Default Credentials (Cloud Run's or GKE's service account, GOOGLE_APPLICATION_CREDENTIALS).",
    accepts: 'the name of a service bound to the app, or empty',
  }),
  VCAP_SERVICES: Type.String({
    default: '',
    description:
      'Set by Cloud Foundry: the services bound to the app, as JSON. Read only for GOOGLE_CREDENTIALS_SERVICE, and never logged.',
    accepts: 'the JSON Cloud Foundry sets',
  }),
  ...otlpSettings(settingHelpers),
  ...tailSettings(settingHelpers),
  ...batchingSettings(parseBytes),
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

/**
 * What the Google Cloud clients are built with besides their endpoint: the bound service's key on Cloud Foundry
 * (GOOGLE_CREDENTIALS_SERVICE), else nothing (Application Default Credentials). Checked by loadConfig already.
 */
export function googleAuthOptions(config: Pick<Config, 'GOOGLE_CREDENTIALS_SERVICE' | 'VCAP_SERVICES'>): {
  credentials?: { client_email: string; private_key: string }
  projectId?: string
} {
  if (!config.GOOGLE_CREDENTIALS_SERVICE) return {}
  const { credentials, projectId } = boundServiceCredentials(
    config.VCAP_SERVICES,
    config.GOOGLE_CREDENTIALS_SERVICE,
  )
  return { credentials: { ...credentials }, ...(projectId ? { projectId } : {}) }
}

/** The gcs sink's bucket: LOG_BUCKET or its alias GCS_BUCKET ('' when neither is set). */
export function gcsBucket(config: Pick<Config, 'LOG_BUCKET' | 'GCS_BUCKET'>): string {
  return config.GCS_BUCKET || config.LOG_BUCKET
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
  problems.push(...checkBatchingSettings(c))
  order('RETRY_INITIAL_BACKOFF', 'RETRY_MAX_BACKOFF', 'the first delay cannot be above the largest')
  if (c.SPOOL_DIR) order('BUFFER_MAX_BYTES', 'SPOOL_MAX_BYTES', 'the spool must hold a full buffer')
  if (c.LOG_BUCKET && c.GCS_BUCKET && c.LOG_BUCKET !== c.GCS_BUCKET) {
    problems.push(`LOG_BUCKET (${c.LOG_BUCKET}) and GCS_BUCKET (${c.GCS_BUCKET}) differ: set one of them`)
  }
  if (c.SINKS.includes('bigquery') && (!c.BQ_DATASET || !c.BQ_TABLE)) {
    problems.push('SINKS includes bigquery, so BQ_DATASET and BQ_TABLE must be set')
  }
  if (c.BQ_ENDPOINT && !c.BQ_PROJECT) {
    problems.push(
      'BQ_ENDPOINT is set, so BQ_PROJECT must be too: an emulator has no credentials to take it from',
    )
  }
  if (c.SINKS.includes('bigquery') && c.BQ_MODE === 'load' && !gcsBucket(c)) {
    problems.push('BQ_MODE is load, so LOG_BUCKET (or GCS_BUCKET) must name the bucket that stages the loads')
  }
  if (c.ADMIN_PORT !== undefined && c.ADMIN_PORT !== 0 && c.ADMIN_PORT === c.SIDELOG_PORT) {
    problems.push(
      `ADMIN_PORT (${c.ADMIN_PORT}) must differ from SIDELOG_PORT: the admin listener is a second port`,
    )
  }
  if (c.SINKS.includes('gcs') && !gcsBucket(c)) {
    problems.push('SINKS includes gcs, so LOG_BUCKET (or GCS_BUCKET) must name the bucket')
  }
  if (c.DEAD_LETTER.includes('gcs') && !gcsBucket(c)) {
    problems.push('DEAD_LETTER includes gcs, so LOG_BUCKET (or GCS_BUCKET) must name the bucket')
  }
  if (c.GOOGLE_CREDENTIALS_SERVICE) {
    try {
      boundServiceCredentials(c.VCAP_SERVICES, c.GOOGLE_CREDENTIALS_SERVICE)
    } catch (err) {
      problems.push(`GOOGLE_CREDENTIALS_SERVICE=${c.GOOGLE_CREDENTIALS_SERVICE}: ${(err as Error).message}`)
    }
  }
  problems.push(...checkOtlpSettings(c), ...checkTailSettings(c))
  return problems
}

/** `sidelog --help`: every setting from the same schema, with default, description and accepted values. */
export function helpText(): string {
  const lines = [
    'sidelog: a log-processing sidecar. POST JSON, a JSON array or NDJSON (optionally gzip) to /logs.',
    '',
    'Usage: sidelog [--help]     (configuration comes from environment variables)',
    '',
    'Settings:',
  ]
  for (const [name, schema] of settingSchemas()) {
    const defaultValue = schema.default === '' ? '(none)' : String(schema.default)
    lines.push(
      `  ${name}  (default: ${defaultValue})`,
      `      ${schema.description}`,
      `      Accepts ${schema.accepts}.`,
    )
  }
  return lines.join('\n')
}
