// The file sink's writer thread: a file lands whole and durable, a failure leaves no temp file and keeps its code,
// and an attempt aborted while the thread writes publishes nothing.
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { PermanentError } from '../../src/errors.js'
import { classifyFsError, openAtomicRoot } from '../../src/storage/atomic-file.js'
import { FileWorker } from '../../src/storage/file-worker.js'
import { tempDir } from '../helpers.js'

const workers: FileWorker[] = []
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.close()))
})

function worker(): FileWorker {
  const w = new FileWorker()
  workers.push(w)
  return w
}

/** A Buffer of its own (not a slice of Node's pool), as a batch's is. */
const big = (text: string, times: number) => Buffer.from(text.repeat(times))

describe('FileWorker', () => {
  it('writes a file whole under its name, with no temp file left', async () => {
    const dir = await tempDir()
    const data = big('{"a":1}\n', 200_000)
    const expected = data.toString()
    await worker().write(join(dir, '.x.tmp'), join(dir, 'x.jsonl'), dir, data)
    expect(await readFile(join(dir, 'x.jsonl'), 'utf8')).toBe(expected)
    expect(await readdir(dir)).toEqual(['x.jsonl'])
  })

  it('copies a small Buffer from the shared pool instead of taking it away', async () => {
    const dir = await tempDir()
    const small = Buffer.from('{"small":true}\n')
    const neighbour = Buffer.from('a neighbour in the same pool')
    await worker().write(join(dir, '.s.tmp'), join(dir, 's.jsonl'), dir, small)
    expect(small.toString()).toBe('{"small":true}\n')
    expect(neighbour.toString()).toBe('a neighbour in the same pool')
    expect(await readFile(join(dir, 's.jsonl'), 'utf8')).toBe('{"small":true}\n')
  })

  it('keeps the error code of a failure, which classifyFsError reads, and leaves no temp file', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'not-a-dir'), '')
    const err = await worker()
      .write(join(dir, '.y.tmp'), join(dir, 'not-a-dir', 'y.jsonl'), join(dir, 'not-a-dir'), big('x', 10_000))
      .catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'ENOTDIR' })
    expect(classifyFsError(err)).toBeInstanceOf(PermanentError)
    expect((await readdir(dir)).sort()).toEqual(['not-a-dir'])
  })

  it('publishes nothing for an attempt aborted while the thread writes it', async () => {
    const dir = await tempDir()
    const controller = new AbortController()
    // 8 MiB: the thread is still writing and syncing when the abort, right after the hand-over, sets its flag.
    const writing = worker().write(
      join(dir, '.z.tmp'),
      join(dir, 'z.jsonl'),
      dir,
      big('z', 8 * 1024 ** 2),
      controller.signal,
    )
    controller.abort(new Error('attempt timed out'))
    await expect(writing).rejects.toThrow('attempt timed out')
    expect(await readdir(dir)).toEqual([])
  })

  it('lands a retried batch once: a second write of the same name replaces it with the same bytes', async () => {
    const dir = await tempDir()
    const w = worker()
    await w.write(join(dir, '.r1.tmp'), join(dir, 'r.jsonl'), dir, big('r\n', 5000))
    await w.write(join(dir, '.r2.tmp'), join(dir, 'r.jsonl'), dir, big('r\n', 5000))
    expect(await readdir(dir)).toEqual(['r.jsonl'])
    expect((await readFile(join(dir, 'r.jsonl'), 'utf8')).length).toBe(10_000)
  })
})

describe('an atomic root written off the event loop', () => {
  it('makes the day directory, writes through the thread, and a string still goes the ordinary way', async () => {
    const root = await tempDir()
    const files = await openAtomicRoot(join(root, 'data'), { offThread: true })
    await files.write(join(root, 'data', 'logs', '2026', 'b.jsonl'), big('b\n', 3000))
    await files.write(join(root, 'data', 'logs', '2026', 'c.jsonl'), 'c\n')
    expect((await readdir(join(root, 'data', 'logs', '2026'))).sort()).toEqual(['b.jsonl', 'c.jsonl'])
    expect(await readdir(join(root, 'data', '.tmp'))).toEqual([])
    await files.close()
  })
})
