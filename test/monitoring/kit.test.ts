// The monitoring kit in deploy/monitoring/ and the README's metric list, checked against what /metrics serves: an
// alert or a panel that names a metric sidelog does not have would never fire or would stay empty.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { createApp } from '../../src/app.js'
import { silentLogger, tempDir, testConfig } from '../helpers.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8')
/** Names of sidelog's metrics and of the process metrics prom-client adds, as they appear in PromQL. */
const METRIC_NAME = /\b(?:sidelog|process|nodejs)_[a-z0-9_]+\b/g

interface Rule {
  alert: string
  expr: string
  for?: string
  labels: { severity: string }
  annotations: { summary: string; description?: string }
}

/** Every family /metrics declares (# TYPE), with the series names a histogram adds. */
let served: Set<string>
/** sidelog's own families, with their type and help. */
let families: Map<string, string>

beforeAll(async () => {
  const dir = await tempDir()
  // With a spool, so that the spool's metrics are served too.
  const app = await createApp(testConfig(dir, { SPOOL_DIR: join(dir, 'spool') }), { logger: silentLogger })
  const text = (await app.server.inject('/metrics')).body
  await app.close()
  served = new Set()
  families = new Map()
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    served.add(name as string)
    if (type === 'histogram')
      for (const suffix of ['_bucket', '_sum', '_count']) served.add(`${name}${suffix}`)
    if (name?.startsWith('sidelog_')) families.set(name, type as string)
  }
})

function unknownNames(exprs: readonly string[]): string[] {
  return [...new Set(exprs.flatMap((expr) => expr.match(METRIC_NAME) ?? []))].filter(
    (name) => !served.has(name),
  )
}

describe('deploy/monitoring/alerts.yaml', () => {
  const groups: { name: string; rules: Rule[] }[] = parse(read('deploy/monitoring/alerts.yaml')).groups
  const rules = groups.flatMap((g) => g.rules)

  it('is a Prometheus rule file whose alerts have a severity and a summary', () => {
    expect(rules.length).toBeGreaterThan(0)
    for (const rule of rules) {
      expect(rule.alert).toMatch(/^Sidelog[A-Za-z]+$/)
      expect(['critical', 'warning', 'info']).toContain(rule.labels.severity)
      expect(rule.annotations.summary.length).toBeGreaterThan(10)
      if (rule.for) expect(rule.for).toMatch(/^\d+[smh]$/)
    }
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length)
  })

  it('covers what the issue asks: dead letters, 429s, a full buffer, no delivery, spool lag', () => {
    const byExpr = (pattern: RegExp) => rules.filter((r) => pattern.test(r.expr)).map((r) => r.alert)
    expect(byExpr(/sidelog_component_dead_lettered_events_total/)).not.toEqual([])
    expect(byExpr(/BUFFER_FULL\|SPOOL_FULL/)).not.toEqual([])
    expect(byExpr(/sidelog_buffer_events \/ sidelog_buffer_max_events\) > 0\.8/)).not.toEqual([])
    expect(byExpr(/increase\(sidelog_component_sent_events_total\[10m\]\)\) == 0/)).not.toEqual([])
    expect(byExpr(/sidelog_spool_lag_events/)).not.toEqual([])
  })

  it('names only metrics that /metrics serves', () => {
    expect(unknownNames(rules.map((r) => r.expr))).toEqual([])
  })
})

describe('deploy/monitoring/grafana-dashboard.json', () => {
  const dashboard = JSON.parse(read('deploy/monitoring/grafana-dashboard.json'))
  const exprs: string[] = dashboard.panels.flatMap((p: { targets: { expr: string }[] }) =>
    p.targets.map((t) => t.expr),
  )

  it('has panels with queries, and names only metrics that /metrics serves', () => {
    expect(dashboard.panels.length).toBeGreaterThan(5)
    expect(exprs.every((e) => e.length > 0)).toBe(true)
    const variables = dashboard.templating.list.map((v: { definition?: string }) => v.definition ?? '')
    expect(unknownNames([...exprs, ...variables])).toEqual([])
  })

  it('shows every family of sidelog metrics somewhere', () => {
    const shown = new Set(exprs.flatMap((e) => e.match(METRIC_NAME) ?? []))
    const bigquery = [...families.keys()].filter((n) => n.startsWith('sidelog_bigquery_'))
    const missing = [...families.keys()].filter(
      (n) =>
        !bigquery.includes(n) &&
        n !== 'sidelog_accepting' &&
        ![...shown].some((s) => s === n || s.startsWith(`${n}_`)),
    )
    expect(missing).toEqual([])
  })
})

describe('README, Monitoring', () => {
  const readme = read('README.md')
  const section = readme.slice(
    readme.indexOf('## Monitoring'),
    readme.indexOf('\n## ', readme.indexOf('## Monitoring') + 1),
  )

  it('lists every sidelog metric with its type, and no metric the code lacks', () => {
    expect(section.length).toBeGreaterThan(100)
    for (const [name, type] of families)
      expect(section).toMatch(new RegExp(`\\| \`${name}\` \\| ${type} \\|`))
    const listed = new Set(section.match(/\bsidelog_[a-z0-9_]+\b/g) ?? [])
    expect([...listed].filter((name) => !served.has(name))).toEqual([])
  })

  it('names every alert of the kit', () => {
    const groups: { rules: Rule[] }[] = parse(read('deploy/monitoring/alerts.yaml')).groups
    for (const rule of groups.flatMap((g) => g.rules)) expect(section).toContain(`\`${rule.alert}\``)
  })
})
