// A fresh `npm ci` prints no warning the project can avoid: every locked package supports the Node versions sidelog
// declares (else npm warns EBADENGINE), and every package with install scripts has a decision in `allowScripts`
// (else npm 11 lists it as not yet reviewed). Read from package.json and the lock file, as npm reads them.
import { readFileSync } from 'node:fs'
import semver from 'semver'
import { describe, expect, it } from 'vitest'

interface Locked {
  readonly version?: string
  readonly engines?: { readonly node?: string } | readonly string[]
  readonly hasInstallScript?: boolean
  readonly optional?: boolean
}

const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
const lock = JSON.parse(readFileSync(new URL('../package-lock.json', import.meta.url), 'utf8'))
const packages = Object.entries(lock.packages as Record<string, Locked>).filter(([path]) => path !== '')
const nameOf = (path: string) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)

describe('npm ci', () => {
  it('installs no package whose engines exclude the Node versions sidelog supports (no EBADENGINE)', () => {
    const supported = manifest.engines.node as string
    const lowest = semver.minVersion(supported)?.version as string
    expect(lowest).toBe('20.19.0')
    const refusing = packages
      .filter(([, pkg]) => !Array.isArray(pkg.engines))
      .map(([path, pkg]) => ({ path, node: (pkg.engines as { node?: string } | undefined)?.node }))
      .filter(({ node }) => node !== undefined)
      .filter(
        ({ node }) =>
          !semver.satisfies(lowest, node as string) || !semver.satisfies(process.version, node as string),
      )
    expect(refusing).toEqual([])
  })

  it('has a decision in allowScripts for every package with install scripts (no install-scripts notice)', () => {
    const decided = new Set(Object.keys(manifest.allowScripts ?? {}))
    const withScripts = packages.filter(([, pkg]) => pkg.hasInstallScript).map(([path]) => nameOf(path))
    expect(withScripts.length).toBeGreaterThan(0)
    expect(withScripts.filter((name) => !decided.has(name))).toEqual([])
  })

  it('keeps light-my-request (fastify.inject) on a cookie release that supports Node 20', () => {
    const cookie = packages.find(
      ([path]) => path.endsWith('light-my-request/node_modules/cookie') || path === 'node_modules/cookie',
    )
    expect(cookie?.[1].version).toBe(manifest.overrides['light-my-request'].cookie)
  })
})
