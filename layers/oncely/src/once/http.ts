/**
 * HTTP events (API Gateway, function URLs, ALB): our errors as answers (IETF idempotency-key draft: 409 / 422 /
 * 400, and 503 for a store that cannot be reached), and a replayed answer marked as such.
 */
import { InProgressError, MissingKeyError, PayloadMismatchError, StoreUnavailableError } from '../errors.js';
import { isResultNotStored } from './record.js';

export interface HttpResult {
  statusCode: number;
  headers?: Record<string, string | number | boolean>;
  body?: string;
  [k: string]: unknown;
}

/** Retry-After of a 503: the store may be back in a second. */
const UNAVAILABLE_RETRY_AFTER_MS = 1000;

function httpError(statusCode: number, err: Error, retryAfterMs?: number): HttpResult {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (retryAfterMs !== undefined)
    headers['retry-after'] = String(Math.max(1, Math.ceil(retryAfterMs / 1000)));
  return { statusCode, headers, body: JSON.stringify({ error: err.name, message: err.message }) };
}

/** The HTTP answer for one of our errors (IETF idempotency-key draft: 409 / 422 / 400), or undefined. */
export function httpResponseFor(err: unknown): HttpResult | undefined {
  if (err instanceof InProgressError) return httpError(409, err, err.retryAfterMs);
  if (err instanceof PayloadMismatchError) return httpError(422, err);
  if (err instanceof MissingKeyError) return httpError(400, err);
  if (err instanceof StoreUnavailableError) return httpError(503, err, UNAVAILABLE_RETRY_AFTER_MS);
  return undefined;
}

export const isHttpResult = (v: unknown): v is HttpResult =>
  typeof v === 'object' && v !== null && typeof (v as HttpResult).statusCode === 'number';

/**
 * The status of a duplicate whose first answer was not stored (too large, or not exact as JSON): 202 Accepted, as
 * the request was carried out once, but its answer cannot be shown again. The body is the ResultNotStored
 * marker as JSON; the answer is marked `Idempotent-Replayed: true`.
 */
export const NOT_STORED_STATUS = 202;

/** A stored answer handed to a duplicate: marked `Idempotent-Replayed: true` (a ResultNotStored marker: a 202). */
export function replayed(value: unknown): unknown {
  if (isResultNotStored(value)) {
    return {
      statusCode: NOT_STORED_STATUS,
      headers: { 'content-type': 'application/json', 'idempotent-replayed': 'true' },
      body: JSON.stringify(value),
    } satisfies HttpResult;
  }
  if (!isHttpResult(value)) return value;
  return { ...value, headers: { ...(value.headers ?? {}), 'idempotent-replayed': 'true' } };
}
