// The set of files the tail input reads, and what rotation does to it. Files are known by device and inode; a
// fingerprint of the first line tells a reused inode from the same file, and finds the copy that a copy-truncate
// rotation left, so that the lines not yet read when the original was truncated are read from it. A file that left
// TAIL_PATHS (renamed away or deleted) is read to its end, then let go after TAIL_ROTATE_WAIT.
import { createHash } from 'node:crypto'
import { type FSWatcher, watch } from 'node:fs'
import { type FileHandle, open, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import type { Logger } from 'pino'
import { glob } from 'tinyglobby'
import type { CheckpointState, PendingChunk, RetiredFingerprint } from './checkpoints.js'

/** Longest fingerprint: the first line, or this many bytes of a longer one. */
const FINGERPRINT_BYTES = 256
/** Truncated files remembered, for a copy that turns up later. */
const MAX_RETIRED = 64
const NEWLINE = 0x0a

export interface TrackedFile {
  readonly key: string
  path: string
  readonly handle: FileHandle
  /** Undefined while the first line is incomplete (a new file, or one just truncated): nothing is read until then. */
  fingerprint: Buffer | undefined
  /** Every line before this byte was accepted. */
  offset: number
  /** Lines after `offset` that may already be in the spool (a chunk whose checkpoint may not have followed it). */
  pending?: PendingChunk
  /** Prefix of the event ids of this file's lines: stable across restarts, so a re-read line keeps its id. */
  idPrefix: string
  /** A copy of this (intact) file: not read until the original is truncated or gone, then read from its offset. */
  shadowOf?: string
  /** When the file stopped matching TAIL_PATHS (renamed away or deleted). */
  goneSince?: number
}

export interface TailedFilesOptions {
  readonly patterns: readonly string[]
  readonly rotateWaitMs: number
  readonly logger: Logger
  /** Called on any file-system event in a watched directory: time to look again. */
  readonly onChange: () => void
}

/** A pending chunk handed from a file to a copy of it: the copy's lines may be in the spool under `idPrefix`'s ids. */
function withPrefix(pending: PendingChunk | undefined, idPrefix: string): PendingChunk | undefined {
  if (!pending) return undefined
  return { ...pending, idPrefixes: [...new Set([...(pending.idPrefixes ?? []), idPrefix])] }
}

/** The first line (with its newline), or the first FINGERPRINT_BYTES bytes; undefined while neither is complete. */
async function readFingerprint(handle: FileHandle, size: number): Promise<Buffer | undefined> {
  const length = Math.min(size, FINGERPRINT_BYTES)
  if (length === 0) return undefined
  const buffer = Buffer.alloc(length)
  const { bytesRead } = await handle.read(buffer, 0, length, 0)
  const newline = buffer.subarray(0, bytesRead).indexOf(NEWLINE)
  if (newline >= 0) return Buffer.from(buffer.subarray(0, newline + 1))
  return bytesRead === FINGERPRINT_BYTES ? buffer : undefined
}

function idPrefixOf(key: string, fingerprint: Buffer | undefined): string {
  const hash = createHash('sha256')
    .update(key)
    .update(fingerprint ?? '')
  return `tail-${hash.digest('hex').slice(0, 16)}`
}

/** The directory a pattern's matches live under: its path up to the first segment with a glob character. */
function baseDirOf(pattern: string): string {
  const segments = resolve(pattern).split('/')
  const wild = segments.findIndex((s) => /[*?[\]{}]/.test(s))
  return wild === -1 ? dirname(segments.join('/')) : segments.slice(0, wild).join('/') || '/'
}

export class TailedFiles {
  private readonly files = new Map<string, TrackedFile>()
  private retired: RetiredFingerprint[] = []
  /** Checkpoints loaded at start-up, until the first scan has matched them to files. */
  private saved = new Map<
    string,
    { fingerprint: Buffer; offset: number; pending?: PendingChunk | undefined; idPrefix: string }
  >()
  private readonly watchers = new Map<string, FSWatcher>()
  /** Files found truncated or rewritten in place. */
  truncated = 0

  constructor(private readonly options: TailedFilesOptions) {}

  /** Takes the last run's checkpoints; the first scan matches them to the files it finds. */
  restore(state: CheckpointState): void {
    this.saved = new Map(
      state.files.map((f) => [
        f.key,
        {
          fingerprint: f.fingerprint,
          offset: f.offset,
          pending: f.pending,
          idPrefix: idPrefixOf(f.key, f.fingerprint),
        },
      ]),
    )
    this.retired = [...state.retired]
  }

  get size(): number {
    return this.files.size
  }

  /** The files, in the order they were found; a copy, so a scan may change the set while the caller goes through it. */
  list(): TrackedFile[] {
    return [...this.files.values()]
  }

  /** What a restart needs: the offset of every file being read (copies that wait are not), and the retired ones. */
  checkpoint(): CheckpointState {
    const files = this.list().flatMap((f) =>
      f.shadowOf === undefined && f.fingerprint !== undefined
        ? [
            {
              key: f.key,
              fingerprint: f.fingerprint,
              offset: f.offset,
              path: f.path,
              ...(f.pending ? { pending: f.pending } : {}),
            },
          ]
        : [],
    )
    return { files, retired: this.retired }
  }

  async close(): Promise<void> {
    for (const watcher of this.watchers.values()) watcher.close()
    this.watchers.clear()
    await Promise.all(this.list().map((f) => f.handle.close().catch(() => {})))
    this.files.clear()
  }

  private watchDir(dir: string): void {
    if (this.watchers.has(dir)) return
    try {
      const watcher = watch(dir, { persistent: false }, () => this.options.onChange())
      watcher.on('error', () => {
        watcher.close()
        this.watchers.delete(dir)
      })
      this.watchers.set(dir, watcher)
    } catch {
      // A directory that does not exist yet is polled; it is watched once it does.
    }
  }

  /** Finds new, renamed, truncated and vanished files. */
  async scan(): Promise<void> {
    const { patterns, rotateWaitMs } = this.options
    for (const pattern of patterns) this.watchDir(baseDirOf(pattern))
    const paths = (await glob([...patterns], { absolute: true, onlyFiles: true, dot: true })).sort()
    const seen = new Map<string, string>()
    for (const path of paths) {
      try {
        const st = await stat(path)
        const key = `${st.dev}:${st.ino}`
        if (!seen.has(key)) seen.set(key, path)
        this.watchDir(dirname(path))
      } catch {
        // Gone between the listing and the stat: the next scan sees what replaced it.
      }
    }
    const now = Date.now()
    // Known files first: a truncation found here is retired before the new files are matched against it.
    for (const file of this.files.values()) {
      const path = seen.get(file.key)
      if (path === undefined) file.goneSince ??= now
      else {
        file.path = path
        file.goneSince = undefined
      }
      await this.checkIntact(file)
    }
    // The first scan after start-up: checkpoints of files no longer there may live on in a copy.
    for (const [key, saved] of this.saved) {
      if (!seen.has(key))
        this.retire(saved.fingerprint, saved.offset, withPrefix(saved.pending, saved.idPrefix))
    }
    const fresh = [...seen].filter(([key]) => !this.files.has(key))
    // Checkpointed files before new ones, so that a new file can be recognised as a copy of one.
    fresh.sort(([a], [b]) => Number(this.saved.has(b)) - Number(this.saved.has(a)))
    for (const [key, path] of fresh) await this.discover(key, path)
    this.saved.clear()

    for (const file of this.list()) {
      if (file.goneSince === undefined || now - file.goneSince < rotateWaitMs) continue
      const size = (await file.handle.stat()).size
      if (file.shadowOf === undefined && file.fingerprint !== undefined && size > file.offset) continue
      this.release(file)
      this.files.delete(file.key)
      await file.handle.close().catch(() => {})
      this.options.logger.info({ path: file.path }, 'tail: file left TAIL_PATHS and is read to its end')
    }
  }

  private async discover(key: string, path: string): Promise<void> {
    let handle: FileHandle
    try {
      handle = await open(path, 'r')
    } catch {
      return
    }
    const st = await handle.stat()
    // Renamed between the stat and the open: the next scan finds it under its new name.
    if (`${st.dev}:${st.ino}` !== key) return void (await handle.close())
    const fingerprint = await readFingerprint(handle, st.size)
    const saved = this.saved.get(key)
    this.saved.delete(key)
    if (fingerprint === undefined) {
      // Emptied since the checkpoint (copy-truncate): what was not read yet may live on in a copy.
      if (saved) {
        this.truncated++
        this.retire(saved.fingerprint, saved.offset, withPrefix(saved.pending, saved.idPrefix))
      }
      return void (await handle.close())
    }
    const file: TrackedFile = {
      key,
      path,
      handle,
      fingerprint,
      offset: 0,
      idPrefix: idPrefixOf(key, fingerprint),
    }
    if (saved?.fingerprint.equals(fingerprint)) {
      file.offset = saved.offset
      if (saved.pending) file.pending = saved.pending
    } else {
      // Rewritten since the checkpoint, or another file on a reused inode: the old content may live on in a copy.
      if (saved) {
        this.truncated++
        this.retire(saved.fingerprint, saved.offset, withPrefix(saved.pending, saved.idPrefix))
      }
      const original = this.list().find((f) => f.shadowOf === undefined && f.fingerprint?.equals(fingerprint))
      if (original) file.shadowOf = original.key
      else {
        const retired = this.retired.findLast((r) => r.fingerprint.equals(fingerprint))
        if (retired) {
          file.offset = retired.offset
          if (retired.pending) file.pending = retired.pending
        }
      }
    }
    this.files.set(key, file)
    this.options.logger.info(
      {
        path,
        offset: file.offset,
        ...(file.shadowOf ? { copy_of: this.files.get(file.shadowOf)?.path } : {}),
      },
      file.shadowOf ? 'tail: found a copy of a file being read; it waits' : 'tail: reading file',
    )
  }

  private retire(fingerprint: Buffer, offset: number, pending?: PendingChunk): void {
    this.retired.push({ fingerprint, offset, ...(pending ? { pending } : {}) })
    if (this.retired.length > MAX_RETIRED) this.retired.splice(0, this.retired.length - MAX_RETIRED)
  }

  /** The copies waiting on `original` go on from where it stopped. */
  private release(original: TrackedFile): void {
    for (const file of this.files.values()) {
      if (file.shadowOf !== original.key) continue
      file.shadowOf = undefined
      file.offset = original.offset
      const pending = withPrefix(original.pending, original.idPrefix)
      if (pending) file.pending = pending
    }
  }

  /**
   * Whether the file still holds what was read from it. If it was truncated or rewritten (its first line differs),
   * what was not read yet lives on only in a copy, if anywhere: the copies waiting on it, or one found later by its
   * fingerprint, go on from its offset; the file itself is read again from its start.
   */
  async checkIntact(file: TrackedFile): Promise<boolean> {
    const { size } = await file.handle.stat()
    if (file.fingerprint === undefined) {
      file.fingerprint = await readFingerprint(file.handle, size)
      file.idPrefix = idPrefixOf(file.key, file.fingerprint)
      return file.fingerprint !== undefined
    }
    const length = file.fingerprint.length
    if (size >= file.offset && size >= length) {
      const head = Buffer.alloc(length)
      await file.handle.read(head, 0, length, 0)
      if (head.equals(file.fingerprint)) return true
    }
    this.truncated++
    this.options.logger.info({ path: file.path, offset: file.offset, size }, 'tail: file was truncated')
    if (file.shadowOf === undefined) {
      this.retire(file.fingerprint, file.offset, withPrefix(file.pending, file.idPrefix))
      this.release(file)
    }
    file.pending = undefined
    file.shadowOf = undefined
    file.offset = 0
    file.fingerprint = await readFingerprint(file.handle, size)
    file.idPrefix = idPrefixOf(file.key, file.fingerprint)
    return false
  }
}
