// Shared test helpers: configuration, a silent logger, temporary directories, and readers for JSONL trees.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach } from 'vitest'
import { type Config, loadConfig } from '../src/config.js'
import { createLogEvent, type LogEvent } from '../src/event.js'

export const silentLogger = pino({ level: 'silent' })

const tempDirs: string[] = []
afterEach(async () => {
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })))
})

/** A fresh directory removed after the current test. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sidelog-test-'))
  tempDirs.push(dir)
  return dir
}

/** A validated configuration: the defaults, with data under `dir`, and the given settings as env strings. */
export function testConfig(dir: string, env: Record<string, string> = {}): Config {
  return loadConfig({ DATA_DIR: join(dir, 'data'), DEAD_LETTER_DIR: join(dir, 'dead-letter'), ...env })
}

/** Every file below `dir`, recursively, skipping temp files. */
export async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries
    .filter((e) => e.isFile() && !e.name.startsWith('.'))
    .map((e) => join(e.parentPath, e.name))
    .sort()
}

/** Every JSON line of every file below `dir`, parsed. */
export async function readJsonlTree(dir: string): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = []
  for (const file of await listFiles(dir)) {
    for (const line of (await readFile(file, 'utf8')).split('\n')) {
      if (line !== '') rows.push(JSON.parse(line))
    }
  }
  return rows
}

export function makeEvents(count: number, prefix = 'e', payloadBytes = 10): LogEvent[] {
  return Array.from({ length: count }, (_, i) => {
    const id = `${prefix}${i}`
    return createLogEvent(id, JSON.stringify({ event_id: id, pad: 'x'.repeat(payloadBytes) }))
  })
}
