// Idempotency-Key for the sources: a bounded store (count and age) of the answers given to keyed requests, so that
// a client that lost an answer sends the same request again and gets the first answer, with nothing taken twice.
// With a spool the store is journaled beside it and survives a restart; a keyed request's entries get event ids
// derived from the key and the body, so even a repeat the store no longer knows is one row in BigQuery.
import { createHash } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { InputError, SpoolWriteError } from '../errors.js'
import { recordEventId, type Spool } from '../spool/index.js'
import type { FsyncPolicy } from '../spool/segment-log.js'
import { JournalFile } from '../storage/journal-file.js'

export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key'
/** Set on an answer that repeats the one a request with the same key got before. */
export const REPLAYED_HEADER = 'idempotent-replayed'
/** The journal's file name under SPOOL_DIR. */
export const JOURNAL_NAME = 'idempotency.journal'

/** Printable ASCII without spaces, as UUIDs, ULIDs and base64 keys are; at most 255 characters. */
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/
const FSYNC_INTERVAL_MS = 1000
/** A derived event id: 22 characters of the key's and body's hash, a dash, the entry's place in its request. */
const DERIVED_ID = /^([A-Za-z0-9_-]{22})-\d+$/

/**
 * The answers a repeat gets. Only these are kept: a 202 took the entries, and a 500 SPOOL_WRITE_FAILED took them
 * without making them durable. Every other answer took nothing (a 4xx says so, a 429 or 503 asks for a repeat), so a
 * repeat of such a request is simply handled again.
 */
export type Answer =
  | { readonly status: 202; readonly accepted: number }
  | { readonly status: 500; readonly message: string }

interface Known {
  readonly fingerprint: string
  readonly answer: Answer
  /** When the answer was given (epoch ms): the window runs from here. */
  readonly at: number
}

type JournalLine = { readonly k: string; readonly f: string; readonly t: number } & (
  | { readonly s: 202; readonly a: number }
  | { readonly s: 500; readonly m: string }
)

export interface IdempotencyOptions {
  /** Keys remembered at most; past it the oldest is forgotten early (IDEMPOTENCY_MAX_KEYS). */
  readonly maxKeys: number
  /** How long a key is remembered after its answer (IDEMPOTENCY_WINDOW). */
  readonly windowMs: number
  /** With a spool: the directory of the journal, and the spool's fsync policy, which the journal follows. */
  readonly dir?: string
  readonly fsync?: FsyncPolicy
  readonly logger: Logger
  readonly now?: () => number
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

/** The key of a request: undefined without the header, a 400 for one sidelog cannot use. */
export function idempotencyKeyOf(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined
  if (Array.isArray(header)) {
    throw new InputError(400, 'INVALID_IDEMPOTENCY_KEY', 'send one Idempotency-Key header, not several')
  }
  // The IETF draft writes the key as a quoted string; most clients send it bare. Both mean the same key.
  const trimmed = header.trim()
  const key =
    trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"') ? trimmed.slice(1, -1) : trimmed
  if (!KEY_PATTERN.test(key)) {
    throw new InputError(
      400,
      'INVALID_IDEMPOTENCY_KEY',
      'Idempotency-Key must be 1 to 255 printable ASCII characters without spaces (a UUID is a good key)',
    )
  }
  return key
}

/** What makes two requests the same: the body after decompression and how it is to be parsed. */
export function fingerprintOf(format: string, text: string): string {
  return createHash('sha256').update(format).update('\n').update(text).digest('base64url')
}

export class IdempotencyStore {
  /** Insertion order is answer order, so the oldest key is always first. */
  private readonly known = new Map<string, Known>()
  private readonly inFlight = new Map<string, { fingerprint: string; settled: Promise<void> }>()
  private readonly counters = { replayed: 0, conflicts: 0, evicted_early: 0, recovered_from_spool: 0 }
  /** Derived-id prefixes of keyed entries found in the spool at start-up, with how many entries carry each. */
  private spooled = new Map<string, number>()
  private readonly now: () => number
  private timer: NodeJS.Timeout | undefined
  private unsynced = false

  private constructor(
    private readonly options: IdempotencyOptions,
    private readonly journal: JournalFile<JournalLine> | undefined,
  ) {
    this.now = options.now ?? Date.now
  }

