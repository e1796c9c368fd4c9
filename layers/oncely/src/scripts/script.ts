/** What every Lua script is, and the one parser of the owner reply several of them give. */
import { invalid, OncelyError, type ValidationError } from '../errors.js';

/** A Lua script, as a store runs it (oncely's own, or one of yours). */
export interface Script {
  readonly name: string;
  /**
   * The KEYS it takes, checked on every call: exactly this many; `[min, max]` where the last ones may be left
   * out (EXTEND and RELEASE without the fence key, for a window); `'pairs'` for the set scripts (a lock and its
   * fence, per lock).
   */
  readonly keys: number | readonly [min: number, max: number] | 'pairs';
  readonly lua: string;
  readonly sha1: string;
  /**
   * True for a script whose write must reach a replica before it counts (acquire, extend, fence raise, leader
   * announcement, run-once claim and completion); `wrote(reply)` says whether this reply did write.
   */
  readonly grants?: { wrote(reply: unknown): boolean };
}

/**
 * One of oncely's scripts, with the one reader of its reply: `parse` turns the raw reply into a named value
 * (R), so no caller compares bare numbers. It throws an OncelyError naming the script (and the store, when
 * given) for a reply the script never gives.
 */
export interface ScriptOf<R> extends Script {
  parse(reply: unknown, store?: string): R;
}

/** The error for a reply `script` never gives (a store or proxy that answered something else). */
export function unexpectedReply(script: string, reply: unknown, store?: string): OncelyError {
  return new OncelyError(`${store ? `${store}: ` : ''}unexpected ${script} reply ${JSON.stringify(reply)}`);
}

/** The reply as an array of at least `min` elements, or the unexpected-reply error. */
export function arrayReply(script: string, reply: unknown, min: number, store?: string): unknown[] {
  if (!Array.isArray(reply) || reply.length < min) throw unexpectedReply(script, reply, store);
  return reply;
}

/** Whether `count` KEYS fit `script` (on every call: allocates nothing). */
export function takesKeys(script: Script, count: number): boolean {
  const k = script.keys;
  if (typeof k === 'number') return count === k;
  if (k === 'pairs') return count > 0 && count % 2 === 0;
  return count >= k[0] && count <= k[1];
}

/** The error for `count` KEYS passed to a script that takes a different number, naming the script. */
export function keysMismatch(script: Script, count: number): ValidationError {
  const k = script.keys;
  const takes = typeof k === 'number' ? k : k === 'pairs' ? 'pairs of' : `${k[0]} to ${k[1]}`;
  return invalid([`takes ${takes} keys, got ${count}`], `script "${script.name}"`);
}

/** The error for the first call whose KEYS do not fit its script, or undefined when all fit. */
export function callsMismatch(
  calls: readonly { readonly script: Script; readonly keys: readonly string[] }[],
): ValidationError | undefined {
  for (const c of calls)
    if (!takesKeys(c.script, c.keys.length)) return keysMismatch(c.script, c.keys.length);
  return undefined;
}

/** A `grants` test: the reply (or its first element) is one of `values`. */
export const firstIs =
  (...values: number[]) =>
  (reply: unknown): boolean =>
    values.includes(Number(Array.isArray(reply) ? reply[0] : reply));

/** What EXTEND, RELEASE, ONCE_EXTEND and ONCE_RELEASE reply: 1 ours (done), -1 another owner's, 0 gone. */
export type OwnerReply = 'ours' | 'theirs' | 'gone' | 'unexpected';

/** The one parser of the 1 / -1 / 0 reply. */
export function ownerReply(reply: unknown): OwnerReply {
  const r = Number(reply);
  return r === 1 ? 'ours' : r === -1 ? 'theirs' : r === 0 ? 'gone' : 'unexpected';
}
