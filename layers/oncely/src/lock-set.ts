/**
 * Several keys held as one lease (`lock.acquire([k1, k2, ...])`): all or none. One script when every key shares
 * a hash tag (one cluster slot), otherwise key by key in sorted order with rollback, so two contenders for
 * overlapping sets never deadlock. Each key keeps its own fence.
 */

import {
  type AcquireOptions,
  type Attempt,
  acquireLoop,
  acquireProblems,
  failedOn,
  keyProblems,
  newToken,
  takenOn,
} from './acquire.js';
import type { Clock } from './clock.js';
import { StoreError } from './errors.js';
import {
  checkOutcome,
  extendOutcomeOf,
  type Lease,
  type LeaseDriver,
  type LeaseInit,
  type ReleaseResult,
  validUntil,
} from './lease.js';
import {
  ACQUIRE,
  EXTEND,
  LOCK_ACQUIRE_ALL,
  LOCK_CHECK,
  LOCK_EXTEND_ALL,
  LOCK_RELEASE_ALL,
  RELEASE,
} from './scripts/lock.js';
import type { OwnerReply, ScriptOf } from './scripts/script.js';
import { hashTag } from './sharded.js';
import type { Store } from './transport/types.js';
import { check, ttlProblems } from './validate.js';

/** What the key-set code needs of the Lock it works for. */
export interface LockCore {
  readonly store: Store;
  readonly clock: Clock;
  /** The single-key driver: a rollback releases key by key. */
  readonly driver: LeaseDriver;
  keyOf(key: string): string;
  fenceKeyOf(key: string): string;
  drift(ttlMs: number): number;
  lease(init: Omit<LeaseInit, 'drift' | 'clock' | 'onError'>): Lease;
  giveBack(key: string, release: () => Promise<ReleaseResult>, ttlMs: number): Promise<unknown>;
  releaseOrGiveBack(key: string, release: () => Promise<ReleaseResult>, ttlMs: number): Promise<void>;
  /** How long a fence counter outlives the lease that last used it. */
  readonly fenceGraceMs: number;
  /** ACQUIRE's and LOCK_ACQUIRE_ALL's arguments: token, ttl, the counter's life, the fallback time floor. */
  acquireArgs(token: string, ttlMs: number): (string | number)[];
}

export async function tryAcquireAll(
  core: LockCore,
  keys: readonly string[],
  options: { ttlMs: number },
): Promise<Lease | null> {
  const set = keySet(core, keys, [...ttlProblems(options?.ttlMs)], 'tryAcquire');
  const token = newToken();
  const result = await attemptAll(core, set, options.ttlMs, token);
  if (result.error) {
    if (result.error instanceof StoreError && result.error.ambiguous) {
      void core.giveBack(set.label, () => set.driver.release(set.label, token), options.ttlMs);
    }
    throw result.error;
  }
  return result.lease;
}

export async function acquireAll(
  core: LockCore,
  keys: readonly string[],
  options: AcquireOptions,
): Promise<Lease> {
  const set = keySet(core, keys, acquireProblems(options), 'acquire');
  const token = newToken();
  let maybeOurs = false;
  try {
    return await acquireLoop(
      set.label,
      async () => {
        const r = await attemptAll(core, set, options.ttlMs, token);
        if (r.error instanceof StoreError && r.error.ambiguous) maybeOurs = true;
        return r;
      },
      options,
      core.clock,
    );
  } catch (err) {
    if (maybeOurs)
      await core.releaseOrGiveBack(set.label, () => set.driver.release(set.label, token), options.ttlMs);
    throw err;
  }
}

/** Validates a key set; its sorted order, whether one script can take it, and a driver for the lease. */
function keySet(core: LockCore, keys: readonly string[], more: string[], what: string): KeySet {
  const problems = keys.length === 0 ? ['keys must not be empty'] : [];
  keys.forEach((k, i) => {
    for (const p of keyProblems(k)) problems.push(`keys[${i}]: ${p}`);
  });
  if (new Set(keys).size !== keys.length) problems.push('keys must not repeat a key');
  check([...problems, ...more], what);
  const given = [...keys];
  const sorted = [...keys].sort();
  const locks = sorted.map((k) => core.keyOf(k));
  const pairs = sorted.flatMap((k) => [core.keyOf(k), core.fenceKeyOf(k)]);
  const grace = core.fenceGraceMs;
  const oneSlot = new Set(locks.map(hashTag)).size === 1;
  const store = core.store;
  // Each script's 1 / -1 / 0 reply, per key (runMany: one round trip, one per slot group on a cluster). The
  // keys: the lock and its fence, or the lock alone for a script that takes one (LOCK_CHECK).
  const each = async (script: ScriptOf<OwnerReply>, token: string, args: (string | number)[]) => {
    const keysOf = (k: string) => (script.keys === 1 ? [core.keyOf(k)] : [core.keyOf(k), core.fenceKeyOf(k)]);
    const results = await store.runMany(
      sorted.map((k) => ({ script, keys: keysOf(k), args: [token, ...args] })),
    );
    return results.map((r) => {
      if (!r.ok) throw r.error;
      return script.parse(r.value);
    });
  };
  // A set is ours while every key is; another owner on any key means stolen.
  const all = (r: OwnerReply[]) =>
    r.includes('theirs') ? 'theirs' : r.every((x) => x === 'ours') ? 'ours' : 'gone';
  const driver: LeaseDriver = {
    extend: async (_label, token, ttlMs) => {
      const r = oneSlot
        ? LOCK_EXTEND_ALL.parse(await store.run(LOCK_EXTEND_ALL, pairs, [token, ttlMs, ttlMs + grace]))
        : all(await each(EXTEND, token, [ttlMs, ttlMs + grace]));
      return extendOutcomeOf(r);
    },
    release: async (_label, token) => {
      const r = oneSlot
        ? [LOCK_RELEASE_ALL.parse(await store.run(LOCK_RELEASE_ALL, pairs, [token, grace]))]
        : await each(RELEASE, token, [grace]);
      return r.includes('ours') ? 'released' : r.includes('theirs') ? 'not-held' : 'expired';
    },
    check: async (_label, token) => {
      const r = all(await each(LOCK_CHECK, token, []));
      return checkOutcome(r);
    },
  };
  return { label: given.join(', '), given, sorted, oneSlot, driver };
}

