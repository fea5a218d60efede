// Readers for trees of JSONL files (sink output, dead letters), used by tests and the benchmark alike.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'

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

/**
 * How many JSON lines the files below `dir` hold, and how many distinct `event_id` values: each line parsed (a cut
 * or damaged one throws), only its id kept. For outputs too large to hold parsed: the bench's, millions of entries.
 */
export async function countJsonlTree(dir: string): Promise<{ entries: number; ids: number }> {
  const ids = new Set<unknown>()
  let entries = 0
  for (const file of await listFiles(dir)) {
    for (const line of (await readFile(file, 'utf8')).split('\n')) {
      if (line === '') continue
      entries++
      ids.add((JSON.parse(line) as { event_id?: unknown }).event_id)
    }
  }
  return { entries, ids: ids.size }
}
