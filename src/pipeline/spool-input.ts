// The spool as a lane input: a request's entries are numbered and appended to the log, and no lane sees them before
// they are durable. Then a lane that is keeping up takes them from memory, and one that is behind reads them back from
// disk whenever a finished batch frees room, so the backlog waits on disk and memory holds only what the batchers
// hold. Each lane's batches are journaled (sealed before the first write, done after), and a restart hands every
// lane its unfinished batches and where to read on (replay).
import type { Logger } from 'pino'
import { errorMessage, QueueFullError, SpoolWriteError } from '../errors.js'
import { type Batch, EventRun, type LogEvent } from '../event.js'
import { type Recovered, recordToEvent, type Spool } from '../spool/index.js'
import type { LogReader } from '../spool/segment-log.js'
import type { LaneInput } from './input.js'
import type { Lane, LaneJournal } from './lane.js'

interface LaneState {
  /** Where this lane reads entries it has not taken into memory yet. */
  reader: LogReader
  /** The read from disk under way, if any (one at a time per lane). */
  pumping?: Promise<void>
  /** Set when more may have become readable since the read under way began: it reads again before it ends. */
  pumpAgain?: boolean
}

export class SpoolInput implements LaneInput {
  readonly keepsUnsent = true
  private failure: { message: string; at: string } | undefined
  private readonly states = new Map<Lane, LaneState>()

  private lanes: readonly Lane[] = []

  constructor(
    private readonly spool: Spool,
    private readonly options: {
      readonly logger: Logger
      readonly retryAfterMs: number
      readonly maxBatchBytes: number
      /**
       * The shutdown deadline. Past it nothing more is read into a lane: what no write has started stays in the spool,
       * and a restart resumes after the last sealed batch, so a batch sealed after the deadline would hide them.
       */
      readonly deadline: AbortSignal
    },
  ) {}

  /** Every lane starts reading at the next entry to be appended: what came before is the restart's (see replay). */
  attach(lanes: readonly Lane[]): void {
    this.lanes = lanes
    for (const lane of lanes) this.states.set(lane, { reader: this.readerFor(lane, this.spool.next) })
  }

  get problem(): { message: string; at: string } | undefined {
    return this.failure
  }

  private state(lane: Lane): LaneState {
    const state = this.states.get(lane)
    if (!state) throw new Error(`spool input: lane ${lane.name} was never attached`)
    return state
  }

  /** A reader of the spool for one lane; damage it skips is counted against that lane and logged, never silent. */
  private readerFor(lane: Lane, fromSeq: number): LogReader {
    return this.spool.reader(fromSeq, (damage) => {
      lane.stats.lost_events += damage.lostRecords
      lane.noteError(
        new Error(`spool: ${damage.lostRecords} entries lost to a damaged record (${damage.problem})`),
      )
      this.options.logger.error(
        {
          sink: lane.name,
          segment: damage.segment,
          byte_offset: damage.byteOffset,
          problem: damage.problem,
          lost_events: damage.lostRecords,
        },
        'spool: damaged records skipped; the entries around them go on',
      )
    })
  }

  journal(sink: string): LaneJournal | undefined {
    const cursor = this.spool.cursor(sink)
    if (!cursor) return undefined
    return {
      sealed: (batch) => cursor.sealed(batch),
      done: async (batch) => {
        await cursor.done(batch)
        await this.spool
          .release()
          .catch((err: unknown) => this.options.logger.error({ err }, 'spool: segments not released'))
      },
    }
  }

  accept(given: readonly LogEvent[] | EventRun, _count: number, bytes: number): Promise<void> {
    const { spool } = this
    // Each entry gets its own place in the log: a request's run is taken apart into its events.
    const events = given instanceof EventRun ? given.events() : given
    if (!spool.hasRoomFor(bytes, events.length)) {
      throw new QueueFullError(
        `the spool is full (${spool.bytes} bytes of SPOOL_MAX_BYTES); retry later`,
        this.options.retryAfterMs,
        'SPOOL_FULL',
      )
    }
    const { firstSeq, written } = spool.append(events)
    // Appends settle in sequence order, so each lane is offered the entries in the order they were numbered.
    const handOver = (): Lane[] => {
      const behind: Lane[] = []
      for (const lane of this.lanes) {
        const state = this.state(lane)
        if (
          !state.pumping &&
          state.reader.next === firstSeq &&
          lane.batcher.hasRoomFor(events.length, bytes)
        ) {
          lane.batcher.offer(events)
          state.reader.skip(events.length)
        } else {
          behind.push(lane)
        }
      }
      return behind
    }
    return written.then(
      () => {
        this.failure = undefined
        if (this.options.deadline.aborted) return
        for (const lane of handOver()) void this.pump(lane)
      },
      async (err: unknown) => {
        // Not durable: the lanes that are keeping up take them from memory; the others would have read them from
        // the log, where they are not: they go to those lanes' dead-letter store, so every lane accounts for them.
        const reason = `the spool could not be written: ${errorMessage(err)}`
        this.failure = { message: reason, at: new Date().toISOString() }
        this.options.logger.error({ err, entries: events.length }, 'spool: append failed')
        const batch: Batch = {
          name: `spool-failed-${firstSeq}-${firstSeq + events.length - 1}`,
          openedAt: new Date(),
          events,
          bytes,
        }
        for (const lane of handOver()) {
          const { reader } = this.state(lane)
          if (reader.next === firstSeq) reader.skip(events.length)
          await lane.deadLetter(
            batch,
            events.map((event) => ({ event, reason })),
            0,
            { 'spool-write-failed': events.length },
          )
        }
        throw new SpoolWriteError(reason)
      },
    )
  }

