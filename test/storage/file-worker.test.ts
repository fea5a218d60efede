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

  it('writes the first `length` bytes of lent memory and gives it back, written, failed or aborted', async () => {
    const dir = await tempDir()
    const w = worker()
    const lend = () => {
      const bytes = new ArrayBuffer(64 * 1024)
      Buffer.from(bytes).fill('q')
      return bytes
    }
    const back: ArrayBuffer[] = []
    const give = (bytes: ArrayBuffer) => back.push(bytes)

    const written = lend()
    await w.writeLent(join(dir, '.l.tmp'), join(dir, 'l.jsonl'), dir, written, 0, 1000, give)
    // Handed over, not copied; back whole, and the file holds only the length asked for.
    expect(written.byteLength).toBe(0)
    expect(back.map((b) => b.byteLength)).toEqual([64 * 1024])
    expect(await readFile(join(dir, 'l.jsonl'), 'utf8')).toBe('q'.repeat(1000))

    await writeFile(join(dir, 'not-a-dir'), '')
    const failed = w.writeLent(
      join(dir, '.f.tmp'),
      join(dir, 'not-a-dir', 'f'),
      join(dir, 'not-a-dir'),
      lend(),
      0,
      10,
      give,
    )
    await expect(failed).rejects.toMatchObject({ code: 'ENOTDIR' })
    expect(back).toHaveLength(2)

    const controller = new AbortController()
    const big = new ArrayBuffer(8 * 1024 ** 2)
    const aborted = w.writeLent(
      join(dir, '.a.tmp'),
      join(dir, 'a'),
      dir,
      big,
      0,
      big.byteLength,
      give,
      controller.signal,
    )
    controller.abort(new Error('attempt timed out'))
    await expect(aborted).rejects.toThrow('attempt timed out')
    expect(back.map((b) => b.byteLength)).toEqual([64 * 1024, 64 * 1024, 8 * 1024 ** 2])

    // Aborted before: nothing is lent, the caller keeps its memory.
    const kept = lend()
    expect(() =>
      w.writeLent(join(dir, '.k.tmp'), join(dir, 'k'), dir, kept, 0, 10, give, controller.signal),
    ).toThrow('attempt timed out')
    expect(kept.byteLength).toBe(64 * 1024)

    // From an offset: those bytes only.
    const offset = lend()
    Buffer.from(offset).write('from here', 100)
    await w.writeLent(join(dir, '.o.tmp'), join(dir, 'o.jsonl'), dir, offset, 100, 9, give)
    expect(await readFile(join(dir, 'o.jsonl'), 'utf8')).toBe('from here')
    expect((await readdir(dir)).sort()).toEqual(['l.jsonl', 'not-a-dir', 'o.jsonl'])
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

  /** A fill that writes `text` at the start of its target and a marker past it; returns what it filled. */
  const filling = (text: string, seen: Buffer[]) => (target: Buffer) => {
    seen.push(target)
    const end = target.write(text)
    target.write(`marker ${text}`, 100 * text.length)
    return target.subarray(0, end)
  }

  it('lends its own Buffers to the thread for writeFrom, and reuses one once its file is written', async () => {
    const root = await tempDir()
    const files = await openAtomicRoot(root, { offThread: true })
    const targets: Buffer[] = []
    await files.writeFrom(join(root, 'a.jsonl'), 10, filling('first\n', targets))
    // Lent, not copied: this side's view of it is gone.
    expect(targets[0]?.buffer.byteLength).toBe(0)
    let found = ''
    await files.writeFrom(join(root, 'b.jsonl'), 10, (target) => {
      // The same memory again: the first fill's marker is still where it wrote it.
      found = target.toString('utf8', 600, 600 + 'marker first'.length)
      return filling('second\n', targets)(target)
    })
    expect(found).toBe('marker first')
    expect(targets[1]?.buffer.byteLength).toBe(0)
    expect(await readFile(join(root, 'a.jsonl'), 'utf8')).toBe('first\n')
    expect(await readFile(join(root, 'b.jsonl'), 'utf8')).toBe('second\n')
    await files.close()
  })

  it('lends a view of its Buffer that starts past 0 too, so no other write can take the Buffer meanwhile', async () => {
    const root = await tempDir()
    const files = await openAtomicRoot(root, { offThread: true })
    // Both start at once: had the first Buffer gone back to the pool while its view waited to be written, the
    // second would have taken it and written its own bytes over the first file's (an adversarial review's case).
    await Promise.all([
      files.writeFrom(join(root, 'a.jsonl'), 10, (target) => {
        target.write('xxaaaa\n')
        return target.subarray(2, 7)
      }),
      files.writeFrom(join(root, 'b.jsonl'), 10, (target) => target.subarray(0, target.write('bbbbbbb\n'))),
    ])
    expect(await readFile(join(root, 'a.jsonl'), 'utf8')).toBe('aaaa\n')
    expect(await readFile(join(root, 'b.jsonl'), 'utf8')).toBe('bbbbbbb\n')
    await files.close()
  })

  it('never lends one Buffer to two writes at once, and takes back one that was not lent', async () => {
    const root = await tempDir()
    const files = await openAtomicRoot(root, { offThread: true })
    const targets: Buffer[] = []
    // Two at once: two Buffers, each file its own text.
    await Promise.all([
      files.writeFrom(join(root, 'x.jsonl'), 10, filling('x\n', targets)),
      files.writeFrom(join(root, 'y.jsonl'), 10, filling('y\n', targets)),
    ])
    expect(await readFile(join(root, 'x.jsonl'), 'utf8')).toBe('x\n')
    expect(await readFile(join(root, 'y.jsonl'), 'utf8')).toBe('y\n')
    // A fill that throws, a fill that returns a Buffer of its own, and an attempt aborted before it starts: none of
    // them lends the Buffer, which the next write gets.
    await expect(
      files.writeFrom(join(root, 't.jsonl'), 10, (target) => {
        targets.push(target)
        throw new Error('fill failed')
      }),
    ).rejects.toThrow('fill failed')
    const ownText = 'own\n'.repeat(2000)
    const own = Buffer.from(ownText)
    await files.writeFrom(join(root, 'o.jsonl'), 10, (target) => {
      targets.push(target)
      return own
    })
    const controller = new AbortController()
    controller.abort(new Error('given up'))
    await expect(
      files.writeFrom(join(root, 'p.jsonl'), 10, filling('p\n', targets), { signal: controller.signal }),
    ).rejects.toThrow('given up')
    await files.writeFrom(join(root, 'q.jsonl'), 10, filling('q\n', targets))
    const [x, y, thrown, ownFill, abortedFill, last] = targets
    // (Compared with ===: a detached Buffer cannot be printed.)
    expect(x === y).toBe(false)
    expect(ownFill === thrown && abortedFill === thrown).toBe(true)
    // Lent at last, and written.
    expect(last === thrown).toBe(true)
    expect(last?.buffer.byteLength).toBe(0)
    expect(await readFile(join(root, 'o.jsonl'), 'utf8')).toBe(ownText)
    expect(await readFile(join(root, 'q.jsonl'), 'utf8')).toBe('q\n')
    expect((await readdir(root)).sort()).toEqual(['.tmp', 'o.jsonl', 'q.jsonl', 'x.jsonl', 'y.jsonl'])
    await files.close()
  })
})
