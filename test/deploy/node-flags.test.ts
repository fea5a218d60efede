// Every way sidelog is started sets the same heap flags, so that its memory stays inside the budget the README
// measures however it runs: npm start, the sidelog command, the container image and the Cloud Foundry manifest.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const read = (path: string) => readFileSync(fileURLToPath(new URL(`../../${path}`, import.meta.url)), 'utf8')
const FLAGS = '--max-semi-space-size=1 --max-old-space-size=128'

describe('heap flags', () => {
  it('are the same in npm start, the sidelog command, the image and the Cloud Foundry manifest', () => {
    const start = (JSON.parse(read('package.json')) as { scripts: { start: string } }).scripts.start
    expect(start).toContain(`node ${FLAGS} dist/main.js`)
    expect(read('src/main.ts').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${FLAGS}`)
    expect(read('Dockerfile')).toContain(`NODE_OPTIONS="${FLAGS}"`)
    expect(read('deploy/cloudfoundry/manifest.yml')).toContain(`command: node ${FLAGS} sidelog/dist/main.js`)
  })
})
