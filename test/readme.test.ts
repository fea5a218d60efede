// The README is part of the product: it must document every setting the schema has.
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { ConfigSchema, helpText, SETTINGS_END, SETTINGS_START, settingsTable } from '../src/config.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** Paths of the project a text names: `src/app.ts`, `deploy/monitoring/alerts.yaml`, `NOTES.md`. */
function projectPaths(text: string): string[] {
  const named = [
    ...text.matchAll(/`((?:src|test|deploy|bench|examples|clients|\.ci)\/[^`*\s]+)`/g),
    ...text.matchAll(/([\w./-]+\.md)\b/g),
  ]
  return [...new Set(named.map((match) => match[1] as string))]
}

describe('README', () => {
  it('documents every setting', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    for (const name of Object.keys(ConfigSchema.properties)) expect(readme).toContain(`\`${name}\``)
  })

  it('holds the settings tables made from the schema (npm run docs:settings)', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    const start = readme.indexOf(SETTINGS_START)
    const end = readme.indexOf(SETTINGS_END)
    expect(start).toBeGreaterThan(0)
    expect(readme.slice(start + SETTINGS_START.length, end).trim()).toBe(settingsTable())
  })

  it('gives the commands that run the service and the tests', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    expect(readme).toContain('npm ci && npm start')
    expect(readme).toContain('npm test')
    const scripts = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')).scripts
    expect(Object.keys(scripts)).toEqual(
      expect.arrayContaining(['start', 'test', 'bench', 'lint', 'typecheck']),
    )
  })

  it('names only files that are in the project', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    const paths = projectPaths(readme)
    expect(paths.length).toBeGreaterThan(10)
    expect(paths.filter((path) => !existsSync(new URL(path, `file://${ROOT}`)))).toEqual([])
  })
})

describe('--help', () => {
  it('names only files that are in the project, and speaks of nothing outside it', () => {
    const help = helpText()
    expect(projectPaths(help).filter((path) => !existsSync(new URL(path, `file://${ROOT}`)))).toEqual([])
    // Words from the documents the project was started from, which a user of sidelog does not have.
    expect(help).not.toMatch(/\bseeds?\b|GCP-NOTES|issue \d/i)
  })
})
