// Low-level durable writes: fsync for directories, and writes that never take a short write for a whole one (also
// synchronously, to a pipe such as stderr). A file
// created or renamed into a directory survives a power loss only once the directory itself is synced.
import { writeSync } from 'node:fs'
import { type FileHandle, open } from 'node:fs/promises'

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Writes all of `data` at the file's current position. One write() may write less than asked (a disk that fills up
 * says so only on the next call), and taking a short write for a whole one would leave a torn record behind.
 */
export async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset)
    if (bytesWritten === 0) throw new Error(`write made no progress at byte ${offset} of ${data.length}`)
    offset += bytesWritten
  }
}

/** A cell to sleep on with Atomics.wait: the one way to wait synchronously without spinning. */
const sleeper = new Int32Array(new SharedArrayBuffer(4))

/**
 * Writes all of `data` to `fd` synchronously, for the moments the event loop may not run again. stderr under a
 * container runtime is a non-blocking pipe: when it is full a write answers EAGAIN, and this waits 1 ms for the
 * reader and goes on (sonic-boom, pino's writer, waits 100 ms, which caps it at a pipe's 64 KiB per 100 ms). Throws
 * if no byte could be written for `stallMs` (nobody reads the pipe).
 */
export function writeAllSync(fd: number, data: Buffer, stallMs = 5000): void {
  let offset = 0
  let stalledSince: number | undefined
  while (offset < data.length) {
    try {
      offset += writeSync(fd, data, offset, data.length - offset)
      stalledSince = undefined
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
      stalledSince ??= Date.now()
      if (Date.now() - stalledSince > stallMs) {
        throw new Error(`write made no progress for ${stallMs} ms at byte ${offset} of ${data.length}`)
      }
      Atomics.wait(sleeper, 0, 0, 1)
    }
  }
}
