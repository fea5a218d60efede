// The README is part of the product: it must document every setting the schema has.
import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { ConfigSchema } from '../src/config.js'

describe('README', () => {
  it('documents every setting', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    for (const name of Object.keys(ConfigSchema.properties)) expect(readme).toContain(`\`${name}\``)
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
})
