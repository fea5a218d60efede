// The real process tailing a file that an app writes 100,000 lines to while it is rotated by rename and by
// copy-truncate, several times each, and sidelog is restarted once (SIGTERM) mid-way: every line delivered once.
import { copyFile, type FileHandle, mkdir, open, readdir, readFile, rename, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { describe, expect, it, vi } from 'vitest'
import { CHECKPOINT_FILE } from '../../src/sources/tail/index.js'
import { listFiles, readJsonlTree, tempDir } from '../helpers.js'
import { type SidelogProcess, spawnSidelog } from './spawn.js'

const TOTAL = 100_000
const BATCH = 250
const ROTATE_EVERY = 12_500
const RESTART_AT = 50_000

/** Half the lines are JSON (an app's logger), half plain text (a library printing); each carries its id. */
function line(id: number): string {
  return id % 2 === 0
    ? `${JSON.stringify({ id, level: 'info', msg: `order ${id} paid`, amount: id % 997 })}\n`
    : `plain line id=${id} from a library\n`
}

function idOf(row: Record<string, unknown>): number {
  if (typeof row.id === 'number') return row.id
  const match = /^plain line id=(\d+) /.exec(String(row.message))
  if (!match) throw new Error(`a row that no line wrote: ${JSON.stringify(row)}`)
  return Number(match[1])
}

/** Every file in `logs` has a checkpoint that reached its end: every line written was accepted. */
async function allAccepted(logs: string, checkpointPath: string): Promise<boolean> {
  let saved: { files: { key: string; offset: number }[] }
  try {
    saved = JSON.parse(await readFile(checkpointPath, 'utf8'))
  } catch {
    return false
  }
  const offsets = new Map(saved.files.map((f) => [f.key, f.offset]))
  for (const name of await readdir(logs)) {
    const st = await stat(join(logs, name))
    if (offsets.get(`${st.dev}:${st.ino}`) !== st.size) return false
  }
  return true
}

describe('sidelog process with the tail input', () => {
  it('delivers 100,000 lines exactly once through rename and copy-truncate rotations and a restart', {
    timeout: 240_000,
  }, async () => {
    const dir = await tempDir()
    const logs = join(dir, 'logs')
    await mkdir(logs)
    const app = join(logs, 'app.log')
    const env = {
      SINKS: 'file',
      TAIL_PATHS: `${logs}/app.log*`,
      SPOOL_DIR: join(dir, 'spool'),
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
      FLUSH_INTERVAL: '0.5',
      BATCH_SIZE: '1000',
    }
    let sidelog: SidelogProcess = await spawnSidelog(env)
    let restart: Promise<void> | undefined
    let rotations = { rename: 0, copyTruncate: 0 }

    // The app: one open file, appended to in batches, as a logger with a file handle does.
    let handle: FileHandle = await open(app, 'a')
    for (let written = 0; written < TOTAL; written += BATCH) {
      let text = ''
      for (let id = written; id < written + BATCH; id++) text += line(id)
      await handle.write(text)
      const next = written + BATCH
      if (next % ROTATE_EVERY === 0 && next < TOTAL) {
        const k = rotations.rename + rotations.copyTruncate + 1
        if ((next / ROTATE_EVERY) % 2 === 1) {
          // logrotate's default: rename; the app writes on to the old file until it reopens its log.
          await rename(app, `${app}.${k}`)
          written += BATCH
          let late = ''
          for (let id = next; id < next + BATCH; id++) late += line(id)
          await handle.write(late)
          await handle.close()
          handle = await open(app, 'a')
          rotations = { ...rotations, rename: rotations.rename + 1 }
        } else {
          // copytruncate: the app keeps its handle (O_APPEND writes go to the new end).
          await copyFile(app, `${app}.${k}`)
          await handle.truncate(0)
          rotations = { ...rotations, copyTruncate: rotations.copyTruncate + 1 }
        }
      }
      if (next === RESTART_AT) {
        const stopping = sidelog
        restart = (async () => {
          stopping.child.kill('SIGTERM')
          expect(await stopping.exited).toEqual({ code: 0, signal: null })
          sidelog = await spawnSidelog(env)
        })()
      }
      // An app's pace (at most about 50,000 lines a second), so that sidelog reads while it writes.
      await delay(5)
    }
    await handle.close()
    await restart
    expect(rotations.rename).toBeGreaterThanOrEqual(3)
    expect(rotations.copyTruncate).toBeGreaterThanOrEqual(3)

    await vi.waitFor(
      async () => expect(await allAccepted(logs, join(dir, 'spool', CHECKPOINT_FILE))).toBe(true),
      { timeout: 180_000, interval: 250 },
    )
    const health = (await (await fetch(`${sidelog.url}/health`)).json()) as {
      sources: { tail: Record<string, number> }
    }
    expect(health.sources.tail).toMatchObject({ truncated_lines: 0, dropped_lines: 0 })
    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })

    // Copy-truncate rotations were met: their fingerprints were kept for the copies.
    const saved = JSON.parse(await readFile(join(dir, 'spool', CHECKPOINT_FILE), 'utf8'))
    expect(saved.retired.length).toBeGreaterThan(0)

    const rows = await readJsonlTree(join(dir, 'data'))
    const seen = new Map<number, number>()
    for (const row of rows) seen.set(idOf(row), (seen.get(idOf(row)) ?? 0) + 1)
    const missing = Array.from({ length: TOTAL }, (_, id) => id).filter((id) => !seen.has(id))
    const repeated = [...seen].filter(([, count]) => count > 1).map(([id]) => id)
    expect({ missing: missing.slice(0, 20), repeated: repeated.slice(0, 20) }).toEqual({
      missing: [],
      repeated: [],
    })
    expect(rows).toHaveLength(TOTAL)
    expect(new Set(rows.map((r) => r.event_id)).size).toBe(TOTAL)
    expect(await listFiles(join(dir, 'dead-letter'))).toEqual([])
  })
})
