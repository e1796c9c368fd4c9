/**
 * The run-once record protocol: its keys, the four script calls (ONCE_CLAIM, ONCE_COMPLETE, ONCE_EXTEND,
 * ONCE_RELEASE in scripts.ts), their replies as named values with one parser each, the stored result's
 * encoding, and the payload hash. The record and its transitions are described in docs/once.md.
 */
import * as crypto from 'node:crypto';
import { DEFAULT_FENCE_GRACE_MS } from '../acquire.js';
import type { NotStorableReason } from '../errors.js';
import type { Identity } from '../events.js';
import { canonicalJson } from '../keys.js';
import {
  type CompleteReply,
  ONCE_CLAIM,
  ONCE_COMPLETE,
  ONCE_EXTEND,
  ONCE_RELEASE,
  type OnceClaimReply,
} from '../scripts.js';
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

let lastText: string | undefined;
let lastDigest = '';

/**
 * 22 base64url characters: 132 bits of SHA-256 (a record's key holds its idempotency key's digest). The last
 * text's digest is kept: an invocation asks for its key's digest for the record's key and again for each of
 * its decision lines.
 */
export function digest(text: string): string {
  if (text !== lastText) {
    lastDigest = sha256(text).slice(0, 22);
    lastText = text;
  }
  return lastDigest;
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

/** What a claim found, or that it failed (`error`: the store's, or one call's of a batch). */
export type ClaimReply =
  | Exclude<OnceClaimReply, { kind: 'completed' }>
  | { kind: 'completed'; value: unknown }
  | { kind: 'failed'; error: unknown };

/** A claim's reply (ONCE_CLAIM.parse), its stored result decoded. */
export function parseClaim(reply: unknown, storeName: string): ClaimReply {
  const r = ONCE_CLAIM.parse(reply, storeName);
  return r.kind === 'completed' ? { kind: 'completed', value: decodeResult(r.text) } : r;
}

/**
 * A claim reply that found the record completed: its stored text and the record's remaining life (PTTL) as
 * ONCE_CLAIM reports it (undefined when it does not); undefined for any other reply. For the local cache.
 */
export function completedOf(reply: unknown): { text: unknown; leftMs: number | undefined } | undefined {
  const r = Array.isArray(reply) && reply.length > 0 ? ONCE_CLAIM.parse(reply) : undefined;
  return r?.kind === 'completed' ? { text: r.text, leftMs: r.leftMs } : undefined;
}

/** What a claim reply would be for a completed record holding `text` (an answer from the local cache). */
export function completedReply(text: unknown, _store?: string): ClaimReply {
  return { kind: 'completed', value: decodeResult(text) };
}

export type { CompleteReply };
/** ONCE_COMPLETE's reply (its parse). */
export const parseComplete = (reply: unknown): CompleteReply => ONCE_COMPLETE.parse(reply);

// -------------------------------------------------------------------------------------- result encoding

/**
 * What a duplicate gets when the first invocation's result was not stored (`unstorable: 'marker'`, the default):
 * the handler ran and is not run again, but its value could not be kept exactly. `detail` names the type and
 * where it sits (`$.createdAt is a Date`) or the size, never the value.
 */
export interface ResultNotStored {
  readonly oncely: 'result-not-stored';
  readonly reason: NotStorableReason;
  readonly detail?: string;
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

type Change = { reason: NotStorableReason; detail: string };

const a = (type: string) => `${/^[aeiou]/i.test(type) ? 'an' : 'a'} ${type}`;

/**
 * The result contract: a duplicate gets exactly the value the first caller got (deep-equal, same types), or a
 * ResultNotStored marker. A value is stored as JSON only when `JSON.parse(JSON.stringify(value))` gives it back
 * unchanged; this names the first place where it would not (or undefined when it would): no JSON form at all
 * (`not-serialisable`: a bigint, function or symbol, a circular structure), or a different value
 * (`changed-by-json`: a Date, Map, Set, Buffer or class instance, anything with toJSON, NaN, ±Infinity, -0,
 * undefined in an object or array, symbol keys, an object without a prototype). One walk, no allocation.
 */
export function jsonChange(value: unknown): Change | undefined {
  const found = walk(value, []);
  if (!found) return undefined;
  const path = `$${found.path.reverse().join('')}`;
  return { reason: found.reason, detail: `${path} ${found.what}` };
}

/** What walk() found: the place is built on the way back up, so a value that passes allocates no path. */
type Found = { reason: NotStorableReason; what: string; path: string[] };

const found = (reason: NotStorableReason, what: string): Found => ({ reason, what, path: [] });

function walk(v: unknown, parents: object[]): Found | undefined {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      if (Number.isFinite(v) && !Object.is(v, -0)) return undefined;
      return found('changed-by-json', `is ${Object.is(v, -0) ? '-0' : v}`);
    case 'undefined':
      return found('changed-by-json', 'is undefined');
    case 'object': {
      if (v === null) return undefined;
      if (parents.includes(v)) return found('not-serialisable', 'is circular');
      const proto = Object.getPrototypeOf(v);
      const array = Array.isArray(v);
      if (!array && proto !== Object.prototype) {
        const type = proto === null ? 'object without a prototype' : proto.constructor?.name || 'object';
        return found('changed-by-json', `is ${a(type)}`);
      }
      if (typeof (v as { toJSON?: unknown }).toJSON === 'function')
        return found('changed-by-json', 'has a toJSON method');
      parents.push(v);
      let f: Found | undefined;
      if (array) {
        for (let i = 0; i < v.length; i++) {
          f = walk(v[i], parents);
          if (f) {
            f.path.push(`[${i}]`);
            break;
          }
        }
      } else if (Object.getOwnPropertySymbols(v).length > 0) {
        f = found('changed-by-json', 'has symbol keys');
      } else {
        for (const k of Object.keys(v)) {
          f = walk((v as Record<string, unknown>)[k], parents);
          if (f) {
            f.path.push(`.${k}`);
            break;
          }
        }
      }
      parents.pop();
      return f;
    }
    default:
      return found('not-serialisable', `is ${a(typeof v)}`);
  }
}

export function encodeResult(value: unknown, maxBytes: number): Encoded {
  if (value === undefined) return { ok: true, text: 'u' };
  const change = jsonChange(value);
  if (change) return { ok: false, ...change };
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    // a getter that throws
    return { ok: false, reason: 'not-serialisable', detail: (err as Error).message, cause: err };
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

export function notStoredMarker(e: Extract<Encoded, { ok: false }>): ResultNotStored {
  return {
    oncely: 'result-not-stored',
    reason: e.reason,
    detail: e.detail,
    ...(e.bytes !== undefined ? { bytes: e.bytes } : {}),
  };
}

export function markerText(e: Extract<Encoded, { ok: false }>): string {
  return `m${JSON.stringify(notStoredMarker(e))}`;
}
