/**
 * Webhook signature verification for three providers, each comparing in constant time:
 *
 * - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
 * - Stripe: `Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>[,v1=…]`, with a timestamp
 *   tolerance (Stripe's libraries default to 5 minutes) so a captured delivery cannot be replayed later.
 * - Standard Webhooks (Svix, and everyone following standardwebhooks.com): `webhook-id`, `webhook-timestamp`
 *   (unix s) and `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")> [v1,…]`, where the
 *   key is the base64 part of a `whsec_…` secret; the same timestamp tolerance.
 *
 * Verify the raw body bytes exactly as received, before parsing: re-serialised JSON does not match.
 * The `sign*` functions produce valid headers (tests, the demo, your own integration tests).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Header names in lower case (API Gateway HTTP APIs deliver them so; normalise other sources first). */
export type Headers = Readonly<Record<string, string | undefined>>;

export type Verification = { ok: true } | { ok: false; reason: string };

export interface TimestampOptions {
  /**
   * How far the signed timestamp may be from now, either way.
   * @default 300_000 (5 minutes, as Stripe's and the Standard Webhooks libraries)
   */
  toleranceMs?: number;
  /** Current time in ms since the epoch. @default Date.now() */
  nowMs?: number;
}

export const DEFAULT_TOLERANCE_MS = 300_000;

const fail = (reason: string): Verification => ({ ok: false, reason });

/** True when `given` equals `expected`, in time independent of where they differ (lengths are public). */
function safeEqual(given: Buffer, expected: Buffer): boolean {
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function hmac(key: string | Buffer, ...parts: (string | Buffer)[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Unix seconds as a header carries them: digits only (no sign, exponent or fraction). */
function parseUnixSeconds(text: string | undefined): number | undefined {
  return text !== undefined && /^\d{1,12}$/.test(text) ? Number(text) : undefined;
}

function timestampProblem(seconds: number, options: TimestampOptions): string | undefined {
  const toleranceMs = options.toleranceMs ?? DEFAULT_TOLERANCE_MS;
  const skewMs = (options.nowMs ?? Date.now()) - seconds * 1000;
  if (skewMs > toleranceMs) return 'timestamp too old';
  if (-skewMs > toleranceMs) return 'timestamp in the future';
  return undefined;
}

// -------------------------------------------------------------------------------------------------- GitHub

export function verifyGithub(body: string | Buffer, headers: Headers, secret: string): Verification {
  const header = headers['x-hub-signature-256'];
  if (!header) return fail('missing X-Hub-Signature-256');
  const m = /^sha256=([0-9a-f]{64})$/i.exec(header.trim());
  if (!m) return fail('malformed X-Hub-Signature-256');
  return safeEqual(Buffer.from(m[1]!.toLowerCase(), 'hex'), hmac(secret, body))
    ? { ok: true }
    : fail('signature mismatch');
}

export function signGithub(body: string | Buffer, secret: string): Record<string, string> {
  return { 'x-hub-signature-256': `sha256=${hmac(secret, body).toString('hex')}` };
}

// -------------------------------------------------------------------------------------------------- Stripe

export function verifyStripe(
  body: string | Buffer,
  headers: Headers,
  secret: string,
  options: TimestampOptions = {},
): Verification {
  const header = headers['stripe-signature'];
  if (!header) return fail('missing Stripe-Signature');
  let timestamp: number | undefined;
  const candidates: Buffer[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') timestamp = parseUnixSeconds(value);
    else if (key === 'v1' && /^[0-9a-f]{64}$/i.test(value)) candidates.push(Buffer.from(value, 'hex'));
  }
  if (timestamp === undefined) return fail('Stripe-Signature has no valid timestamp');
  if (candidates.length === 0) return fail('Stripe-Signature has no v1 signature');
  const expected = hmac(secret, `${timestamp}.`, body);
  // Check every candidate (no early exit): during secret rotation Stripe sends one per secret.
  let matched = false;
  for (const c of candidates) matched = safeEqual(c, expected) || matched;
  if (!matched) return fail('signature mismatch');
  // Checked after the signature, so the reason never tells an unsigned caller whether its timestamp was good.
  const problem = timestampProblem(timestamp, options);
  return problem ? fail(problem) : { ok: true };
}

export function signStripe(
  body: string | Buffer,
  secret: string,
  timestampSeconds = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const v1 = hmac(secret, `${timestampSeconds}.`, body).toString('hex');
  return { 'stripe-signature': `t=${timestampSeconds},v1=${v1}` };
}

// ---------------------------------------------------------------------------------------- Standard Webhooks

/** The HMAC key of a Standard Webhooks secret: the base64 after `whsec_` (a bare base64 secret works too). */
function standardKey(secret: string): Buffer {
  return Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
}

export function verifyStandardWebhook(
  body: string | Buffer,
  headers: Headers,
  secret: string,
  options: TimestampOptions = {},
): Verification {
  const id = headers['webhook-id'];
  const timestampText = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (!id || !timestampText || !signatures) {
    return fail('missing webhook-id, webhook-timestamp or webhook-signature');
  }
  const timestamp = parseUnixSeconds(timestampText);
  if (timestamp === undefined) return fail('malformed webhook-timestamp');
  const expected = hmac(standardKey(secret), `${id}.${timestampText}.`, body);
  let matched = false;
  for (const entry of signatures.split(' ')) {
    const [version, value] = entry.split(',', 2);
    if (version !== 'v1' || !value) continue;
    matched = safeEqual(Buffer.from(value, 'base64'), expected) || matched;
  }
  if (!matched) return fail('signature mismatch');
  const problem = timestampProblem(timestamp, options);
  return problem ? fail(problem) : { ok: true };
}

export function signStandardWebhook(
  body: string | Buffer,
  secret: string,
  id: string,
  timestampSeconds = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const signature = hmac(standardKey(secret), `${id}.${timestampSeconds}.`, body).toString('base64');
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestampSeconds),
    'webhook-signature': `v1,${signature}`,
  };
}
