// Reads a V8 CPU profile (node --cpu-prof) and says where the time went: the share of samples by function (self
// time), with garbage collection, idle time and the program's own code named. The bench prints this per scenario
// with BENCH_CPU_PROF; run it alone as `node --import tsx bench/profile.ts FILE.cpuprofile [TOP] [FILTER]`, where
// FILTER (a regular expression on file:line, e.g. dist/) lists total time with callees instead of self time.
import { readFile } from 'node:fs/promises'
import { basename } from 'node:path'

interface ProfileNode {
  readonly id: number
  readonly callFrame: { functionName: string; url: string; lineNumber: number }
  readonly children?: readonly number[]
}
interface Profile {
  readonly nodes: readonly ProfileNode[]
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
}

export interface ProfileLine {
  readonly function: string
  readonly where: string
  readonly 'self %': number
}

/** The `top` functions by self time, as a share of the busy (non-idle) samples, and the idle share. */
export async function summariseProfile(
  path: string,
  top = 15,
): Promise<{ idle: number; lines: ProfileLine[] }> {
  const profile = JSON.parse(await readFile(path, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const selfUs = new Map<string, number>()
  let idleUs = 0
  let totalUs = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i] as number)
    const us = profile.timeDeltas[i] ?? 0
    if (!node) continue
    totalUs += us
    const { functionName, url, lineNumber } = node.callFrame
    if (functionName === '(idle)') {
      idleUs += us
      continue
    }
    const where = url ? `${shorten(url)}:${lineNumber + 1}` : ''
    const key = `${functionName || '(anonymous)'}\t${where}`
    selfUs.set(key, (selfUs.get(key) ?? 0) + us)
  }
  const busyUs = totalUs - idleUs || 1
  const lines = [...selfUs.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, us]) => {
      const [name, where] = key.split('\t') as [string, string]
      return { function: name, where, 'self %': Math.round((us / busyUs) * 1000) / 10 }
    })
  return { idle: Math.round((idleUs / (totalUs || 1)) * 1000) / 10, lines }
}

function shorten(url: string): string {
  const nodeModules = url.lastIndexOf('node_modules/')
  if (nodeModules !== -1) return url.slice(nodeModules + 'node_modules/'.length)
  const dist = url.lastIndexOf('/dist/')
  if (dist !== -1) return url.slice(dist + 1)
  return url.startsWith('node:') ? url : basename(url)
}

/** Total (inclusive) time of the functions whose location matches `filter`, as a share of the busy samples. */
export async function inclusiveTimes(path: string, filter: RegExp, top = 25): Promise<ProfileLine[]> {
  const profile = JSON.parse(await readFile(path, 'utf8')) as Profile
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const total = new Map<string, number>()
  let busyUs = 0
  for (let i = 0; i < profile.samples.length; i++) {
    let id: number | undefined = profile.samples[i] as number
    const us = profile.timeDeltas[i] ?? 0
    if (byId.get(id)?.callFrame.functionName === '(idle)') continue
    busyUs += us
    const seen = new Set<string>()
    for (; id !== undefined; id = parent.get(id)) {
      const { functionName, url, lineNumber } = (byId.get(id) as ProfileNode).callFrame
      const where = url ? `${shorten(url)}:${lineNumber + 1}` : ''
      if (!filter.test(where)) continue
      const key = `${functionName || '(anonymous)'}\t${where}`
      if (seen.has(key)) continue
      seen.add(key)
      total.set(key, (total.get(key) ?? 0) + us)
    }
  }
  return [...total.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, us]) => {
      const [name, where] = key.split('\t') as [string, string]
      return { function: name, where, 'self %': Math.round((us / (busyUs || 1)) * 1000) / 10 }
    })
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [path, top, filter] = process.argv.slice(2)
  if (!path) throw new Error('usage: bench/profile.ts FILE.cpuprofile [TOP] [INCLUSIVE_FILTER]')
  if (filter) {
    console.log(
      `${path}: total time (with callees) of functions in ${filter}, as a share of the busy samples:`,
    )
    console.table(await inclusiveTimes(path, new RegExp(filter), Number(top ?? 25)))
  } else {
    const { idle, lines } = await summariseProfile(path, Number(top ?? 25))
    console.log(`${path}: idle ${idle}% of samples; self time as a share of the busy samples:`)
    console.table(lines)
  }
}
