/**
 * The run-once record protocol: its keys, the four script calls (ONCE_CLAIM, ONCE_COMPLETE, ONCE_EXTEND,
 * ONCE_RELEASE in scripts.ts), their replies as named values with one parser each, the stored result's
 * encoding, and the payload hash. The record and its transitions are described in docs/once.md.
 */
import * as crypto from 'node:crypto';
import { DEFAULT_FENCE_GRACE_MS } from '../acquire.js';
import type { NotStorableReason } from '../errors.js';
import { OncelyError } from '../errors.js';
import { canonicalJson, type Identity } from '../events.js';
import { ONCE_CLAIM, ONCE_COMPLETE, ONCE_EXTEND, ONCE_RELEASE } from '../scripts.js';
import type { ScriptArg, ScriptCall } from '../transport/types.js';

/**
 * The fence counter outlives its record by this much: the longest a Lambda invocation can run, so no earlier
 * owner can still be at work when the counter goes (past that, fences still rise: see ONCE_CLAIM).
 */
export const FENCE_GRACE_MS = DEFAULT_FENCE_GRACE_MS;

// ------------------------------------------------------------------------------------------------- keys

/** SHA-256 in one call (crypto.hash, Node ≥ 20.12: no Hash object per call), else through createHash. */
const sha256: (text: string) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('sha256', text, 'base64url')
    : (text) => crypto.createHash('sha256').update(text).digest('base64url');

/** 22 base64url characters: 132 bits of SHA-256 (a record's key holds its idempotency key's digest). */
export function digest(text: string): string {
  return sha256(text).slice(0, 22);
}

/** The payload hash stored with a record ('' when unchecked). */
export function payloadHash(identity: Identity): string {
  return identity.checkPayload ? digest(canonicalJson(identity.payload) ?? 'undefined') : '';
}

/** The script calls of one namespace's records. */
export class Records {
  #lastKey: string | undefined;
  #lastKeys: readonly [record: string, fence: string] | undefined;

  constructor(
    readonly prefix: string,
    readonly namespace: string,
  ) {}

  /** The record and fence-counter keys of an idempotency key (one hash tag: always the same slot). */
  keysOf(key: string): [record: string, fence: string] {
    // An invocation asks for its keys at claim and again at completion: digest each key once.
    if (key === this.#lastKey && this.#lastKeys) return [...this.#lastKeys];
    const base = `${this.prefix}:once:{${this.namespace}:${digest(key)}}`;
    this.#lastKey = key;
    this.#lastKeys = [`${base}:rec`, `${base}:fence`];
    return [...this.#lastKeys];
  }

  claim(key: string, token: string, hash: string, ttlMs: number, nowMs: number): ScriptCall {
    const args: ScriptArg[] = [token, ttlMs, hash, ttlMs + FENCE_GRACE_MS, Math.floor(nowMs)];
    return { script: ONCE_CLAIM, keys: this.keysOf(key), args };
  }

  complete(
    run: { key: string; token: string; fence: number; hash: string },
    text: string,
    retentionMs: number,
  ): ScriptCall {
    return {
      script: ONCE_COMPLETE,
      keys: this.keysOf(run.key),
      args: [run.token, run.fence, text, retentionMs, retentionMs + FENCE_GRACE_MS, run.hash],
    };
  }

  extend(key: string, token: string, ttlMs: number): ScriptCall {
    return { script: ONCE_EXTEND, keys: this.keysOf(key), args: [token, ttlMs, ttlMs + FENCE_GRACE_MS] };
  }

  release(key: string, token: string): ScriptCall {
    return { script: ONCE_RELEASE, keys: [this.keysOf(key)[0]], args: [token] };
  }
}

// ------------------------------------------------------------------------------------------------ replies

/** ONCE_CLAIM's reply codes (the first element of its reply). */
const CLAIM = { claimed: 1, completed: 2, mismatch: 3, inProgress: 0 } as const;

/** What a claim found, or that it failed (`error`: the store's, or one call's of a batch). */
export type ClaimReply =
  | { kind: 'claimed'; fence: number }
  | { kind: 'completed'; value: unknown }
  | { kind: 'in-progress'; retryAfterMs: number }
  | { kind: 'mismatch' }
  | { kind: 'failed'; error: unknown };

export function parseClaim(reply: unknown, storeName: string): ClaimReply {
  if (!Array.isArray(reply) || reply.length < 1) {
    throw new OncelyError(`${storeName}: unexpected claim reply ${JSON.stringify(reply)}`);
  }
  const code = Number(reply[0]);
  if (code === CLAIM.claimed) return { kind: 'claimed', fence: Number(reply[1]) };
  if (code === CLAIM.completed) return { kind: 'completed', value: decodeResult(reply[1]) };
  if (code === CLAIM.mismatch) return { kind: 'mismatch' };
  return { kind: 'in-progress', retryAfterMs: Math.max(0, Number(reply[1]) || 0) };
}

/** ONCE_COMPLETE's reply: recorded (now, by an earlier attempt, or after the lease ran out), or lost. */
export type CompleteReply = 'completed' | 'already-completed' | 'completed-late' | 'stolen' | 'expired';

export function parseComplete(reply: unknown): CompleteReply {
  const r = Number(reply);
  if (r === 1) return 'completed';
  if (r === 2) return 'already-completed';
  if (r === 3) return 'completed-late';
  return r === -1 ? 'stolen' : 'expired';
}

// -------------------------------------------------------------------------------------- result encoding

/** What a duplicate gets when the first invocation's result was not stored (`unstorable: 'marker'`). */
export interface ResultNotStored {
  readonly oncely: 'result-not-stored';
  readonly reason: NotStorableReason;
  readonly bytes?: number;
}

export function isResultNotStored(value: unknown): value is ResultNotStored {
  return (
    typeof value === 'object' && value !== null && (value as ResultNotStored).oncely === 'result-not-stored'
  );
}

/** The stored form: `u` (undefined), `j<json>` (a value), `m<json>` (a ResultNotStored marker). */
export type Encoded =
  | { ok: true; text: string }
  | { ok: false; reason: NotStorableReason; detail: string; bytes?: number; cause?: unknown };

export function encodeResult(value: unknown, maxBytes: number): Encoded {
  if (value === undefined) return { ok: true, text: 'u' };
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    return { ok: false, reason: 'not-serialisable', detail: (err as Error).message, cause: err };
  }
  if (json === undefined) {
    return { ok: false, reason: 'not-serialisable', detail: `a ${typeof value} has no JSON form` };
  }
  // A UTF-16 code unit is at most 3 bytes of UTF-8: only a long text needs counting.
  const bytes = json.length * 3 > maxBytes ? Buffer.byteLength(json, 'utf8') : 0;
  if (bytes > maxBytes) {
    return {
      ok: false,
      reason: 'too-large',
      detail: `${bytes} bytes of JSON, the limit is ${maxBytes}`,
      bytes,
    };
  }
  return { ok: true, text: `j${json}` };
}

export function decodeResult(text: unknown): unknown {
  if (typeof text !== 'string' || text === 'u') return undefined;
  const body = text.slice(1);
  return text[0] === 'm' || text[0] === 'j' ? JSON.parse(body) : undefined;
}

export function markerText(e: Extract<Encoded, { ok: false }>): string {
  const marker: ResultNotStored = {
    oncely: 'result-not-stored',
    reason: e.reason,
    ...(e.bytes !== undefined ? { bytes: e.bytes } : {}),
  };
  return `m${JSON.stringify(marker)}`;
}
