// What a process allocates, collected objects included: a preload that samples every allocation from start to
// SIGTERM (V8's sampling heap profiler with includeObjectsCollectedByMinorGC/MajorGC, which `node --heap-prof` does
// not set), then prints the functions that allocated most and writes the profile next to ALLOC_PROF_OUT.
//   ALLOC_PROF_OUT=/tmp/alloc.heapprofile node --import ./bench/alloc-profile.mjs dist/main.js
// Drive it (e.g. autocannon with the bench's 100-entry NDJSON body), stop it with SIGTERM (it exits once the profile
// is written, without sidelog's drain), and divide the total by the requests answered. Plain JavaScript so that it
// preloads without a loader.
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'

const OUT = process.env.ALLOC_PROF_OUT ?? 'alloc.heapprofile'
const TOP = 15

const session = new Session()
session.connect()
const post = (method, params) =>
  new Promise((resolve, reject) =>
    session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))),
  )
await post('HeapProfiler.enable')
await post('HeapProfiler.startSampling', {
  samplingInterval: 16384,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true,
})

/** Bytes sampled per function (self), and the total. */
function summarise(profile) {
  const bySite = new Map()
  let total = 0
  const walk = (node) => {
    const { functionName, url, lineNumber } = node.callFrame
    const site = `${functionName || '(anonymous)'} ${url.replace(/.*\/(dist|node_modules)\//, '$1/')}:${lineNumber + 1}`
    bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize)
    total += node.selfSize
    for (const child of node.children) walk(child)
  }
  walk(profile.head)
  return { total, top: [...bySite].sort((a, b) => b[1] - a[1]).slice(0, TOP) }
}

process.once('SIGTERM', async () => {
  const { profile } = await post('HeapProfiler.stopSampling')
  writeFileSync(OUT, JSON.stringify(profile))
  const { total, top } = summarise(profile)
  process.stderr.write(`allocated ${(total / 1e6).toFixed(1)} MB in all (profile in ${OUT}):\n`)
  for (const [site, bytes] of top) {
    process.stderr.write(`${((100 * bytes) / total).toFixed(1).padStart(5)}%  ${site}\n`)
  }
  process.exit(0)
})
