// Every setting in one schema (name, default, description, what it accepts), validated once at start-up and frozen.
// sidelog's own settings (settings/core.ts), the Google ones and each sink's and source's come from their own
// folders through the registries; this file composes them, checks how they relate, and prints --help and the
// README's settings tables.
import { type StaticDecode, type TSchema, Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { ConfigError } from './errors.js'
import { checkGoogleSettings, googleSettings } from './google/settings.js'
import { coreSettings, DEAD_LETTER_KINDS, type DeadLetterKind } from './settings/core.js'
import { parseBytes } from './settings/fields.js'
import { checkSinkSettings, SINK_KINDS, type SinkKind, sinkModules, sinkSettings } from './sinks/index.js'
import { checkSourceSettings, sourceModules, sourceSettings } from './sources/index.js'

export { DEAD_LETTER_KINDS, type DeadLetterKind, parseBytes, SINK_KINDS, type SinkKind }

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
 * Buffered entries once cost about 1.5 times their JSONL bytes of heap (bench/buffer-heap.ts: 28.8 MiB took 43 MiB).
 * Their text now lives in Buffers outside the heap, one EventRun per request: 0.07 times their bytes of heap, plus
 * the bytes themselves. The check still counts 1.5 times against the heap limit, because that limit is how an
 * operator sizes sidelog's memory (the image's 128 MiB for a 256 MiB container), and the Buffers count in the
 * container as the heap does. Every sink holds the same entries. A capped heap (NODE_OPTIONS=--max-old-space-size,
 * as the container image sets) that cannot fit them is a start-up error: it would otherwise crash, or be killed, with
 * every buffered entry the first time a sink is down for long.
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
 * The fields sidelog writes into an entry itself (see additions.ts), with where their value comes from: a label of
 * the same name would put the key in the line twice. Labels named like fields it only reads (msg, level, time, ...)
 * are those fields: an entry that lacks one gets the label.
 */
const WRITTEN_FIELDS: Record<string, string> = {
  event_id: ' (each entry has its own)',
  service: ' (K_SERVICE sets the service)',
  revision: ' (K_REVISION sets the revision)',
  host: ' (the host is the machine name)',
  processed_at: '',
  timestamp: '',
  severity: '',
  message: " (copied from an entry's msg)",
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
  if (c.BUFFER_FULL_WAIT >= c.REQUEST_TIMEOUT) {
    problems.push(
      `BUFFER_FULL_WAIT (${c.BUFFER_FULL_WAIT}) must be less than REQUEST_TIMEOUT (${c.REQUEST_TIMEOUT}): a request still waiting for room when its time runs out would be closed (408) instead of answered 429`,
    )
  }
  for (const name of Object.keys(c.LABELS)) {
    const instead = WRITTEN_FIELDS[name]
    if (instead !== undefined) {
      problems.push(`LABELS names ${name}, a field sidelog writes itself; choose another name${instead}`)
    }
  }
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
