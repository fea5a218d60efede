// Low-level durable writes: fsync for directories, and writes that never take a short write for a whole one. A file
// created or renamed into a directory survives a power loss only once the directory itself is synced.
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
