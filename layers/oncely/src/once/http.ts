/**
 * HTTP events (API Gateway, function URLs, ALB): our errors as answers (IETF idempotency-key draft: 409 / 422 /
 * 400, and 503 for a store that cannot be reached), and a replayed answer marked as such.
 */
import { InProgressError, MissingKeyError, PayloadMismatchError, StoreUnavailableError } from '../errors.js';

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

/** A stored answer handed to a duplicate: marked `Idempotent-Replayed: true`. */
export function replayed(value: unknown): unknown {
  if (!isHttpResult(value)) return value;
  return { ...value, headers: { ...(value.headers ?? {}), 'idempotent-replayed': 'true' } };
}
