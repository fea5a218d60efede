// Reads lines from the files TAIL_PATHS matches and hands them to the pipeline, one chunk at a time: a chunk's
// offset is checkpointed only once accept() resolved (with a spool: once on disk). Files are known by device and
// inode; a fingerprint of the first line tells a reused inode from the same file, and finds the copy that a
// copy-truncate rotation left, so that the lines not yet read when the original was truncated are read from it.
import { createHash } from 'node:crypto'
import { type FSWatcher, watch } from 'node:fs'
import { type FileHandle, open, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import type { Logger } from 'pino'
import sjson from 'secure-json-parse'
import { glob } from 'tinyglobby'
import { InputError, QueueFullError, ShuttingDownError, SpoolWriteError } from '../../errors.js'
import type { LogEvent } from '../../event.js'
import type { Enricher } from '../../pipeline/enrich.js'
import type { CheckpointStore, RetiredFingerprint } from './checkpoints.js'

/** Longest fingerprint: the first line, or this many bytes of a longer one. */
const FINGERPRINT_BYTES = 256
/** Truncated files remembered, for a copy that turns up later. */
const MAX_RETIRED = 64
/** When the buffers are full: how long to wait before offering the chunk again. */
const FULL_RETRY_MS = 50
const SAFE_PARSE = { protoAction: 'error', constructorAction: 'error' } as const
const NEWLINE = 0x0a

export interface TailerOptions {
  readonly patterns: readonly string[]
  readonly maxLineBytes: number
  readonly pollIntervalMs: number
  readonly rotateWaitMs: number
  /** Lines and raw bytes offered to the pipeline in one accept(). */
  readonly chunkLines: number
  readonly chunkBytes: number
  readonly checkpoints: CheckpointStore
  readonly accept: (events: readonly LogEvent[]) => Promise<void> | undefined
  readonly enrich: Enricher
  readonly logger: Logger
}

export interface TailStats {
  files: number
  lines: number
  bytes: number
  truncated_lines: number
  dropped_lines: number
  truncated_files: number
  waits_for_room: number
}

interface TrackedFile {
  readonly key: string
  path: string
  readonly handle: FileHandle
  /** Undefined while the first line is incomplete (a new file, or one just truncated): nothing is read until then. */
  fingerprint: Buffer | undefined
  /** Every line before this byte was accepted. */
  offset: number
  /** Prefix of the event ids of this file's lines: stable across restarts, so a re-read line keeps its id. */
  idPrefix: string
  /** A copy of this (intact) file: not read until the original is truncated or gone, then read from its offset. */
  shadowOf?: string
  /** When the file stopped matching TAIL_PATHS (renamed away or deleted). */
  goneSince?: number
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

/** Cuts UTF-8 at most `max` bytes long without splitting a character. */
function cutUtf8(bytes: Buffer, max: number): string {
  let end = max
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--
  return bytes.subarray(0, end).toString('utf8')
}

/** The directory a pattern's matches live under: its path up to the first segment with a glob character. */
function baseDirOf(pattern: string): string {
  const segments = resolve(pattern).split('/')
  const wild = segments.findIndex((s) => /[*?[\]{}]/.test(s))
  return wild === -1 ? dirname(segments.join('/')) : segments.slice(0, wild).join('/') || '/'
}

export class Tailer {
  private readonly files = new Map<string, TrackedFile>()
  private retired: RetiredFingerprint[] = []
  /** Checkpoints loaded at start-up, until the first scan has matched them to files. */
  private saved = new Map<string, { fingerprint: Buffer; offset: number }>()
  private readonly watchers = new Map<string, FSWatcher>()
  private readonly stopping = new AbortController()
  private wake: (() => void) | undefined
  private running: Promise<void> | undefined
  private lastScan = 0
  private readonly counters: Omit<TailStats, 'files'> = {
    lines: 0,
    bytes: 0,
    truncated_lines: 0,
    dropped_lines: 0,
    truncated_files: 0,
    waits_for_room: 0,
  }

  constructor(private readonly options: TailerOptions) {}

  /** Loads the checkpoints and starts reading; a checkpoint file it cannot use throws (a start-up error). */
  async load(): Promise<void> {
    const state = await this.options.checkpoints.load()
    this.saved = new Map(state.files.map((f) => [f.key, { fingerprint: f.fingerprint, offset: f.offset }]))
    this.retired = [...state.retired]
  }

  start(): void {
    this.running ??= this.run()
  }

  /** Stops after the chunk in flight: if it was accepted, its checkpoint is written before this resolves. */
  async close(): Promise<void> {
    this.stopping.abort()
    this.wake?.()
    await this.running
    for (const watcher of this.watchers.values()) watcher.close()
    this.watchers.clear()
    await Promise.all([...this.files.values()].map((f) => f.handle.close().catch(() => {})))
    this.files.clear()
  }

  stats(): TailStats {
    return { files: this.files.size, ...this.counters }
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        if (Date.now() - this.lastScan >= this.options.pollIntervalMs) {
          await this.scan()
          this.lastScan = Date.now()
        }
        let progressed = false
        for (const file of [...this.files.values()]) {
          if (this.stopped) break
          try {
            if (await this.pump(file)) progressed = true
          } catch (err) {
            this.options.logger.error({ err, path: file.path }, 'tail: read failed; trying again')
          }
        }
        if (!progressed) await this.idle()
      } catch (err) {
        this.options.logger.error({ err }, 'tail: looking for files failed; trying again')
        await this.idle()
      }
    }
  }

  /** Until the next poll, a file-system event in a watched directory, or close(). */
  private idle(): Promise<void> {
    if (this.stopped) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.options.pollIntervalMs)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
  }

  private watchDir(dir: string): void {
    if (this.watchers.has(dir)) return
    try {
      const watcher = watch(dir, { persistent: false }, () => this.wake?.())
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
  private async scan(): Promise<void> {
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
      if (!seen.has(key)) this.retire(saved.fingerprint, saved.offset)
    }
    const fresh = [...seen].filter(([key]) => !this.files.has(key))
    // Checkpointed files before new ones, so that a new file can be recognised as a copy of one.
    fresh.sort(([a], [b]) => Number(this.saved.has(b)) - Number(this.saved.has(a)))
    for (const [key, path] of fresh) await this.discover(key, path)
    this.saved.clear()

    for (const file of [...this.files.values()]) {
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
        this.counters.truncated_files++
        this.retire(saved.fingerprint, saved.offset)
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
    } else {
      // Rewritten since the checkpoint, or another file on a reused inode: the old content may live on in a copy.
      if (saved) {
        this.counters.truncated_files++
        this.retire(saved.fingerprint, saved.offset)
      }
      const original = [...this.files.values()].find(
        (f) => f.shadowOf === undefined && f.fingerprint?.equals(fingerprint),
      )
      if (original) file.shadowOf = original.key
      else {
        const retired = this.retired.findLast((r) => r.fingerprint.equals(fingerprint))
        if (retired) file.offset = retired.offset
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

  private retire(fingerprint: Buffer, offset: number): void {
    this.retired.push({ fingerprint, offset })
    if (this.retired.length > MAX_RETIRED) this.retired.splice(0, this.retired.length - MAX_RETIRED)
  }

  /** The copies waiting on `original` go on from where it stopped. */
  private release(original: TrackedFile): void {
    for (const file of this.files.values()) {
      if (file.shadowOf !== original.key) continue
      file.shadowOf = undefined
      file.offset = original.offset
    }
  }

  /**
   * Whether the file still holds what was read from it. If it was truncated or rewritten (its first line differs),
   * what was not read yet lives on only in a copy, if anywhere: the copies waiting on it, or one found later by its
   * fingerprint, go on from its offset; the file itself is read again from its start.
   */
  private async checkIntact(file: TrackedFile): Promise<boolean> {
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
    this.counters.truncated_files++
    this.options.logger.info({ path: file.path, offset: file.offset, size }, 'tail: file was truncated')
    if (file.shadowOf === undefined) {
      this.retire(file.fingerprint, file.offset)
      this.release(file)
    }
    file.shadowOf = undefined
    file.offset = 0
    file.fingerprint = await readFingerprint(file.handle, size)
    file.idPrefix = idPrefixOf(file.key, file.fingerprint)
    return false
  }

  /** Reads, accepts and checkpoints one chunk of complete lines; false when there was nothing to do. */
  private async pump(file: TrackedFile): Promise<boolean> {
    if (file.shadowOf !== undefined) return false
    if (!(await this.checkIntact(file))) return file.fingerprint !== undefined
    const { size } = await file.handle.stat()
    const from = file.offset
    if (size <= from) return false
    const { chunkBytes, chunkLines, maxLineBytes } = this.options
    const length = Math.min(Math.max(chunkBytes, maxLineBytes + 1), size - file.offset)
    const buffer = Buffer.allocUnsafe(length)
    const { bytesRead } = await file.handle.read(buffer, 0, length, file.offset)
    // Truncated between the check and the read: those bytes may be the new content at an old offset.
    if (!(await this.checkIntact(file))) return true

    const receivedAt = new Date().toISOString()
    const events: LogEvent[] = []
    const ends: number[] = []
    let start = 0
    let consumed = 0
    while (start < bytesRead && events.length < chunkLines) {
      let newline = buffer.indexOf(NEWLINE, start)
      if (newline >= bytesRead) newline = -1
      let end = newline
      if (newline === -1) {
        // An unfinished last line waits for its newline, unless it is already too long to keep whole.
        if (start > 0 || bytesRead - start <= maxLineBytes) break
        const found = await this.findNewline(file, file.offset + bytesRead)
        if (found === undefined) break
        end = bytesRead
        newline = found - file.offset
      }
      let line = buffer.subarray(start, end)
      const truncated = line.length > maxLineBytes || newline >= bytesRead
      if (line.at(-1) === 0x0d) line = line.subarray(0, -1)
      if (truncated) this.counters.truncated_lines++
      const lineOffset = file.offset + start
      const text = truncated ? cutUtf8(line, maxLineBytes) : line.toString('utf8')
      if (text.trim() !== '') {
        const event = this.toEvent(file, text, lineOffset, truncated, receivedAt)
        if (event) {
          events.push(event)
          ends.push(file.offset + newline + 1)
        }
      }
      start = newline + 1
      consumed = file.offset + newline + 1
    }
    if (consumed === 0) return false
    if (!(await this.offer(file, events, ends))) return false
    this.counters.bytes += consumed - from
    file.offset = consumed
    await this.saveCheckpoint()
    return true
  }

  /** The offset of the next newline at or after `from`, or undefined when the file ends first. */
  private async findNewline(file: TrackedFile, from: number): Promise<number | undefined> {
    const buffer = Buffer.allocUnsafe(64 * 1024)
    for (let position = from; ; ) {
      const { bytesRead } = await file.handle.read(buffer, 0, buffer.length, position)
      if (bytesRead === 0) return undefined
      const newline = buffer.subarray(0, bytesRead).indexOf(NEWLINE)
      if (newline >= 0) return position + newline
      position += bytesRead
    }
  }

  /** A JSON object line as it is, any other line as `{ message }`; undefined (counted) if it cannot be an entry. */
  private toEvent(
    file: TrackedFile,
    text: string,
    offset: number,
    truncated: boolean,
    receivedAt: string,
  ): LogEvent | undefined {
    let entry: Record<string, unknown> | undefined
    if (!truncated && text.trimStart().startsWith('{')) {
      try {
        const value: unknown = sjson.parse(text, undefined, SAFE_PARSE)
        if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
          entry = value as Record<string, unknown>
        }
      } catch {
        // Not JSON after all: kept as a message.
      }
    }
    const plain = () => ({ message: text, ...(truncated ? { truncated: true } : {}) })
    entry ??= plain()
    const addSource = (e: Record<string, unknown>) => {
      if (!Object.hasOwn(e, 'event_id')) e.event_id = `${file.idPrefix}-${offset}`
      if (!Object.hasOwn(e, 'log.file.path')) e['log.file.path'] = file.path
      return e
    }
    try {
      return this.options.enrich(addSource(entry), receivedAt, {})
    } catch (err) {
      if (!(err instanceof InputError)) throw err
      try {
        // A JSON line sidelog cannot take as it is (a bad event_id, too deep) is kept as text.
        return this.options.enrich(addSource({ ...plain(), tail_error: err.message }), receivedAt, {})
      } catch {
        this.counters.dropped_lines++
        this.options.logger.warn({ path: file.path, offset, err }, 'tail: line dropped')
        return undefined
      }
    }
  }

  /**
   * Offers the chunk until it is taken: waits while the buffers (or the spool) are full, and splits it if it is
   * larger than a buffer. Only what was taken moves the offset. False if sidelog is shutting down.
   */
  private async offer(file: TrackedFile, events: LogEvent[], ends: number[]): Promise<boolean> {
    let size = Math.max(1, events.length)
    for (let taken = 0; taken < events.length; ) {
      if (this.stopped) return false
      const part = events.slice(taken, taken + size)
      try {
        await this.options.accept(part)
      } catch (err) {
        if (err instanceof ShuttingDownError) return false
        if (err instanceof QueueFullError) {
          this.counters.waits_for_room++
          await delay(FULL_RETRY_MS, undefined, { signal: this.stopping.signal }).catch(() => {})
          continue
        }
        if (err instanceof InputError && err.code === 'REQUEST_TOO_LARGE' && size > 1) {
          size = Math.ceil(size / 2)
          continue
        }
        // Taken, though not made durable: sending it again would duplicate it.
        if (!(err instanceof SpoolWriteError)) throw err
        this.options.logger.error({ err, path: file.path }, 'tail: lines taken without reaching the spool')
      }
      taken += part.length
      this.counters.lines += part.length
      if (taken < events.length) {
        file.offset = ends[taken - 1] as number
        await this.saveCheckpoint()
      }
    }
    return true
  }

  private async saveCheckpoint(): Promise<void> {
    const files = [...this.files.values()].flatMap((f) =>
      f.shadowOf === undefined && f.fingerprint !== undefined
        ? [{ key: f.key, fingerprint: f.fingerprint, offset: f.offset, path: f.path }]
        : [],
    )
    await this.options.checkpoints.save({ files, retired: this.retired })
  }
}
