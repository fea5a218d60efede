// Composes the settings of registered components (sinks, sources) into one object for config's schema, keeping
// each setting's type, and refusing a name two components both declare.
import type { StaticDecode, TObject, TProperties } from '@sinclair/typebox'

/** A component's own settings, decoded. */
export type SettingsOf<P extends TProperties> = Readonly<StaticDecode<TObject<P>>>

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void
  ? I
  : never

type SettingsOfAll<M extends Record<string, { readonly settings: TProperties }>> = UnionToIntersection<
  M[keyof M]['settings']
>

export function composeSettings<M extends Record<string, { readonly settings: TProperties }>>(
  modules: M,
): SettingsOfAll<M> {
  const all: TProperties = {}
  for (const [kind, { settings }] of Object.entries(modules)) {
    for (const [name, schema] of Object.entries(settings)) {
      if (name in all) throw new Error(`the setting ${name} is declared twice (again by ${kind})`)
      all[name] = schema
    }
  }
  return all as SettingsOfAll<M>
}

/** The values of a component's own settings, picked from the whole configuration. */
export function ownSettings(settings: TProperties, config: object): Readonly<Record<string, unknown>> {
  const values = config as Record<string, unknown>
  return Object.freeze(Object.fromEntries(Object.keys(settings).map((name) => [name, values[name]])))
}
