// Whole-file writes that a reader never sees half done: temp file, fsync, rename.
import { randomBytes } from 'node:crypto'
import { type FileHandle, mkdir, open, rename, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { PermanentError } from '../errors.js'

/** File-system errors that no retry can fix: the path or its permissions are wrong. */
const PERMANENT_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG', 'EINVAL'])

export function classifyFsError(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code && PERMANENT_CODES.has(code))
    return new PermanentError(`${code}: ${(err as Error).message}`, { cause: err })
  return err
}

/** Remembers the directory made last, so that a busy sink writing into one day's directory skips the mkdir. */
export interface DirCache {
  ensure(dir: string): Promise<void>
  forget(dir: string): void
}

export function createDirCache(): DirCache {
  let ready = ''
  return {
    async ensure(dir) {
      if (dir === ready) return
      await mkdir(dir, { recursive: true })
      ready = dir
    },
    forget(dir) {
      if (dir === ready) ready = ''
    },
  }
}

/**
 * Writes `data` to `path` atomically and durably. Each call uses its own temp name, so two attempts at the same
 * path never interleave; renaming onto an existing file with the same content is harmless, which makes a retried
 * batch land once. If `signal` aborts before the rename, nothing is published. Pass a long-lived `dirs` to skip repeated mkdirs.
 */
export async function writeFileAtomic(
  path: string,
  data: string,
  options: { signal?: AbortSignal; dirs?: DirCache } = {},
): Promise<void> {
  const dir = dirname(path)
  const dirs = options.dirs ?? createDirCache()
  await dirs.ensure(dir)
  const temp = join(dir, `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`)
  let handle: FileHandle
  try {
    handle = await open(temp, 'wx')
  } catch (err) {
    // The directory may have been removed behind our back: make it again on the next attempt.
    dirs.forget(dir)
    throw err
  }
  try {
    await handle.writeFile(data)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    options.signal?.throwIfAborted()
    await rename(temp, path)
  } catch (err) {
    await unlink(temp).catch(() => {})
    throw err
  }
}

/**
 * Makes a directory's entries durable: a file created or renamed into it survives a power loss only once the
 * directory itself is synced. For the spool's segments and journals, whose whole point is surviving one.
 */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
