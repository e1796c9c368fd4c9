/**
 * Sharded locks across independent endpoints: a Store that maps each key to one of several stores by
 * rendezvous (highest-random-weight) hashing, for users who outgrow one database over REST.
 *
 * Every key of a script call must share one hash tag (`oncely:{name}:lock` and `oncely:{name}:fence` do), and
 * the tag alone picks the shard, so one lock's keys always live together. Rendezvous hashing scores every
 * (shard, tag) pair and picks the highest: removing a shard moves only the tags it owned, adding one moves only
 * the tags it now wins (about 1/N of them). There is no replication: a lock on a shard that is removed or fails
 * is lost (or unavailable) with it. Over TCP, Redis Cluster is the better answer (slots move with their keys,
 * replicas fail over); see docs/redlock.md.
 */
import { createHash } from 'node:crypto';
import type { Script } from './scripts.js';
import type { CallResult, ScriptArg, ScriptCall, Store, StoreKind } from './transport/types.js';
import { check } from './validate.js';

export interface Shard {
  /**
   * Stable identity of the shard, hashed with each key: keep it across deployments (changing it moves the
   * shard's keys). @default the store's name (host and port)
   */
  readonly id: string;
  readonly store: Store;
}

export interface ShardedStore extends Store {
  readonly shards: readonly Shard[];
  /** The shard a key (or any key with the same hash tag) lives on. */
  shardOf(key: string): Shard;
}

/** The part of a key that is hashed: the content of the first non-empty `{…}`, else the whole key (as Redis Cluster). */
export function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open === -1) return key;
  const close = key.indexOf('}', open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

/** The rendezvous score of a shard for a tag: the first 48 bits of SHA-256(id, NUL, tag). */
function score(id: string, tag: string): number {
  return createHash('sha256').update(id).update('\0').update(tag).digest().readUIntBE(0, 6);
}

/** Index of the id with the highest score for `key`'s hash tag (ties, vanishingly rare, go to the lower id). */
export function rendezvous(ids: readonly string[], key: string): number {
  const tag = hashTag(key);
  let best = -1;
  let bestScore = -1;
  ids.forEach((id, i) => {
    const s = score(id, tag);
    if (s > bestScore || (s === bestScore && best >= 0 && id < ids[best]!)) {
      best = i;
      bestScore = s;
    }
  });
  return best;
}

/**
 * A Store over several stores, each key on one of them by rendezvous hashing. Pass Stores (their names are
 * their ids) or `{ id, store }`. Use it wherever a Store goes: `createLock(shardedStore([...]))`.
 * `kind` is the first shard's kind (StoreKind names a transport; shards may mix them).
 */
export function shardedStore(shards: readonly (Store | Shard)[]): ShardedStore {
  const list: Shard[] = (Array.isArray(shards) ? shards : []).map((s) =>
    'store' in s && 'id' in s ? { id: s.id, store: s.store } : { id: (s as Store).name, store: s as Store },
  );
  const problems: string[] = [];
  if (list.length === 0) problems.push('shards must be a non-empty array');
  const ids = list.map((s) => s.id);
  if (ids.some((id) => typeof id !== 'string' || id.length === 0))
    problems.push('every shard id must be a non-empty string');
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup !== undefined)
    problems.push(`shard ids must be unique: "${dup}" appears twice (give each store an id)`);
  check(problems, 'shardedStore');

  const indexOf = (keys: readonly string[]): number => {
    const [first] = keys;
    if (first === undefined)
      check(['a sharded store needs at least one key per call to route it'], 'shardedStore');
    const tag = hashTag(first!);
    const other = keys.find((k) => hashTag(k) !== tag);
    if (other !== undefined)
      check([`keys of one call must share a hash tag: "${first}" and "${other}" differ`], 'shardedStore');
    return rendezvous(ids, first!);
  };
  const kind: StoreKind = list[0]!.store.kind;

  return {
    kind,
    name: `sharded(${ids.join(', ')})`,
    shards: list,
    shardOf: (key: string) => list[rendezvous(ids, key)]!,
    run(script: Script, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> {
      return list[indexOf(keys)]!.store.run(script, keys, args);
    },
    async runMany(calls: readonly ScriptCall[]): Promise<CallResult[]> {
      const groups = new Map<number, number[]>();
      calls.forEach((call, i) => {
        const shard = indexOf(call.keys);
        const g = groups.get(shard);
        if (g) g.push(i);
        else groups.set(shard, [i]);
      });
      const results: CallResult[] = new Array(calls.length);
      await Promise.all(
        [...groups].map(async ([shard, indexes]) => {
          try {
            const replies = await list[shard]!.store.runMany(indexes.map((i) => calls[i]!));
            indexes.forEach((callIndex, j) => {
              results[callIndex] = replies[j]!;
            });
          } catch (err) {
            // One shard down fails its calls only.
            const error = err instanceof Error ? err : new Error(String(err));
            for (const i of indexes) results[i] = { ok: false, error };
          }
        }),
      );
      return results;
    },
    async close(): Promise<void> {
      await Promise.all(list.map((s) => s.store.close()));
    },
  };
}
