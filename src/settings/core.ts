// sidelog's own settings: listening, limits, buffers, delivery and retries, dead letters, the spool, shutdown,
// idempotency, its own logs and admin listener. config.ts composes them with the Google settings and every
// registered sink's and source's into the one schema.
import { Type } from '@sinclair/typebox'
import { DEFAULT_HOST, DEFAULT_PORT } from '../listen-address.js'
import { generalBatchingSettings as general } from '../pipeline/batching.js'
import { SINK_KINDS, type SinkKind } from '../sinks/index.js'
import { bytes, integer, seconds, text } from './fields.js'

/** Where dead letters can go (delivery/dead-letters.ts builds each). */
export const DEAD_LETTER_KINDS = ['dir', 'gcs', 'stderr'] as const
export type DeadLetterKind = (typeof DEAD_LETTER_KINDS)[number]

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

const SINKS_ACCEPTS = `a comma-separated list of: ${SINK_KINDS.join(', ')}`
const LABEL_PATTERN =
  '^\\s*([A-Za-z_][A-Za-z0-9_.-]*=[^,=]*)?(\\s*,\\s*[A-Za-z_][A-Za-z0-9_.-]*=[^,=]*)*\\s*$'

/** The settings of sidelog itself: listening, buffers, delivery, the spool, shutdown, its own logs. */
export const coreSettings = {
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
    // 15,000 keeps peak RSS under 128 MiB at saturation and in an outage (README, Memory): past the batches being
    // written, a larger buffer only queues, and costs memory.
    15_000,
    1,
    10_000_000,
    'Entries each sink may hold (open, queued and in-flight batches); past it requests get 429 (with a spool, the rest waits on disk).',
  ),
  BUFFER_MAX_BYTES: bytes(
    '32MiB',
    1024,
    16 * 1024 ** 3,
    'Bytes each sink may hold; past it requests get 429.',
  ),
  BUFFER_FULL_WAIT: Type.Number({
    // 0.1 s takes in every request a delivering sink makes room for (no 429 at saturation from file or gcs in the
    // bench); it costs 5 to 15 MiB of peak RSS with gcs and bigquery at saturation, which fits the budget with the
    // 1 MiB semi-spaces (README, Performance).
    default: 0.1,
    minimum: 0,
    maximum: 60,
    description:
      'How long a POST /logs waits for room when a buffer is full but its sink is delivering, before it gets 429 BUFFER_FULL; 0 answers at once. The body stays unread meanwhile. A failing sink or a full spool gets 429 at once. Must be less than REQUEST_TIMEOUT.',
    accepts: 'a number of seconds from 0 to 60 (fractions allowed, e.g. 0.5)',
  }),
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
    'Open connections at most, per address listened on (SIDELOG_HOST=localhost listens on each of its addresses); more are closed at once (counted as refused_connections in /health).',
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
      accepts:
        'a comma-separated list of name=value pairs (names start with a letter or _, and are none of the fields sidelog writes itself: event_id, service, revision, host, processed_at, timestamp, severity, message)',
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
