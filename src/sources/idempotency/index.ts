// Idempotency-Key for the sources: a bounded store (count and age) of the answers given to keyed requests, so that
// a client that lost an answer sends the same request again and gets the first answer, with nothing taken twice.
// With a spool the store is journaled beside it and survives a restart; a keyed request's entries get event ids
// derived from the key and the body, so even a repeat the store no longer knows is one row in BigQuery.
export { IDEMPOTENCY_KEY_HEADER, keyedEventIds, registerIdempotency } from './hooks.js'
export { JOURNAL_NAME } from './journal.js'
export { derivedIdsInSpool } from './keys.js'
export { IdempotencyStore } from './store.js'
