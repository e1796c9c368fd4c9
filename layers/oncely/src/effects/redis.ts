/**
 * `oncely/effects/redis`: a fenced SET on any Redis key, on the store oncely locks with or on another one
 * (any oncely Store: REST, TCP standalone or cluster). One script (EFFECT_SET) compares the fence with the
 * highest the key has seen and writes only when it is not older, so a holder that lost its lease and wakes up
 * late cannot overwrite its successor's write:
 *
 *   await fencedSet(store, { key: `order:${id}:status`, value: 'charged', fence: once.fence });
 *
 * The highest fence lives in a sibling key, `<key>:oncely-fence`, in the same cluster slot (the key's hash tag,
 * or the whole key made one). A refused write throws StaleFenceError and writes nothing.
 */

import { staleFence } from '../errors.js';
import { EFFECT_SET } from '../scripts/effects.js';
import type { Store } from '../transport/types.js';
import { check, wholeProblems } from '../validate.js';
import { fenceProblems } from './fence.js';

export { StaleFenceError } from '../errors.js';

export interface FencedSetInput {
  /** The key written. */
  key: string;
  /** Its new value. */
  value: string;
  /** The writer's fence: `once.fence`, `lease.fence`. */
  fence: number;
  /** Expire the value (and keep its fence at least as long) after this many ms. @default no expiry */
  ttlMs?: number;
  /**
   * Write only if the key does not exist yet: the effect happens once, and a current holder that finds it done
   * gets `false` (nothing written). The fence is checked first: a stale writer is refused either way.
   * @default false
   */
  ifAbsent?: boolean;
}

/** Whether `key` has a Redis Cluster hash tag: a `{`, then a `}` after it with something between. */
function hashTagged(key: string): boolean {
  const open = key.indexOf('{');
  return open >= 0 && key.indexOf('}', open + 1) > open + 1;
}

/** Where `key`'s highest fence is kept: `<key>:oncely-fence`, in the same cluster slot as `key`. */
export function fenceKeyFor(key: string): string {
  // A key with a hash tag keeps it when a suffix is added; a key without one becomes the tag.
  return hashTagged(key) ? `${key}:oncely-fence` : `{${key}}:oncely-fence`;
}

/**
 * Sets `key` to `value` if `fence` is not older than the highest fence written to `key` before (none counts as
 * 0), and resolves `true`; with `ifAbsent`, resolves `false` (nothing written) when the key exists. Throws
 * StaleFenceError (nothing written) when the fence is older, ValidationError for bad input, StoreError when the
 * store fails (an ambiguous one may have written: a retry with the same fence is safe).
 */
export async function fencedSet(store: Store, input: FencedSetInput): Promise<boolean> {
  const { key, value, fence, ttlMs, ifAbsent = false } = input;
  check(
    [
      ...(typeof key === 'string' && key !== '' ? [] : ['key must be a non-empty string']),
      ...(typeof key === 'string' && key.includes('}') && !hashTagged(key)
        ? ['key has a "}" but no hash tag: its fence key cannot share its cluster slot; add a {tag}']
        : []),
      ...(typeof value === 'string' ? [] : ['value must be a string']),
      ...fenceProblems(fence),
      ...(ttlMs === undefined ? [] : wholeProblems('ttlMs', ttlMs, 1, Number.MAX_SAFE_INTEGER, 'ms')),
    ],
    'fencedSet',
  );
  const args = [fence, value, ttlMs ?? '', ...(ifAbsent ? ['NX'] : [])];
  const reply = await store.run(EFFECT_SET, [key, fenceKeyFor(key)], args);
  const r = EFFECT_SET.parse(reply, store.name);
  if (r.kind === 'stale') throw staleFence(key, fence, r.current);
  return r.kind === 'applied';
}
