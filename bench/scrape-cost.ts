// npm run bench:scrape: what one GET /metrics costs sidelog, in CPU time. Starts the built sidelog (with SPOOL_DIR,
// so that every family is there), sends it traffic so that the counters and the histogram have values, then, once
// idle, measures the process's CPU time (utime + stime from /proc) over BENCH_SCRAPES sequential scrapes (default
// 1000) against the same wall time without them. Scraping every second costs that share of one core.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { postNdjson, spawnSidelog } from '../test/e2e/spawn.js'

const SCRAPES = Number(process.env.BENCH_SCRAPES ?? 1000)
/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ, 100 on Linux). */
const TICKS_PER_S = 100

async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S
}

const dir = await mkdtemp(join(tmpdir(), 'sidelog-scrape-'))
const sidelog = await spawnSidelog({
  DATA_DIR: join(dir, 'data'),
  DEAD_LETTER_DIR: join(dir, 'dead-letter'),
  SPOOL_DIR: join(dir, 'spool'),
  SINKS: 'file,stdout',
  FLUSH_INTERVAL: '0.1',
})
try {
  const pid = sidelog.child.pid as number
  const entries = Array.from({ length: 100 }, (_, i) => ({ message: `entry ${i}`, level: 'info' }))
  for (let i = 0; i < 50; i++) await postNdjson(sidelog.url, entries)
  await new Promise((resolve) => setTimeout(resolve, 1000))

  const first = await cpuSeconds(pid)
  const startedAt = performance.now()
  let bytes = 0
  for (let i = 0; i < SCRAPES; i++) bytes += (await (await fetch(`${sidelog.url}/metrics`)).text()).length
  const wallS = (performance.now() - startedAt) / 1000
  const scraping = (await cpuSeconds(pid)) - first

  // The same wall time idle: what the process spends anyway (timers, GC).
  const idleFrom = await cpuSeconds(pid)
  await new Promise((resolve) => setTimeout(resolve, wallS * 1000))
  const idle = (await cpuSeconds(pid)) - idleFrom

  const perScrapeMs = ((scraping - idle) / SCRAPES) * 1000
  console.log(
    `${SCRAPES} scrapes of ${Math.round(bytes / SCRAPES / 1024)} KiB in ${wallS.toFixed(1)} s: sidelog used ` +
      `${scraping.toFixed(2)} s of CPU (${idle.toFixed(2)} s idle over the same time), ` +
      `${perScrapeMs.toFixed(2)} ms per scrape: one scrape a second costs ${(perScrapeMs / 10).toFixed(2)}% of a core`,
  )
} finally {
  sidelog.child.kill('SIGTERM')
  await sidelog.exited
  await rm(dir, { recursive: true, force: true })
}