async function attemptAll(
  core: LockCore,
  set: KeySet,
  ttlMs: number,
  token: string,
): Promise<Attempt & { error?: Error }> {
  const startedAt = core.clock.now();
  const fenceOf = new Map<string, number>();
  let current: string | undefined; // the key being taken, key by key
  try {
    if (set.oneSlot) {
      const keys = set.sorted.flatMap((k) => [core.keyOf(k), core.fenceKeyOf(k)]);
      const reply = await core.store.run(LOCK_ACQUIRE_ALL, keys, core.acquireArgs(token, ttlMs));
      const r = LOCK_ACQUIRE_ALL.parse(reply, core.store.name);
      if (r.kind === 'held') {
        const nodes = [takenOn(core.store.name, r.remainingMs, set.sorted[r.index])];
        return { lease: null, retryAfterMs: r.remainingMs > 0 ? r.remainingMs : undefined, nodes };
      }
      set.sorted.forEach((k, i) => {
        fenceOf.set(k, r.fences[i] ?? 0);
      });
    } else {
      // Key by key in sorted order: a contender for an overlapping set waits on the same first key.
      for (const k of set.sorted) {
        current = k;
        const reply = await core.store.run(
          ACQUIRE,
          [core.keyOf(k), core.fenceKeyOf(k)],
          core.acquireArgs(token, ttlMs),
        );
        const r = ACQUIRE.parse(reply, core.store.name);
        if (r.kind === 'held') {
          await rollBack(core, fenceOf, token, ttlMs);
          const nodes = [takenOn(core.store.name, r.remainingMs, k)];
          return { lease: null, retryAfterMs: r.remainingMs > 0 ? r.remainingMs : undefined, nodes };
        }
        fenceOf.set(k, r.fence);
      }
    }
  } catch (err) {
    if (!(err instanceof StoreError)) throw err;
    // Give back what this attempt took (all of it when the failing call may have been applied).
    if (fenceOf.size > 0 && !err.ambiguous) await rollBack(core, fenceOf, token, ttlMs);
    return { lease: null, error: err, nodes: [failedOn(core.store.name, err, current)] };
  }
  if (core.clock.now() >= validUntil(startedAt, ttlMs, (t) => core.drift(t))) {
    await core.releaseOrGiveBack(set.label, () => set.driver.release(set.label, token), ttlMs);
    return { lease: null };
  }
  const fences = set.given.map((k) => fenceOf.get(k) ?? 0);
  return {
    lease: core.lease({
      key: set.label,
      keys: set.given,
      fences,
      fence: fences[0] ?? 0,
      token,
      ttlMs,
      startedAt,
      driver: set.driver,
    }),
  };
}

/** Releases the keys of `taken` (an attempt that cannot complete), retrying in the background if need be. */
async function rollBack(
  core: LockCore,
  taken: Map<string, number>,
  token: string,
  ttlMs: number,
): Promise<void> {
  await Promise.all(
    [...taken.keys()].map((k) => core.releaseOrGiveBack(k, () => core.driver.release(k, token), ttlMs)),
  );
}

/** Several keys held as one lease (Lock.acquire([k1, k2, ...])). */
interface KeySet {
  /** The keys in the caller's order, joined: the lease's `key` and the name in errors. */
  readonly label: string;
  readonly given: readonly string[];
  readonly sorted: readonly string[];
  /** Every key shares one hash tag: one script takes, extends and releases them all. */
  readonly oneSlot: boolean;
  readonly driver: LeaseDriver;
}

/** `acquire([k1, k2])` rather than `acquire(k)` (Array.isArray does not narrow a readonly array). */
export function isKeyList(key: string | readonly string[]): key is readonly string[] {
  return Array.isArray(key);
}
