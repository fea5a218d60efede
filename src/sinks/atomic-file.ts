// Whole-file writes that a reader never sees half done: temp file, fsync, rename.
import { randomBytes } from 'node:crypto'
import { mkdir, open, rename, unlink } from 'node:fs/promises'
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

/**
 * Writes `data` to `path` atomically and durably. Each call uses its own temp name, so two attempts at the same
 * path never interleave; renaming onto an existing file with the same content is harmless, which makes a retried
 * batch land once. If `signal` aborts before the rename, nothing is published.
 */
export async function writeFileAtomic(path: string, data: string, signal?: AbortSignal): Promise<void> {
  const dir = dirname(path)
  await mkdir(dir, { recursive: true })
  const temp = join(dir, `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`)
  const handle = await open(temp, 'wx')
  try {
    await handle.writeFile(data)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    signal?.throwIfAborted()
    await rename(temp, path)
  } catch (err) {
    await unlink(temp).catch(() => {})
    throw err
  }
}
