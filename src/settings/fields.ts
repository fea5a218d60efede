// The field builders every settings schema uses (core, Google, each sink's and each source's): one way to say a
// size, a count, a duration or a name, each with its default, description and what it accepts, for --help, the
// README's settings table and the start-up error that names a bad value.
import { type TSchema, Type } from '@sinclair/typebox'

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

export function bytes(defaultValue: string, minimum: number, maximum: number, description: string) {
  const accepts = `a size in bytes from ${formatBytes(minimum)} to ${formatBytes(maximum)}: a whole number or one with a unit (KiB, MiB, GiB, KB, MB, GB), e.g. ${defaultValue}`
  return Type.Transform(Type.String({ pattern: BYTES_PATTERN, default: defaultValue, description, accepts }))
    .Decode((text) => {
      const n = parseBytes(text)
      if (n < minimum || n > maximum) throw new Error(`out of range`)
      return n
    })
    .Encode(formatBytes)
}

export function integer(defaultValue: number, minimum: number, maximum: number, description: string) {
  return Type.Integer({
    default: defaultValue,
    minimum,
    maximum,
    description,
    accepts: `a whole number from ${minimum} to ${maximum}`,
  })
}

export function seconds(defaultValue: number, maximum: number, description: string) {
  return Type.Number({
    default: defaultValue,
    exclusiveMinimum: 0,
    maximum,
    description,
    accepts: `a number of seconds greater than 0 and at most ${maximum} (fractions allowed, e.g. 0.5)`,
  })
}

export function text(defaultValue: string, description: string) {
  return Type.String({ default: defaultValue, minLength: 1, description, accepts: 'a non-empty string' })
}

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
const MAX_OPTIONAL_BYTES = 256 * 1024 ** 2
const optionalEventCount = optional('\\d+', Number, 1, MAX_EVENTS)
const optionalSecondCount = optional('\\d+(\\.\\d+)?', Number, Number.MIN_VALUE, 3600)
const optionalByteCount = optional('\\d+(\\.\\d+)?\\s*([KMG]i?B|B)?', parseBytes, 1024, MAX_OPTIONAL_BYTES)

/** A number of entries that may be left unset (batching overrides). */
export const optionalEvents = (description: string) =>
  optionalEventCount(description, `empty, or a whole number from 1 to ${MAX_EVENTS}`)
/** A number of seconds that may be left unset (batching overrides). */
export const optionalSeconds = (description: string) =>
  optionalSecondCount(
    description,
    'empty, or a number of seconds greater than 0 and at most 3600 (fractions allowed, e.g. 0.5)',
  )
/** A size that may be left unset (batching overrides). */
export const optionalBytes = (description: string) =>
  optionalByteCount(
    description,
    'empty, or a size in bytes from 1KiB to 256MiB: a whole number or one with a unit (KiB, MiB, GiB, KB, MB, GB), e.g. 4MiB',
  )

/** What every field above carries besides its type, read by --help, the README table and the error messages. */
export interface Documented {
  readonly default?: unknown
  readonly description?: string
  readonly accepts?: string
}

export type SettingSchemas = Record<string, TSchema>
