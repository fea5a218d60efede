// Where a pipeline's lanes get their entries: the contract, and the input without a spool (entries go straight into
// every lane's batcher, all or none). The spool's input is in spool-input.ts; the pipeline holds one or the other
// and never asks which.
import { QueueFullError } from '../errors.js'
import type { EventRun, LogEvent } from '../event.js'
import type { Lane, LaneJournal } from './lane.js'

export interface LaneInput {
  /** The lanes it feeds, once they exist (each lane's journal comes from the input, so the input comes first). */
  attach(lanes: readonly Lane[]): void
  /**
   * Takes every event of one request for every lane, or throws (QueueFullError) and takes none. The promise, if
   * any, resolves once the entries are as durable as the input makes them: only then may the request be answered.
   */
  accept(events: readonly LogEvent[] | EventRun, count: number, bytes: number): Promise<void> | undefined
  /** Throws QueueFullError when a request would be refused anyway: lets a source refuse before reading a body. */
  assertNotSaturated(): void
  /** Whether assertNotSaturated would throw, without making the error: a request that waits, or goes another way. */
  isSaturated(): boolean
  /** Throws QueueFullError unless `entries` more could be taken now (bytes are checked again by accept). */
  assertRoomFor(entries: number): void
  /** What the input records of a lane's batches, if it records anything. */
  journal(lane: string): LaneJournal | undefined
  /** A batch of `lane` finished: there is room again. */
  onRoom(lane: Lane): void
  /** Entries waiting for `lane` outside its batcher (on disk). */
  backlog(lane: Lane): number
  /** For a drain: hands `lane` its whole backlog until `deadline` aborts. */
  catchUp(lane: Lane, deadline: AbortSignal): Promise<void>
  /** At the deadline, whether what no write has started stays with the input (true) or is dead-lettered. */
  readonly keepsUnsent: boolean
  /** The input's own trouble (a failed spool write), until it passes: /health is degraded meanwhile. */
  readonly problem: { message: string; at: string } | undefined
}

export function fullError(lane: Lane, retryAfterMs: number): QueueFullError {
  const { batcher } = lane
  return new QueueFullError(
    `the buffer of sink "${lane.name}" is full (${batcher.bufferedEvents} entries, ${batcher.bufferedBytes} bytes held); retry later`,
    retryAfterMs,
  )
}

/** Without a spool: the lanes' batchers are the buffer, and a request needs room in every one of them. */
export class MemoryInput implements LaneInput {
  readonly keepsUnsent = false
  readonly problem = undefined

  private lanes: readonly Lane[] = []

  constructor(private readonly retryAfterMs: number) {}

  attach(lanes: readonly Lane[]): void {
    this.lanes = lanes
  }

  accept(events: readonly LogEvent[] | EventRun, count: number, bytes: number): undefined {
    // Checked for every lane before any is offered, synchronously: no other request interleaves.
    for (const lane of this.lanes) {
      if (!lane.batcher.hasRoomFor(count, bytes)) throw fullError(lane, this.retryAfterMs)
    }
    for (const lane of this.lanes) lane.batcher.offer(events)
    return undefined
  }

  assertNotSaturated(): void {
    for (const lane of this.lanes) if (lane.batcher.isSaturated) throw fullError(lane, this.retryAfterMs)
  }

  isSaturated(): boolean {
    for (const lane of this.lanes) if (lane.batcher.isSaturated) return true
    return false
  }

  assertRoomFor(entries: number): void {
    for (const lane of this.lanes) {
      if (!lane.batcher.hasRoomFor(entries, 0)) throw fullError(lane, this.retryAfterMs)
    }
  }

  journal(): undefined {
    return undefined
  }

  onRoom(): void {}

  backlog(): number {
    return 0
  }

  async catchUp(): Promise<void> {}
}
