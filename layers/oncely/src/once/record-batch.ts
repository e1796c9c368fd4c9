/**
 * A batch's records as batch work: the claims (ONCE_CLAIM) and completions (ONCE_COMPLETE) of one round trip
 * merged into one ONCE_CLAIM_MANY / ONCE_COMPLETE_MANY call per slot group (one on a single node; on a cluster,
 * one per hash tag that two or more of them share), and each merged reply split back into the reply each call
 * would have had alone. Callers send and read single-record calls as before; a record alone keeps its own
 * script (the single event's path is unchanged).
 */
import { randomFillSync } from 'node:crypto';
import { newToken } from '../acquire.js';
import {
  ONCE_CLAIM,
  ONCE_CLAIM_MANY,
  ONCE_COMPLETE,
  ONCE_COMPLETE_MANY,
  type PerRecord,
  type Script,
} from '../scripts.js';
import type { CallResult, ScriptArg, ScriptCall, Store } from '../transport/types.js';
import { roundTrip } from './record-lease.js';

/**
 * `n` owner tokens, as newToken's (128 random bits, base64url), drawn in one CSPRNG call for a batch's records,
 * used at once and kept nowhere (a single event takes newToken's, from its pool bounded in age: see acquire.ts).
 */
export function newTokens(n: number): string[] {
  if (n === 1) return [newToken()]; // a single event: the lock's own pooled draw
  const bytes = randomFillSync(Buffer.allocUnsafe(16 * n));
  const tokens: string[] = new Array(n);
  for (let i = 0; i < n; i++) tokens[i] = bytes.toString('base64url', 16 * i, 16 * i + 16);
  return tokens;
}

/** Records per merged script: a long batch (SQS allows 10,000) holds the server in slices, in one round trip. */
export const MAX_PER_SCRIPT = 100;

/** A merged call and the places, in the calls given, of the calls it stands for (one: sent as it was). */
interface Merged {
  readonly call: ScriptCall;
  readonly of: number[];
}

/**
 * The single-record script each merged script stands for, and how a call's args split: `shared` (the same for
 * every record of a merged call, first in its ARGV) and `own` (per record, in order).
 */
const MERGES = new Map<Script, { many: PerRecord; shared: readonly number[]; own: readonly number[] }>([
  // ONCE_CLAIM ARGV: token, ttlMs, payloadHash, fenceTtlMs, nowMs -> ttlMs, fenceTtlMs, nowMs | token, hash
  [ONCE_CLAIM, { many: ONCE_CLAIM_MANY, shared: [1, 3, 4], own: [0, 2] }],
  // ONCE_COMPLETE ARGV: token, fence, result, retentionMs, fenceTtlMs, payloadHash
  //   -> retentionMs, fenceTtlMs | token, fence, result, payloadHash
  [ONCE_COMPLETE, { many: ONCE_COMPLETE_MANY, shared: [3, 4], own: [0, 1, 2, 5] }],
]);

/** A merged call being filled: its script, slot group and shared args, and the KEYS and ARGV so far. */
interface Open {
  readonly from: Script;
  readonly tag: string;
  readonly first: ScriptCall;
  readonly merged: Merged;
  readonly keys: string[];
  readonly args: ScriptArg[];
}

/**
 * `calls` as few: ONCE_CLAIM and ONCE_COMPLETE calls that share a slot group (every call on a single node; the
 * same hash tag, so the same slot, on a cluster) and their shared args merged, up to MAX_PER_SCRIPT per call;
 * any other call as it was. The open groups are few (one per script on a single node): each call is matched
 * against them in place, with no group key built per call.
 */
export function merge(calls: readonly ScriptCall[], cluster: boolean): Merged[] {
  const out: Merged[] = [];
  const open: Open[] = [];
  for (let n = 0; n < calls.length; n++) {
    const call = calls[n]!;
    const m = MERGES.get(call.script);
    if (m === undefined) {
      out.push({ call, of: [n] });
      continue;
    }
    const tag = cluster ? tagOf(call.keys[0]!) : '';
    let at: Open | undefined;
    for (let g = open.length - 1; g >= 0; g--) {
      const o = open[g]!;
      if (o.from === call.script && o.tag === tag && sameArgs(o.first.args, call.args, m.shared)) {
        at = o;
        break;
      }
    }
    if (at === undefined || at.merged.of.length >= MAX_PER_SCRIPT) {
      const keys = call.keys.slice();
      const args: ScriptArg[] = [];
      for (const i of m.shared) args.push(call.args[i]!);
      for (const i of m.own) args.push(call.args[i]!);
      const merged: Merged = { call: { script: m.many, keys, args }, of: [n] };
      if (at !== undefined) open.splice(open.indexOf(at), 1);
      open.push({ from: call.script, tag, first: call, merged, keys, args });
      out.push(merged);
      continue;
    }
    for (const k of call.keys) at.keys.push(k);
    for (const i of m.own) at.args.push(call.args[i]!);
    at.merged.of.push(n);
  }
  // A group of one goes as its own script.
  for (let g = 0; g < out.length; g++) {
    const o = out[g]!;
    const alone = calls[o.of[0]!]!;
    if (o.of.length === 1 && o.call !== alone) out[g] = { call: alone, of: o.of };
  }
  return out;
}

/** Whether two calls' args agree at every place in `at` (the args a merged call shares). */
function sameArgs(a: readonly ScriptArg[], b: readonly ScriptArg[], at: readonly number[]): boolean {
  for (const i of at) if (a[i] !== b[i] && String(a[i]) !== String(b[i])) return false;
  return true;
}

/** A key's hash tag (what its cluster slot is computed from), or the whole key without one. */
function tagOf(key: string): string {
  const open = key.indexOf('{');
  const close = open === -1 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/**
 * One round trip for `calls`, merged (see merge): one result per call given, in order, each the reply its own
 * script gives (a merged call's reply split by its script's parse). A merged call that fails fails each of
 * its records with its error. Rejects when the round trip fails.
 */
export async function batchTrip(store: Store, calls: readonly ScriptCall[]): Promise<CallResult[]> {
  if (calls.length < 2) return roundTrip(store, calls);
  const merged = merge(calls, store.kind === 'cluster');
  const results = await roundTrip(
    store,
    merged.map((m) => m.call),
  );
  const out: CallResult[] = new Array(calls.length);
  merged.forEach((m, g) => {
    const r = results[g] ?? { ok: false, error: new Error('no reply') };
    if (m.of.length === 1 || !r.ok) {
      for (const n of m.of) out[n] = r;
      return;
    }
    let replies: unknown[];
    try {
      replies = (m.call.script as PerRecord).parse(r.value, store.name, m.of.length);
    } catch (err) {
      for (const n of m.of) out[n] = { ok: false, error: err as Error };
      return;
    }
    m.of.forEach((n, j) => {
      out[n] = { ok: true, value: replies[j] };
    });
  });
  return out;
}
