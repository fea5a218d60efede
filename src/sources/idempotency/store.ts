// The Idempotency-Key store: the answers given to keyed requests, bounded by count (IDEMPOTENCY_MAX_KEYS) and age
// (IDEMPOTENCY_WINDOW), and the keys of the requests being handled now. A repeat gets the first answer, or waits for
// it while the first request is still being written; a key reused with another body is a 422. With a spool the
// answers are journaled (journal.ts) and survive a restart.
import type { Logger } from 'pino'
import { InputError } from '../../errors.js'
import type { FsyncPolicy } from '../../spool/segment-log.js'
import { KeyJournal } from './journal.js'
import { derivedIdPrefix } from './keys.js'

/**
 * The answers a repeat gets. Only these are kept: a 202 took the entries, and a 500 SPOOL_WRITE_FAILED took them
 * without making them durable. Every other answer took nothing (a 4xx says so, a 429 or 503 asks for a repeat), so a
 * repeat of such a request is simply handled again.
 */
export type Answer =
  | { readonly status: 202; readonly accepted: number }
  | { readonly status: 500; readonly message: string }

/** A key's answer, as kept. */
export interface Kept {
  readonly fingerprint: string
  readonly answer: Answer
  /** When the answer was given (epoch ms): the window runs from here. */
  readonly at: number
}

export interface IdempotencyOptions {
  /** Keys remembered at most; past it the oldest is forgotten early (IDEMPOTENCY_MAX_KEYS). */
  readonly maxKeys: number
  /** How long a key is remembered after its answer (IDEMPOTENCY_WINDOW). */
  readonly windowMs: number
  /** With a spool: the directory of the journal, and the spool's fsync policy (default always), which it follows. */
  readonly dir?: string
  readonly fsync?: FsyncPolicy
  readonly logger: Logger
}

export interface IdempotencyStats {
  keys: number
  in_flight: number
  /** Requests answered from the store. */
  replayed: number
  /** Keys reused with another body (422). */
  conflicts: number
  /** Keys forgotten before their window ended because IDEMPOTENCY_MAX_KEYS was reached. */
  evicted_early: number
  /** Repeats recognised by their entries' derived ids in the spool (the last run died before journaling the key). */
  recovered_from_spool: number
}

/** A request that holds its key while it is handled: it records its answer, or releases the key. */
export interface Ticket {
  /** The event_id of the n-th entry (0-based) of this request, for entries that do not set their own. */
  eventId(n: number): string
  /** Keeps the answer for repeats (and journals it, before the answer is sent); resolves when it is kept. */
  record(answer: Answer): Promise<void>
  /** The request took nothing: a repeat is handled as new. */
  release(): void
}

export type Claim = { readonly replay: Answer } | { readonly ticket: Ticket }

export class IdempotencyStore {
  /** Insertion order is answer order, so the oldest key is always first. */
  private readonly known = new Map<string, Kept>()
  private readonly inFlight = new Map<string, { fingerprint: string; settled: Promise<void> }>()
  private readonly counters = { replayed: 0, conflicts: 0, evicted_early: 0, recovered_from_spool: 0 }
  /** Derived-id prefixes of keyed entries found in the spool at start-up, with how many entries carry each. */
  private spooled = new Map<string, number>()

  private constructor(
    private readonly options: IdempotencyOptions,
    private readonly journal: KeyJournal | undefined,
  ) {}

  /** A store in memory, or (with `dir`) one that reads back what the last run journaled and journals on. */
  static async open(options: IdempotencyOptions): Promise<IdempotencyStore> {
    if (!options.dir) return new IdempotencyStore(options, undefined)
    const { journal, kept } = await KeyJournal.open(options.dir, options.fsync ?? 'always', options.logger)
    const store = new IdempotencyStore(options, journal)
    for (const [key, answer] of kept) store.remember(key, answer, false)
    store.expire()
    // Compacted to what is still inside the window; appends go on after it.
    await journal.rewrite(store.known)
    if (store.known.size > 0) {
      options.logger.info({ keys: store.known.size }, 'idempotency: keys of the last run restored')
    }
    return store
  }

