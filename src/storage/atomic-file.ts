// Whole-file writes that a reader never sees half done: temp file, fsync, rename. A failed write removes its temp
// file, and the temp files a crash left behind are removed when a root is opened, so a full disk cannot fill up with
// them. File-system errors are classified here: the ones no retry can fix become PermanentError.
import { randomBytes } from 'node:crypto'
import { type FileHandle, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join, parse, relative, resolve, sep } from 'node:path'
import { PermanentError } from '../errors.js'
import { ReusedBuffers } from '../reused-buffers.js'
import { FileWorker } from './file-worker.js'
import { fsyncDir } from './fsync.js'

/** File-system errors that no retry can fix: the path or its permissions are wrong. */
const PERMANENT_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG', 'EINVAL'])

/** Where a root keeps its temp files: one place to clean at start-up, outside the tree readers list. */
export const TEMP_DIR = '.tmp'

/** Buffers a root with a writer thread keeps to lend it (see writeFrom). */
const LENT_BUFFERS_KEPT = 4

export function classifyFsError(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code && PERMANENT_CODES.has(code))
    return new PermanentError(`${code}: ${(err as Error).message}`, { cause: err })
  return err
}

/**
 * mkdir -p that names the real cause: a recursive mkdir reports ENOENT when a missing parent cannot be created (a
 * read-only file system, no permission), which reads as "try again". On ENOENT each missing level is made in turn,
 * so the error is the one that level gives (EROFS, EACCES, ...).
 */
export async function makeDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    const absolute = resolve(dir)
    const { root } = parse(absolute)
    let path = root
    for (const part of relative(root, absolute).split(sep)) {
      path = join(path, part)
      try {
        await mkdir(path)
      } catch (levelErr) {
        if ((levelErr as NodeJS.ErrnoException).code !== 'EEXIST') throw levelErr
      }
    }
  }
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
      await makeDir(dir)
      ready = dir
    },
    forget(dir) {
      if (dir === ready) ready = ''
    },
  }
}

export interface AtomicWriteOptions {
  /** If it aborts before the rename, nothing is published. */
  readonly signal?: AbortSignal
  readonly dirs?: DirCache
  /** Where the temp file goes (same file system as `path`); beside `path` by default. */
  readonly tempDir?: string
}

/** A temp name of its own for one attempt at `path`, in `dir`: two attempts at the same path never share one. */
function tempPathFor(path: string, dir: string): string {
  return join(dir, `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`)
}

/**
 * Writes `data` to `path` atomically and durably. Each call uses its own temp name, so two attempts at the same
 * path never interleave; renaming onto an existing file with the same content is harmless, which makes a retried
 * batch land once. Whatever fails, the temp file is removed.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Buffer,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const dir = dirname(path)
  const dirs = options.dirs ?? createDirCache()
  await dirs.ensure(dir)
  const temp = tempPathFor(path, options.tempDir ?? dir)
  let handle: FileHandle
  try {
    handle = await open(temp, 'wx')
  } catch (err) {
    // The directory may have been removed behind our back: make it again on the next attempt.
    dirs.forget(dir)
    throw err
  }
  try {
    try {
      await handle.writeFile(data)
      await handle.sync()
    } finally {
      await handle.close()
    }
    options.signal?.throwIfAborted()
    await rename(temp, path)
  } catch (err) {
    await unlink(temp).catch(() => {})
    // The directory may have been removed behind our back: make it again on the next attempt.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') dirs.forget(dir)
    throw err
  }
  // The rename is durable only once the directory is: without this a power loss could take back a file whose
  // delivery was already journaled as done.
  await fsyncDir(dir)
}

/** Atomic writes under one root directory, with their temp files in `<root>/.tmp`. */
export interface AtomicRoot {
  readonly root: string
  write(path: string, data: string | Buffer, options?: { signal?: AbortSignal }): Promise<void>
  /**
   * Writes what `fill` puts into a Buffer of at least `bytes` (it returns the part of it that it filled, or a Buffer
   * of its own), called before the first await. With a writer thread the Buffer is one of the root's, lent to
   * the thread and reused once it is back, instead of a new one per file.
   */
  writeFrom(
    path: string,
    bytes: number,
    fill: (target: Buffer) => Buffer,
    options?: { signal?: AbortSignal },
  ): Promise<void>
  /** Lets go of the writer thread, if it has one. */
  close(): Promise<void>
}

