// Writes the README's settings tables from the schema (config.ts, which composes every registered sink's and
// source's settings), between the README's settings markers. test/readme.test.ts fails when the README's copy
// differs, so a new setting is documented by running `npm run docs:settings`.
import { readFile, writeFile } from 'node:fs/promises'
import { SETTINGS_END, SETTINGS_START, settingsTable } from '../src/config.js'

const path = new URL('../README.md', import.meta.url)
const readme = await readFile(path, 'utf8')
const start = readme.indexOf(SETTINGS_START)
const end = readme.indexOf(SETTINGS_END)
if (start < 0 || end < start) throw new Error(`README.md has no ${SETTINGS_START} ... ${SETTINGS_END} block`)
const next = `${readme.slice(0, start + SETTINGS_START.length)}\n\n${settingsTable()}\n\n${readme.slice(end)}`
if (next !== readme) await writeFile(path, next)
console.log(
  next === readme ? 'README.md settings tables are up to date' : 'README.md settings tables rewritten',
)