  /**
   * Claims `key` for a request whose body has `fingerprint`. A key already answered gives that answer back; a key
   * answered or in flight with another body is a 422; a key in flight with the same body waits for that request's
   * answer (a client that timed out and sent again while the first request was still being written to disk).
   */
  async claim(key: string, fingerprint: string): Promise<Claim> {
    for (;;) {
      this.expire()
      const known = this.known.get(key)
      if (known) {
        this.assertSameBody(known.fingerprint, fingerprint)
        this.counters.replayed++
        return { replay: known.answer }
      }
      const running = this.inFlight.get(key)
      if (!running) break
      this.assertSameBody(running.fingerprint, fingerprint)
      await running.settled
    }
    const idPrefix = derivedIdPrefix(key, fingerprint)
    const spooled = this.spooled.get(idPrefix)
    if (spooled !== undefined) {
      // Taken by the last run, which died before it could journal the key: its entries are in the spool.
      this.spooled.delete(idPrefix)
      const kept: Kept = { fingerprint, answer: { status: 202, accepted: spooled }, at: Date.now() }
      this.remember(key, kept, true)
      await this.append(key, kept).catch((err: unknown) =>
        this.options.logger.error({ err }, 'idempotency: key not journaled'),
      )
      this.counters.replayed++
      this.counters.recovered_from_spool++
      return { replay: kept.answer }
    }
    let settle = () => {}
    const settled = new Promise<void>((resolve) => {
      settle = resolve
    })
    this.inFlight.set(key, { fingerprint, settled })
    let open = true
    const finish = () => {
      if (this.inFlight.get(key)?.settled === settled) this.inFlight.delete(key)
      settle()
    }
    return {
      ticket: {
        eventId: (n) => `${idPrefix}-${n}`,
        record: async (answer) => {
          if (!open) return
          open = false
          const kept: Kept = { fingerprint, answer, at: Date.now() }
          this.remember(key, kept, true)
          try {
            await this.append(key, kept)
          } finally {
            finish()
          }
        },
        release: () => {
          if (!open) return
          open = false
          finish()
        },
      },
    }
  }

  /**
   * Learns the keyed entries the spool holds after a restart, counted per derived-id prefix (derivedIdsInSpool). A
   * key is journaled just after its entries reach the spool; a crash in between leaves entries whose key the journal
   * does not know. Their ids are derived from the key and body, so a repeat of that request is recognised by them
   * and answered 202 (with the count of entries that carry a derived id: entries that set their own event_id are
   * not counted) rather than taken twice.
   */
  adoptSpooled(counts: ReadonlyMap<string, number>): void {
    for (const [prefix, n] of counts) this.spooled.set(prefix, (this.spooled.get(prefix) ?? 0) + n)
  }

  stats(): IdempotencyStats {
    this.expire()
    return { keys: this.known.size, in_flight: this.inFlight.size, ...this.counters }
  }

  async close(): Promise<void> {
    await this.journal?.close()
  }

  private assertSameBody(first: string, now: string): void {
    if (first === now) return
    this.counters.conflicts++
    throw new InputError(
      422,
      'IDEMPOTENCY_KEY_REUSED',
      'this Idempotency-Key was used for a request with another body; send a new key with every new request',
    )
  }

  private remember(key: string, kept: Kept, live: boolean): void {
    this.known.delete(key)
    this.known.set(key, kept)
    while (this.known.size > this.options.maxKeys) {
      const [oldest, entry] = this.known.entries().next().value as [string, Kept]
      this.known.delete(oldest)
      if (live && entry.at > Date.now() - this.options.windowMs) this.counters.evicted_early++
    }
  }

  /** Forgets the keys whose window has passed: they are the oldest, at the front. */
  private expire(): void {
    const horizon = Date.now() - this.options.windowMs
    for (const [key, known] of this.known) {
      if (known.at > horizon) break
      this.known.delete(key)
    }
  }

  private async append(key: string, kept: Kept): Promise<void> {
    const { journal } = this
    if (!journal) return
    await journal.append(key, kept)
    // The journal holds at most about twice the live keys: rewritten down once it has appended as many again.
    if (journal.appendedSinceRewrite > Math.max(1000, this.options.maxKeys)) {
      this.expire()
      await journal.rewrite(this.known)
    }
  }
}
