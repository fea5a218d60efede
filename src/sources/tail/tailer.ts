// The tail input's loop: it looks for files (tailed-files.ts) every TAIL_POLL_INTERVAL or when a watched directory
// changes, and hands each file's new lines (lines.ts) to the pipeline one chunk at a time. A chunk's offset is
// checkpointed only once accept() resolved (with a spool: once on disk), so a restart loses no line; with a spool,
// a chunk's range is checkpointed as pending before it goes to the spool, so a restart after a crash in between
// finds its lines there and does not take them twice.
import type { Logger } from 'pino'
import { sleep } from '../../delivery/timing.js'
import { InputError, QueueFullError, ShuttingDownError, SpoolWriteError } from '../../errors.js'
import type { LogEvent } from '../../event.js'
import type { Enricher } from '../../pipeline/enrich.js'
import type { CheckpointStore } from './checkpoints.js'
import { chunkOf, type LineOptions } from './lines.js'
import { TailedFiles, type TrackedFile } from './tailed-files.js'

/** When the buffers are full: how long to wait before offering the chunk again. */
const FULL_RETRY_MS = 50

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
  /** The disk spool accept() writes to, if any: a chunk and its checkpoint are then one step across a crash. */
  readonly spool?: TailSpool
}

/** What the tail needs of the disk spool (spool/index.ts). */
export interface TailSpool {
  /** The number the next entry appended gets. */
  readonly next: number
  /** How many entries of each event id the log holds from `seq` on. */
  idsFrom(seq: number): Promise<Map<string, number>>
}

export interface TailStats {
  files: number
  lines: number
  bytes: number
  truncated_lines: number
  dropped_lines: number
  truncated_files: number
  waits_for_room: number
  /** Lines read again after a crash and found in the spool already: not taken twice. */
  already_spooled: number
}

export class Tailer {
  private readonly files: TailedFiles
  private readonly lines: LineOptions
  private readonly stopping = new AbortController()
  private wake: (() => void) | undefined
  private running: Promise<void> | undefined
  private lastScan = 0
  /** After a restart: the entries the last run appended from a pending chunk's number on, by id. */
  private readonly spooledSince = new Map<number, Map<string, number>>()
  private readonly counters = {
    already_spooled: 0,
    lines: 0,
    bytes: 0,
    truncated_lines: 0,
    dropped_lines: 0,
    waits_for_room: 0,
  }

  constructor(private readonly options: TailerOptions) {
    const { patterns, rotateWaitMs, maxLineBytes, chunkLines, enrich, logger } = options
    this.files = new TailedFiles({ patterns, rotateWaitMs, logger, onChange: () => this.wake?.() })
    this.lines = { maxLineBytes, chunkLines, enrich, logger, counters: this.counters }
  }

  /** Loads the checkpoints and starts reading; a checkpoint file it cannot use throws (a start-up error). */
  async load(): Promise<void> {
    this.files.restore(await this.options.checkpoints.load())
  }

  start(): void {
    this.running ??= this.run()
  }

  /** Stops after the chunk in flight: if it was accepted, its checkpoint is written before this resolves. */
  async close(): Promise<void> {
    this.stopping.abort()
    this.wake?.()
    await this.running
    await this.files.close()
  }

  stats(): TailStats {
    const { lines, bytes, truncated_lines, dropped_lines, waits_for_room, already_spooled } = this.counters
    return {
      files: this.files.size,
      lines,
      bytes,
      truncated_lines,
      dropped_lines,
      truncated_files: this.files.truncated,
      waits_for_room,
      already_spooled,
    }
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        if (Date.now() - this.lastScan >= this.options.pollIntervalMs) {
          await this.files.scan()
          this.lastScan = Date.now()
        }
        let progressed = false
        for (const file of this.files.list()) {
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
  private async idle(): Promise<void> {
    if (this.stopped) return
    const woken = new AbortController()
    this.wake = () => woken.abort()
    await sleep(this.options.pollIntervalMs, woken.signal)
  }

  /** Reads, accepts and checkpoints one chunk of complete lines; false when there was nothing to do. */
  private async pump(file: TrackedFile): Promise<boolean> {
    if (file.shadowOf !== undefined) return false
    if (!(await this.files.checkIntact(file))) return file.fingerprint !== undefined
    const { size } = await file.handle.stat()
    const from = file.offset
    if (size <= from) return false
    const { chunkBytes, maxLineBytes } = this.options
    const length = Math.min(Math.max(chunkBytes, maxLineBytes + 1), size - file.offset)
    const buffer = Buffer.allocUnsafe(length)
    const { bytesRead } = await file.handle.read(buffer, 0, length, file.offset)
    // Truncated between the check and the read: those bytes may be the new content at an old offset.
    if (!(await this.files.checkIntact(file))) return true
    const chunk = await chunkOf(file, buffer, bytesRead, this.lines)
    const { consumed } = chunk
    if (consumed === 0) return false
    const { events, ends } = await this.notInSpool(file, chunk.events, chunk.ends)
    const { spool } = this.options
    if (spool && events.length > 0) {
      // Where a restart must look for these lines should the process die after the spool took them and before the
      // checkpoint below: the entries from this number on (merged with a range still being looked for).
      const pending = file.pending
      file.pending = {
        to: Math.max(pending?.to ?? 0, consumed),
        afterSeq: Math.min(pending?.afterSeq ?? spool.next, spool.next),
        ...(pending?.idPrefixes ? { idPrefixes: pending.idPrefixes } : {}),
      }
      await this.saveCheckpoint()
    }
    if (!(await this.offer(file, events, ends))) return false
    this.counters.bytes += consumed - from
    file.offset = consumed
    if (file.pending && consumed >= file.pending.to) file.pending = undefined
    await this.saveCheckpoint()
    return true
  }

  /**
   * The chunk without the lines the spool took already: after a crash between a chunk reaching the spool and its
   * checkpoint, the restart reads those lines again, with the same ids (file identity and offset, or the app's own),
   * and finds them among the entries appended from the pending chunk's number on. Each entry found accounts for
   * one line, so a line repeated in the file is taken as often as it was not taken yet.
   */
  private async notInSpool(
    file: TrackedFile,
    events: LogEvent[],
    ends: number[],
  ): Promise<{ events: LogEvent[]; ends: number[] }> {
    const { pending } = file
    const { spool } = this.options
    if (!pending || !spool) return { events, ends }
    let spooled = this.spooledSince.get(pending.afterSeq)
    if (!spooled) {
      spooled = await spool.idsFrom(pending.afterSeq)
      this.spooledSince.set(pending.afterSeq, spooled)
    }
    const kept: LogEvent[] = []
    const keptEnds: number[] = []
    // A copy's lines were taken under the original's ids: the same offset after another file's prefix.
    const own = `${file.idPrefix}-`
    const namesOf = (id: string) =>
      id.startsWith(own)
        ? [id, ...(pending.idPrefixes ?? []).map((prefix) => `${prefix}-${id.slice(own.length)}`)]
        : [id]
    for (const [i, event] of events.entries()) {
      const end = ends[i] as number
      const found = end <= pending.to ? namesOf(event.id).find((id) => (spooled.get(id) ?? 0) > 0) : undefined
      if (found !== undefined) {
        spooled.set(found, (spooled.get(found) ?? 0) - 1)
        this.counters.already_spooled++
      } else {
        kept.push(event)
        keptEnds.push(end)
      }
    }
    return { events: kept, ends: keptEnds }
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
          await sleep(FULL_RETRY_MS, this.stopping.signal)
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
    await this.options.checkpoints.save(this.files.checkpoint())
  }
}
