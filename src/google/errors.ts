// Error classification shared by the Google Cloud sinks (which answers a retry can fix), and the bound on a call.
import { errorMessage, PermanentError } from '../errors.js'

/** Answers that retrying will not change: a bad request, no permission, no such resource. */
const PERMANENT_STATUSES = new Set([400, 403, 404, 405, 409, 410, 411, 413, 414, 422])
/** Reasons Google APIs give for failures that pass (BigQuery's list), whatever the status says. */
export const TRANSIENT_REASONS: ReadonlySet<string> = new Set([
  'backendError',
  'internalError',
  'rateLimitExceeded',
  'timeout',
])

/**
 * The HTTP status of a client error, whichever shape it comes in: ApiError has `code` (a single-request upload's
 * 412 among them), GaxiosError has `status` or `response.status` (a resumable upload's 412), and the resumable
 * uploader's own 'Upload failed' error carries the status in `code`.
 */
export function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; status?: unknown; response?: { status?: unknown } } | undefined
  for (const value of [e?.code, e?.status, e?.response?.status]) {
    if (typeof value === 'number') return value
  }
  return undefined
}

function reasonOf(err: unknown): string | undefined {
  const reason = (err as { errors?: { reason?: unknown }[] } | undefined)?.errors?.[0]?.reason
  return typeof reason === 'string' ? reason : undefined
}

/**
 * 408, 429, 5xx, time-outs, resets, anything without a status, and the transient reasons are retried; other 4xx
 * become a PermanentError naming the service and status.
 */
export function classifyGoogleError(err: unknown, service: string): unknown {
  const status = statusOf(err)
  const reason = reasonOf(err)
  if (reason !== undefined && TRANSIENT_REASONS.has(reason)) return err
  if (status !== undefined && PERMANENT_STATUSES.has(status)) {
    return new PermanentError(`${service} answered ${status}: ${errorMessage(err)}`, { cause: err })
  }
  return err
}
