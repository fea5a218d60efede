// The Idempotency-Key store hooked into a Fastify scope: a keyed repeat is answered before its handler runs, and a
// first answer worth repeating (202, or 500 SPOOL_WRITE_FAILED) is kept, and journaled, before it is sent.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { SpoolWriteError } from '../../errors.js'
import type { RawBody } from '../raw-body.js'
import { fingerprintOf, idempotencyKeyOf } from './keys.js'
import type { Answer, IdempotencyStore, Ticket } from './store.js'

export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key'
/** Set on an answer that repeats the one a request with the same key got before. */
const REPLAYED_HEADER = 'idempotent-replayed'

/** The tickets of the requests being handled now (a WeakMap, so a request that vanishes takes its entry along). */
const tickets = new WeakMap<FastifyRequest, Ticket>()

/** The event id of a keyed request's n-th entry, or undefined for a request without Idempotency-Key. */
export function keyedEventIds(request: FastifyRequest): ((n: number) => string) | undefined {
  const ticket = tickets.get(request)
  return ticket ? (n) => ticket.eventId(n) : undefined
}

/**
 * Hooks the store into a scope whose routes take a RawBody and answer 202 `{ accepted }`: a
 * repeat is answered before the handler runs; a first answer is kept (and journaled) before it is sent.
 */
export function registerIdempotency(scope: FastifyInstance, store: IdempotencyStore): void {
  // Callbacks rather than async functions: every request runs these hooks, and most carry no key; a promise per hook
  // per request was a measurable share of a one-entry request's cost (see http.ts).
  scope.addHook('preHandler', (request, reply, done) => {
    let key: string | undefined
    try {
      key = idempotencyKeyOf(request.headers[IDEMPOTENCY_KEY_HEADER])
    } catch (err) {
      return done(err as Error)
    }
    if (key === undefined) return done()
    const body = request.body as RawBody | undefined
    store.claim(key, fingerprintOf(body?.format ?? '', body?.fingerprinted ?? '')).then((claim) => {
      if ('ticket' in claim) {
        tickets.set(request, claim.ticket)
        return done()
      }
      // A repeat is answered here; the handler does not run.
      const { replay } = claim
      void reply.header(REPLAYED_HEADER, 'true')
      if (replay.status === 500) {
        void reply.code(500).send({ error: new SpoolWriteError().code, message: replay.message })
        return
      }
      void reply.code(202).send({ accepted: replay.accepted })
    }, done)
  })

  scope.addHook('onSend', (request, reply, payload, done) => {
    const ticket = tickets.get(request)
    if (!ticket) return done(null, payload)
    tickets.delete(request)
    const answer = answerOf(reply.statusCode, payload)
    if (!answer) {
      ticket.release()
      return done(null, payload)
    }
    ticket.record(answer).then(
      () => done(null, payload),
      (err: unknown) => {
        // The entries are taken and the key is remembered in memory: only a restart would forget it.
        request.log.error({ err }, 'idempotency: key not journaled')
        done(null, payload)
      },
    )
  })

  // A request that ended without an answer being sent (the connection closed first) took nothing it can tell.
  scope.addHook('onResponse', (request, _reply, done) => {
    const ticket = tickets.get(request)
    if (ticket) {
      ticket.release()
      tickets.delete(request)
    }
    done()
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