export interface AtomicRootOptions {
  /**
   * Each write done by a worker thread in one go (file-worker.ts) instead of six steps on the event loop: for a
   * sink that writes a file per batch at full load. `data` must then be a Buffer the caller no longer needs.
   */
  readonly offThread?: boolean
}

/**
 * Opens `root` for atomic writes: makes it and its temp directory, and removes the temp files an earlier process left
 * (one sidelog per root). Throws what mkdir throws, for the caller to turn into a start-up error.
 */
export async function openAtomicRoot(root: string, rootOptions: AtomicRootOptions = {}): Promise<AtomicRoot> {
  const absolute = resolve(root)
  const tempDir = join(absolute, TEMP_DIR)
  await makeDir(tempDir)
  await removeStaleTemp(tempDir)
  const dirs = createDirCache()
  const worker = rootOptions.offThread ? new FileWorker() : undefined
  // As many as a sink writes at once by default (SINK_CONCURRENCY): the thread writes them one after another.
  const lendable = worker ? new ReusedBuffers(LENT_BUFFERS_KEPT) : undefined
  /** `send` hands the file to the thread, given its temp path and directory. */
  const writeOffThread = async (path: string, send: (temp: string, dir: string) => Promise<void>) => {
    const dir = dirname(path)
    await dirs.ensure(dir)
    try {
      await send(tempPathFor(path, tempDir), dir)
    } catch (err) {
      // The directory may have been removed behind our back: make it again on the next attempt.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') dirs.forget(dir)
      throw err
    }
  }
  const write = async (
    path: string,
    data: string | Buffer,
    options: { signal?: AbortSignal },
    lent?: Buffer,
  ) => {
    try {
      if (worker && lent) {
        let handed = false
        try {
          await writeOffThread(path, (temp, dir) => {
            const sent = worker.writeLent(
              temp,
              path,
              dir,
              lent.buffer as ArrayBuffer,
              (data as Buffer).byteOffset,
              data.length,
              (back) => lendable?.giveBack(Buffer.from(back)),
              options.signal,
            )
            handed = true
            return sent
          })
        } finally {
          if (!handed) lendable?.giveBack(lent)
        }
      } else if (worker && typeof data !== 'string') {
        await writeOffThread(path, (temp, dir) => worker.write(temp, path, dir, data, options.signal))
      } else await writeFileAtomic(path, data, { ...options, dirs, tempDir })
    } catch (err) {
      // The temp directory itself may be gone (removed by hand): make it again for the next attempt.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') await makeDir(tempDir).catch(() => {})
      throw err
    }
  }
  return {
    root: absolute,
    close: async () => worker?.close(),
    write: (path, data, options = {}) => write(path, data, options),
    async writeFrom(path, bytes, fill, options = {}) {
      if (!lendable) return write(path, fill(Buffer.allocUnsafe(bytes)), options)
      const target = lendable.take(bytes)
      let data: Buffer
      try {
        data = fill(target)
      } catch (err) {
        lendable.giveBack(target)
        throw err
      }
      // Any view of the target is lent with it (never given back while the write may still read it).
      if (data.buffer === target.buffer) return write(path, data, options, target)
      lendable.giveBack(target)
      return write(path, data, options)
    },
  }
}

async function removeStaleTemp(tempDir: string): Promise<void> {
  for (const name of await readdir(tempDir)) {
    const path = join(tempDir, name)
    if ((await stat(path).catch(() => undefined))?.isFile()) await rm(path, { force: true })
  }
}

/** Removes the temp files `writeFileAtomic` leaves beside `path` when a crash stops it between open and rename. */
export async function removeStaleTempBeside(path: string): Promise<void> {
  const prefix = `.${basename(path)}.`
  const entries = await readdir(dirname(path)).catch(() => [] as string[])
  for (const name of entries) {
    if (name.startsWith(prefix) && name.endsWith('.tmp')) await rm(join(dirname(path), name), { force: true })
  }
}