  /** A store in memory, or (with `dir`) one that reads back what the last run journaled and journals on. */
  static async open(options: IdempotencyOptions): Promise<IdempotencyStore> {
    if (!options.dir) return new IdempotencyStore(options, undefined)
    await mkdir(options.dir, { recursive: true })
    const journal = new JournalFile<JournalLine>(join(options.dir, JOURNAL_NAME), options.logger)
    const store = new IdempotencyStore(options, journal)
    for (const line of await journal.read()) {
      const answer: Answer =
        line.s === 202 ? { status: 202, accepted: line.a } : { status: 500, message: line.m }
      store.remember(line.k, { fingerprint: line.f, answer, at: line.t }, false)
    }
    store.expire()
    // Compacted to what is still inside the window; appends go on after it.
    await journal.rewrite(store.liveLines())
    if (store.known.size > 0) {
      options.logger.info({ keys: store.known.size }, 'idempotency: keys of the last run restored')
    }
    if (options.fsync === 'interval') {
      store.timer = setInterval(() => void store.syncIfNeeded(), FSYNC_INTERVAL_MS)
      store.timer.unref()
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
      const answer: Answer = { status: 202, accepted: spooled }
      const at = this.now()
      this.remember(key, { fingerprint, answer, at }, true)
      await this.append(key, fingerprint, answer, at).catch((err: unknown) =>
        this.options.logger.error({ err }, 'idempotency: key not journaled'),
      )
      this.counters.replayed++
      this.counters.recovered_from_spool++
      return { replay: answer }
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
          const at = this.now()
          this.remember(key, { fingerprint, answer, at }, true)
          try {
            await this.append(key, fingerprint, answer, at)
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
   * Learns the keyed entries the spool holds after a restart. A key is journaled just after its entries reach the
   * spool; a crash in between leaves entries whose key the journal does not know. Their ids are derived from the key
   * and body, so a repeat of that request is recognised by them and answered 202 (with the count of entries that
   * carry a derived id: entries that set their own event_id are not counted) rather than taken twice.
   */
  /** Keyed entries found in the spool, counted per key prefix (see derivedIdsInSpool). */
  adoptSpooled(counts: ReadonlyMap<string, number>): void {
    for (const [prefix, n] of counts) this.spooled.set(prefix, (this.spooled.get(prefix) ?? 0) + n)
  }

  stats(): IdempotencyStats {
    this.expire()
    return { keys: this.known.size, in_flight: this.inFlight.size, ...this.counters }
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    await this.syncIfNeeded()
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

  private remember(key: string, known: Known, live: boolean): void {
    this.known.delete(key)
    this.known.set(key, known)
    while (this.known.size > this.options.maxKeys) {
      const [oldest, entry] = this.known.entries().next().value as [string, Known]
      this.known.delete(oldest)
      if (live && entry.at > this.now() - this.options.windowMs) this.counters.evicted_early++
    }
  }

  /** Forgets the keys whose window has passed: they are the oldest, at the front. */
  private expire(): void {
    const horizon = this.now() - this.options.windowMs
    for (const [key, known] of this.known) {
      if (known.at > horizon) break
      this.known.delete(key)
    }
  }

  private async append(key: string, fingerprint: string, answer: Answer, at: number): Promise<void> {
    const { journal } = this
    if (!journal) return
    const line: JournalLine =
      answer.status === 202
        ? { k: key, f: fingerprint, t: at, s: 202, a: answer.accepted }
        : { k: key, f: fingerprint, t: at, s: 500, m: answer.message }
    const sync = this.options.fsync === 'always'
    await journal.append(line, sync)
    if (!sync) this.unsynced = true
    // The journal holds at most about twice the live keys: rewritten down once it has appended as many again.
    if (journal.appendedSinceRewrite > Math.max(1000, this.options.maxKeys)) {
      this.expire()
      await journal.rewrite(this.liveLines())
    }
  }

  private async syncIfNeeded(): Promise<void> {
    if (!this.unsynced || !this.journal || this.options.fsync === 'never') return
    this.unsynced = false
    await this.journal
      .sync()
      .catch((err: unknown) => this.options.logger.error({ err }, 'idempotency: journal not synced'))
  }

  private liveLines(): JournalLine[] {
    return [...this.known].map(([k, { fingerprint: f, answer, at: t }]) =>
      answer.status === 202
        ? { k, f, t, s: 202, a: answer.accepted }
        : { k, f, t, s: 500, m: answer.message },
    )
  }
}

/** The event id prefix of a keyed request's entries: 22 characters of SHA-256 over the key and the body's hash. */
function derivedIdPrefix(key: string, fingerprint: string): string {
  return createHash('sha256').update(key).update('\n').update(fingerprint).digest('base64url').slice(0, 22)
}

/** Every keyed (derived) event id in the spool's log, read once at start-up before sidelog listens. */
export async function derivedIdsInSpool(spool: Spool): Promise<Map<string, number>> {
  // Counted per key as it reads, and only the ids decoded: a full spool holds millions of entries, and a list of
  // their ids (or their lines) would not fit the heap sidelog starts with.
  const counts = new Map<string, number>()
  const reader = spool.reader(0)
  for (;;) {
    const records = await reader.read(10_000, 64 * 1024 ** 2)
    if (records.length === 0) return counts
    for (const record of records) {
      const prefix = DERIVED_ID.exec(recordEventId(record.payload))?.[1]
      if (prefix !== undefined) counts.set(prefix, (counts.get(prefix) ?? 0) + 1)
    }
  }
}

/** The tickets of the requests being handled now (a WeakMap, so a request that vanishes takes its entry along). */
const tickets = new WeakMap<FastifyRequest, Ticket>()

/** The event id of a keyed request's n-th entry, or undefined for a request without Idempotency-Key. */
export function keyedEventIds(request: FastifyRequest): ((n: number) => string) | undefined {
  const ticket = tickets.get(request)
  return ticket ? (n) => ticket.eventId(n) : undefined
}

/**
 * Hooks the store into a scope whose routes take a parsed `{ format, text }` body and answer 202 `{ accepted }`: a
 * repeat is answered before the handler runs; a first answer is kept (and journaled) before it is sent.
 */
export function registerIdempotency(scope: FastifyInstance, store: IdempotencyStore): void {
  scope.addHook('preHandler', async (request, reply) => {
    const key = idempotencyKeyOf(request.headers[IDEMPOTENCY_KEY_HEADER])
    if (key === undefined) return
    const body = request.body as { format?: string; text?: string } | undefined
    const claim = await store.claim(key, fingerprintOf(body?.format ?? '', body?.text ?? ''))
    if ('ticket' in claim) {
      tickets.set(request, claim.ticket)
      return
    }
    const { replay } = claim
    void reply.header(REPLAYED_HEADER, 'true')
    if (replay.status === 500) {
      return reply.code(500).send({ error: new SpoolWriteError().code, message: replay.message })
    }
    return reply.code(202).send({ accepted: replay.accepted })
  })

  scope.addHook('onSend', async (request, reply, payload) => {
    const ticket = tickets.get(request)
    if (!ticket) return payload
    tickets.delete(request)
    const answer = answerOf(reply.statusCode, payload)
    if (!answer) {
      ticket.release()
      return payload
    }
    try {
      await ticket.record(answer)
    } catch (err) {
      // The entries are taken and the key is remembered in memory: only a restart would forget it.
      request.log.error({ err }, 'idempotency: key not journaled')
    }
    return payload
  })

  // A request that ended without an answer being sent (the connection closed first) took nothing it can tell.
  scope.addHook('onResponse', async (request) => {
    tickets.get(request)?.release()
    tickets.delete(request)
  })
}

/** The answer worth keeping from a status and serialised body, if any. */
function answerOf(status: number, payload: unknown): Answer | undefined {
  if (status !== 202 && status !== 500) return undefined
  if (typeof payload !== 'string') return undefined
  let body: { accepted?: unknown; error?: unknown; message?: unknown }
  try {
    body = JSON.parse(payload)
  } catch {
    return undefined
  }
  if (status === 202 && typeof body.accepted === 'number') return { status: 202, accepted: body.accepted }
  if (status === 500 && body.error === 'SPOOL_WRITE_FAILED' && typeof body.message === 'string') {
    return { status: 500, message: body.message }
  }
  return undefined
}
