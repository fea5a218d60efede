// The registries are what make a sink or a source one folder and one line: every registered sink must bring what the rest of
// sidelog takes from it. This fails for a sink (or source) registered without settings that document themselves, without its
// batching settings, without its place in --help and the README, or without a harness in the contract test.
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { TSchema } from '@sinclair/typebox'
import { describe, expect, it } from 'vitest'
import { ConfigSchema, helpText, loadConfig, settingGroups } from '../src/config.js'
import { batchingFor } from '../src/pipeline/batching.js'
import { SINK_KINDS, sinkModule } from '../src/sinks/index.js'
import { SOURCE_KINDS, sourceModule } from '../src/sources/index.js'

const contractTest = await readFile(new URL('./sinks/contract.test.ts', import.meta.url), 'utf8')
const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')

/** Every setting of a component in the schema, with a default, a description and what it accepts. */
function expectDocumented(settings: object) {
  for (const name of Object.keys(settings)) {
    const schema = ConfigSchema.properties[name as keyof typeof ConfigSchema.properties] as TSchema
    expect(schema, name).toBeDefined()
    expect(schema.default, name).toBeDefined()
    expect(schema.description, name).toMatch(/\w{3,}/)
    expect(schema.accepts, name).toMatch(/\w{3,}/)
  }
}

describe.each(SINK_KINDS)('registered sink: %s', (kind) => {
  const module = sinkModule(kind)

  it('is registered under its own kind, with a summary', () => {
    expect(module.kind).toBe(kind)
    expect(module.summary.length).toBeGreaterThan(20)
  })

  it('declares its settings in the schema, each with a default, a description and what it accepts', () => {
    expect(Object.keys(module.settings).length).toBeGreaterThanOrEqual(3)
    expectDocumented(module.settings)
  })

  it('has its own batching settings, which win over the general ones', () => {
    const prefix = module.batchPrefix
    for (const setting of ['BATCH_SIZE', 'BATCH_BYTES', 'FLUSH_INTERVAL']) {
      expect(Object.keys(module.settings)).toContain(`${prefix}_${setting}`)
    }
    const config = loadConfig({
      BATCH_SIZE: '7',
      [`${prefix}_BATCH_SIZE`]: '3',
      [`${prefix}_FLUSH_INTERVAL`]: '0.5',
    })
    expect(batchingFor(module, config, config)).toMatchObject({ maxBatchEvents: 3, flushIntervalMs: 500 })
  })

  it('is in --help and in the README, with every one of its settings', () => {
    const group = settingGroups().find((g) => g.title === `${kind} sink`)
    expect(group?.names).toEqual(Object.keys(module.settings))
    const help = helpText()
    expect(help).toContain(`Settings of ${kind} sink:`)
    expect(readme).toContain(`**${kind} sink**`)
    for (const name of Object.keys(module.settings)) expect(help).toContain(`  ${name}  (default:`)
  })

  it('has a harness in the contract test, so the contract is checked for it', () => {
    // contract.test.ts runs every rule for every kind in SINK_KINDS through its harness of that kind.
    expect(contractTest).toMatch(new RegExp(`\\n  async ${kind}\\(config\\)`))
  })
})

describe.each(SOURCE_KINDS)('registered source: %s', (kind) => {
  const module = sourceModule(kind)

  it('declares its settings in the schema, each with a default, a description and what it accepts', () => {
    expect(module.kind).toBe(kind)
    expect(module.summary.length).toBeGreaterThan(20)
    expect(Object.keys(module.settings).length).toBeGreaterThanOrEqual(1)
    expectDocumented(module.settings)
  })

  it('is in --help and in the README, with every one of its settings', () => {
    const group = settingGroups().find((g) => g.title === `${kind} source`)
    expect(group?.names).toEqual(Object.keys(module.settings))
    expect(helpText()).toContain(`Settings of ${kind} source:`)
    expect(readme).toContain(`**${kind} source**`)
  })

  it('has tests of its own', () => {
    expect(existsSync(new URL(`./sources/${kind}.test.ts`, import.meta.url))).toBe(true)
  })
})