  isSaturated(): boolean {
    // The lanes' buffers fill from disk as they have room: only the spool itself can be full.
    return this.spool.isSaturated
  }

  assertNotSaturated(): void {
    if (this.isSaturated()) {
      throw new QueueFullError(
        `the spool is nearly full (${this.spool.bytes} bytes of SPOOL_MAX_BYTES); retry later`,
        this.options.retryAfterMs,
        'SPOOL_FULL',
      )
    }
  }

  assertRoomFor(): void {}

  onRoom(lane: Lane): void {
    if (!this.options.deadline.aborted) void this.pump(lane)
  }

  /** Entries on disk this lane has not read yet (numbers never written, after a failed append, are not counted). */
  backlog(lane: Lane): number {
    return Math.max(0, this.spool.lastWritten + 1 - this.state(lane).reader.next)
  }

  /**
   * Reads entries this lane has not taken yet from the spool into its batcher, as far as its bounds allow. A call
   * while a read is under way makes that read go round once more, so entries made durable meanwhile are never left
   * waiting for another call.
   */
  private pump(lane: Lane): Promise<void> {
    const state = this.state(lane)
    state.pumpAgain = true
    if (state.pumping) return state.pumping
    const run = (async () => {
      try {
        while (state.pumpAgain) {
          state.pumpAgain = false
          for (;;) {
            const room = lane.batcher.room()
            if (room.events <= 0 || room.bytes <= lane.batcher.maxBatchBytes / 4) break
            if (this.options.deadline.aborted) return
            const records = await state.reader.read(room.events, room.bytes)
            // Read, but past the deadline: not offered. They stay in the spool, read again after a restart.
            if (records.length === 0 || this.options.deadline.aborted) break
            lane.batcher.offer(records.map(recordToEvent))
          }
        }
      } catch (err) {
        state.pumpAgain = false
        this.options.logger.error({ sink: lane.name, err }, 'spool: read failed')
      }
    })()
    state.pumping = run
    void run.finally(() => {
      if (state.pumping === run) state.pumping = undefined
    })
    return run
  }

  async catchUp(lane: Lane, deadline: AbortSignal): Promise<void> {
    const { reader } = this.state(lane)
    // An append still under way (a request not answered yet) is not in the backlog until it is written: wait for it
    // first, or a drain would leave its entries in the spool for the next start instead of delivering them now.
    await this.spool.settled()
    while (this.backlog(lane) > 0 && !deadline.aborted) {
      const before = reader.next
      // Entries still being appended become readable once written.
      await this.spool.settled()
      await this.pump(lane)
      lane.batcher.flush()
      await lane.batcher.onIdle()
      // Nothing read and nothing held: what is left is not in the log (a failed append); do not spin on it.
      if (reader.next === before && lane.batcher.bufferedEvents === 0) break
    }
  }

  /** Hands a restart's unfinished work back to each lane: its sealed batches as they were; the rest it reads. */
  replay(recovered: ReadonlyMap<string, Recovered>): void {
    for (const lane of this.lanes) {
      const work = recovered.get(lane.name)
      if (!work) continue
      for (const batch of work.batches) lane.batcher.enqueue(batch)
      lane.stats.lost_events += work.missing
      this.state(lane).reader = this.readerFor(lane, work.resumeFrom)
      const waiting = this.spool.next - work.resumeFrom
      if (work.batches.length + waiting > 0) {
        this.options.logger.info(
          { sink: lane.name, batches: work.batches.length, entries: waiting },
          'spool: re-sending what the last run had not delivered',
        )
      }
      void this.pump(lane)
    }
  }
}
