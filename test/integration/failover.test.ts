/**
 * Locks, fences and run-once records across a Redis Cluster failover, on a real 3 masters + 3 replicas cluster
 * (cluster-node-timeout 1000 ms): the master owning the keys is killed (SIGKILL) or frozen (SIGSTOP) until its
 * replica is promoted. Granting writes count only once a replica has acknowledged them (WAIT, pipelined after
 * the script), so a failover cannot lose a granted lock or a completed record, and a demoted master cannot
 * grant. A few trials each: every trial is a real failover (about 3 s).
 */
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type RedisCluster, type RedisProcess, startCluster } from '../../dev/redis-server.js';
import {
  createLock,
  InProgressError,
  type Lease,
  LockNotAcquiredError,
  ReplicationError,
  type Store,
  StoreError,
  withOnce,
} from '../../layers/oncely/src/index.js';
import { clusterStore } from '../../layers/oncely/src/ioredis.js';
import { ask, awaitPromotion, awaitReplicated, shardOf, waitsOn } from '../support/failover.js';

// Every test here is one or more real failovers (about 3 s each, plus the resync): generous bounds.
vi.setConfig({ testTimeout: 180_000, hookTimeout: 120_000 });

let cluster: RedisCluster;
const stores: Store[] = [];
beforeAll(async () => {
  cluster = await startCluster({ masters: 3, replicas: 1 });
}, 120_000);
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
  for (const n of cluster?.nodes ?? []) if (n.running) n.resume();
  await cluster?.stop();
});

/** A store as a Lambda would have one (a client of its own), closed after the file. */
function store(options: { replicas?: number | 'auto'; timeoutMs?: number } = {}): Store {
  const s = clusterStore({ nodes: cluster.seeds, timeoutMs: options.timeoutMs ?? 2000, ...options });
  stores.push(s);
  return s;
}

/** After a trial: bring the failed node back (it rejoins as a replica) and wait until every shard is 1 + 1. */
async function heal(node: RedisProcess): Promise<void> {
  if (node.running) node.resume();
  else await node.restart();
  await awaitReplicated(cluster);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let n = 0;
const uniqueKey = (label: string) => `${label}-${Date.now()}-${++n}`;

describe('the replica wait', () => {
  it('a grant counts once a replica acknowledged it; with the replica frozen it is refused and given back', async () => {
    const key = uniqueKey('wait');
    const lock = createLock(store());
    const lease = (await lock.tryAcquire(key, { ttlMs: 10_000 }))!;
    expect(lease).not.toBeNull();
    await lease.release();

    const { replicas } = await shardOf(cluster, key);
    const replica = replicas[0]!;
    replica.pause();
    try {
      const err = await lock.tryAcquire(key, { ttlMs: 10_000 }).catch((e) => e);
      expect(err).toBeInstanceOf(ReplicationError);
      expect(err).toMatchObject({ acknowledged: 0, required: 1, ambiguous: true });
      expect(err.message).toMatch(/acquire reached 0 of 1 replica/);
      // Turning the wait off grants on the master alone (what a failover can lose).
      const unsafe = createLock(store({ replicas: 0 }));
      const other = uniqueKey('nowait');
      expect(await unsafe.tryAcquire(other, { ttlMs: 10_000 })).not.toBeNull();
    } finally {
      replica.resume();
    }
    // The refused grant was given back: the key is free again.
    const again = await waitFor(() => lock.tryAcquire(key, { ttlMs: 10_000 }), 10_000);
    expect(again).not.toBeNull();
    await again!.release();
  });
});

/** Retries `fn` until it returns something truthy (store errors count as "not yet"). */
async function waitFor<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      if (!(err instanceof StoreError) || performance.now() > deadline) throw err;
    }
    if (performance.now() > deadline) throw new Error(`nothing within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/**
 * The lagging-replica trial: A acquires while the replica acknowledges nothing, the master dies, the replica
 * is promoted, B acquires. Without the wait both hold the lock (A's write died with the master), and since the
 * counter died too, the fences must come from the time floor. With the wait A is refused.
 */
async function laggingTrial(
  replicas: number | 'auto',
): Promise<{ a: Lease | null; aRefusal: unknown; b: Lease | null }> {
  await awaitReplicated(cluster);
  const key = uniqueKey('lagging');
  const a = createLock(store({ replicas }));
  const b = createLock(store({ replicas }));
  // Warm both clients (slot map, scripts) on this shard.
  await (await a.tryAcquire(`${key}-warm`, { ttlMs: 1000 }))?.release();
  const { master, replicas: reps } = await shardOf(cluster, key);
  const replica = reps[0]!;
  // The replica falls behind: frozen, and its link cut on the master's side, so nothing written from now on
  // (not even what a socket buffer would have held) reaches it before the master dies.
  replica.pause();
  await ask(master, 1000, 'CLIENT', 'KILL', 'TYPE', 'replica');
  let aLease: Lease | null = null;
  let aRefusal: unknown;
  try {
    aLease = await a.tryAcquire(key, { ttlMs: 30_000 }).catch((err: unknown) => {
      aRefusal = err;
      return null;
    });
  } finally {
    await master.kill();
    replica.resume();
  }
  try {
    await awaitPromotion(cluster, replica, key, [master]);
    const bLease = await waitFor(() => b.tryAcquire(key, { ttlMs: 30_000 }), 15_000).catch((err) => {
      console.log(`lagging trial: B not granted: ${err}`);
      return null;
    });
    return { a: aLease, aRefusal, b: bLease };
  } finally {
    await heal(master);
  }
}

describe('failover of the master that owns the key', () => {
  it('lagging replica: without the wait both are granted (the loss); with it A is refused by the replica wait and B granted', async () => {
    const before = await laggingTrial(0);
    expect(before.a).not.toBeNull();
    expect(before.b).not.toBeNull(); // the loss the issue reports, reproduced
    expect(before.b!.fence).toBeGreaterThan(before.a!.fence); // the time floor keeps fences increasing
    const trials = 2;
    let bothGranted = 0;
    for (let i = 0; i < trials; i++) {
      const after = await laggingTrial('auto');
      if (after.a && after.b) bothGranted += 1;
      expect(after.a).toBeNull();
      // Refused because no replica acknowledged it, not for any other failure.
      expect(after.aRefusal).toBeInstanceOf(ReplicationError);
      expect(after.aRefusal).toMatchObject({ acknowledged: 0, required: 1 });
      expect(after.b).not.toBeNull();
    }
    expect(bothGranted).toBe(0);
    console.log(
      `lagging replica: without the wait 1/1 trials both granted; with it ${bothGranted}/${trials}`,
    );
  });
});

/**
 * A resource that remembers the highest fence it accepted and refuses writes below it, and counts what the
 * issue measured: overlaps (two holders inside at once), overlaps it failed to reject (a stale holder's write
 * accepted after a newer holder entered, or a newcomer accepted with a fence not above the holder inside),
 * and fences handed to two different leases.
 */
class FencedResource {
  highest = 0;
  overlaps = 0;
  unrejected = 0;
  repeatedFences = 0;
  entries = 0;
  readonly #inside = new Map<string, { fence: number; overtaken: boolean }>();
  readonly #owners = new Map<number, string>();

  #write(fence: number): boolean {
    if (fence < this.highest) return false;
    this.highest = fence;
    return true;
  }
  enter(token: string, fence: number): void {
    this.entries += 1;
    const owner = this.#owners.get(fence);
    if (owner !== undefined && owner !== token) this.repeatedFences += 1;
    this.#owners.set(fence, token);
    for (const other of this.#inside.values()) {
      this.overlaps += 1;
      other.overtaken = true;
      if (fence <= other.fence && this.highest <= fence) this.unrejected += 1;
    }
    this.#inside.set(token, { fence, overtaken: false });
    this.#write(fence);
  }
  exit(token: string, fence: number): void {
    const me = this.#inside.get(token);
    if (this.#write(fence) && me?.overtaken) this.unrejected += 1;
    this.#inside.delete(token);
  }
}

/** Contenders (each a client of its own) take the lock in turn and write to the resource, until stopped. */
function contend(key: string, contenders: number, resource: FencedResource) {
  let stop = false;
  const granted: number[] = [];
  const runs = Array.from({ length: contenders }, async () => {
    const lock = createLock(store());
    while (!stop) {
      let lease: Lease;
      try {
        lease = await lock.acquire(key, { ttlMs: 2000, retry: { attempts: 50, delayMs: 40, jitterMs: 40 } });
      } catch (err) {
        // What a failover may answer (the node gone, not replicated, the lock busy the whole time): try again.
        // Anything else is a bug and fails the trial.
        if (!(err instanceof StoreError || err instanceof LockNotAcquiredError)) throw err;
        await sleep(20);
        continue;
      }
      granted.push(performance.now());
      resource.enter(lease.token, lease.fence);
      await sleep(5);
      resource.exit(lease.token, lease.fence);
      await lease.release().catch(() => undefined);
    }
  });
  return {
    granted,
    async stop() {
      stop = true;
      await Promise.all(runs);
    },
  };
}

describe('contention through a failover, with a fenced resource', () => {
  it.each(['kill', 'stop'] as const)(
    '%s the master mid-run: 0 unrejected overlaps, 0 repeated fences',
    async (fault) => {
      await awaitReplicated(cluster);
      const key = uniqueKey(`contend-${fault}`);
      const resource = new FencedResource();
      const run = contend(key, 6, resource);
      await waitFor(async () => run.granted.length >= 20, 20_000);
      const { master, replicas } = await shardOf(cluster, key);
      if (fault === 'kill') await master.kill();
      else master.pause();
      const before = run.granted.length;
      try {
        let promotedAt: number;
        try {
          promotedAt = await awaitPromotion(cluster, replicas[0]!, key, [master]);
        } finally {
          // A frozen master wakes up: for a moment it still believes it is the master.
          if (fault === 'stop') master.resume();
        }
        await waitFor(async () => run.granted.filter((t) => t > promotedAt).length >= 20, 20_000);
      } finally {
        await run.stop();
        await heal(master);
      }
      console.log(
        `contention through a failover (${fault}): ${resource.entries} critical sections (${run.granted.length - before} after promotion), ` +
          `${resource.overlaps} overlaps, ${resource.unrejected} unrejected, ${resource.repeatedFences} repeated fences`,
      );
      expect(resource.unrejected).toBe(0);
      expect(resource.repeatedFences).toBe(0);
    },
  );
});

describe('withOnce through a failover', () => {
  it('no completed record lost, no key run twice at once', async () => {
    await awaitReplicated(cluster);
    const KEYS = 100;
    const prefix = uniqueKey('once');
    const running = new Set<string>();
    const runs = new Map<string, number>();
    let concurrent = 0;
    const handler = withOnce(
      async (event: { id: string }) => {
        if (running.has(event.id)) concurrent += 1;
        running.add(event.id);
        const n = (runs.get(event.id) ?? 0) + 1;
        runs.set(event.id, n);
        await sleep(10);
        running.delete(event.id);
        return { id: event.id, run: n };
      },
      { store: store(), namespace: prefix, key: (e) => e.id, payload: false, logLevel: 'silent' },
    );
    const context = { getRemainingTimeInMillis: () => 10_000 } as unknown as Context;
    // The first value each key's duplicates were answered with: a lost completion would run the key again and
    // answer with another value.
    const answered = new Map<string, string>();
    let mismatches = 0;
    const deliver = async (id: string) => {
      for (let attempt = 0; attempt < 200; attempt++) {
        try {
          const value = JSON.stringify(await handler({ id }, context));
          const first = answered.get(id);
          if (first === undefined) answered.set(id, value);
          else if (first !== value) mismatches += 1;
          return;
        } catch (err) {
          // The event source retries what a failover may answer: in progress, store unavailable, not
          // replicated. Anything else (a payload mismatch, a wrong result, a failed expect) fails the test.
          if (!(err instanceof InProgressError || err instanceof StoreError)) throw err;
          await sleep(50);
        }
      }
      throw new Error(`${id} never answered`);
    };
    const ids = Array.from({ length: KEYS }, (_, i) => `${prefix}-${i}`);
    // Deliveries (each id 4 times, interleaved) while the master of a third of the keys is killed.
    const { master, replicas } = await shardOf(cluster, ids[0]!);
    const deliveries = (async () => {
      for (let round = 0; round < 4; round++) {
        await Promise.all(ids.map((id) => deliver(id)));
      }
    })();
    await sleep(300);
    await master.kill();
    try {
      await awaitPromotion(cluster, replicas[0]!, ids[0]!, [master]);
      await deliveries;
    } finally {
      await heal(master);
    }
    // Once more after the failover: every key answers with what it answered first.
    await Promise.all(ids.map((id) => deliver(id)));
    const rerunAfterCompletion = [...runs.values()].filter((n) => n > 1).length;
    console.log(
      `withOnce through a failover: ${KEYS} keys × 5 deliveries, ${mismatches} answered differently, ` +
        `${rerunAfterCompletion} keys run more than once (not completed before), ${concurrent} run twice at once`,
    );
    expect(answered.size).toBe(KEYS);
    expect(mismatches).toBe(0);
    expect(concurrent).toBe(0);
  });
});

describe('recovery', () => {
  it.each(['kill', 'stop'] as const)(
    '%s: a warm store serves within 1 s of promotion; healthy masters see no errors',
    async (fault) => {
      await awaitReplicated(cluster);
      // Routing recovery, with the replica wait off: after a SIGSTOP the old master rejoins as the new one's
      // replica within moments and resyncs, and while it does the default wait refuses grants on the shard (fail
      // closed, for seconds). What 'auto' does right after a kill -9 failover is the next test.
      const s = store({ replicas: 0 });
      const lock = createLock(s);
      const key = uniqueKey(`recover-${fault}`);
      const { master, replicas } = await shardOf(cluster, key);
      // Keys on the two other shards.
      const healthyKeys: string[] = [];
      for (let i = 0; healthyKeys.length < 4; i++) {
        const k = `${key}-h${i}`;
        if ((await shardOf(cluster, k)).master !== master) healthyKeys.push(k);
      }
      for (const k of [key, ...healthyKeys]) await (await lock.tryAcquire(k, { ttlMs: 1000 }))?.release(); // warm
      const healthyErrors: string[] = [];
      let stop = false;
      const healthyLoop = (async () => {
        while (!stop) {
          for (const k of healthyKeys) {
            try {
              await (await lock.tryAcquire(k, { ttlMs: 1000 }))?.release();
            } catch (err) {
              healthyErrors.push(String(err));
            }
          }
          await sleep(20);
        }
      })();
      // Calls on the failing shard: a new one every 50 ms, not waiting for the last (which may hang on the node).
      const served: number[] = [];
      const probes: Promise<void>[] = [];
      const probeLoop = (async () => {
        while (!stop) {
          probes.push(
            lock.tryAcquire(key, { ttlMs: 1000 }).then(
              async (l) => {
                served.push(performance.now());
                await l?.release().catch(() => undefined);
              },
              () => undefined,
            ),
          );
          await sleep(50);
        }
      })();
      await sleep(300);
      if (fault === 'kill') await master.kill();
      else master.pause();
      let promotedAt: number;
      try {
        promotedAt = await awaitPromotion(cluster, replicas[0]!, key, [master]);
        await waitFor(async () => served.some((t) => t > promotedAt), 15_000);
      } finally {
        stop = true;
        if (fault === 'stop') master.resume();
      }
      await Promise.all([healthyLoop, probeLoop, ...probes]);
      const firstServed = served.find((t) => t > promotedAt)!;
      console.log(
        `recovery (${fault}): first call served ${Math.round(firstServed - promotedAt)} ms after promotion was seen; ` +
          `${healthyErrors.length} errors on healthy masters`,
      );
      expect(firstServed - promotedAt).toBeLessThan(1000);
      expect(healthyErrors).toEqual([]);
      await heal(master);
    },
  );

  it("'auto' right after a kill -9 failover: the new master lists no replica, so grants count on it alone within seconds; once the old node is back as its replica, grants wait for it again", async () => {
    await awaitReplicated(cluster);
    const lock = createLock(store());
    const key = uniqueKey('auto-after');
    const { master, replicas } = await shardOf(cluster, key);
    const promoted = replicas[0]!;
    await (await lock.tryAcquire(key, { ttlMs: 1000 }))?.release(); // warm, and acknowledged
    const served: number[] = [];
    const probes: Promise<void>[] = [];
    let stop = false;
    const probeLoop = (async () => {
      while (!stop) {
        probes.push(
          lock.tryAcquire(key, { ttlMs: 1000 }).then(
            async (l) => {
              if (l) served.push(performance.now());
              await l?.release().catch(() => undefined);
            },
            () => undefined,
          ),
        );
        await sleep(50);
      }
    })();
    await sleep(300);
    await master.kill();
    let promotedAt: number;
    try {
      promotedAt = await awaitPromotion(cluster, promoted, key, [master]);
      await waitFor(async () => served.some((t) => t > promotedAt), 15_000);
    } finally {
      stop = true;
    }
    await Promise.all([probeLoop, ...probes]);
    const firstServed = served.find((t) => t > promotedAt)!;
    // Why 'auto' granted: the dead master is not the new master's replica, so the shard lists none and 'auto'
    // waits for none. Nothing can be promoted over this master either, so no failover can lose these grants.
    expect((await shardOf(cluster, key, [master])).replicas).toEqual([]);
    console.log(
      `'auto' after kill -9: first grant ${Math.round(firstServed - promotedAt)} ms after promotion was seen`,
    );
    // Slower than with the wait off (a grant's pipeline meets the stale slot map: MOVED, a refresh, a resend):
    // 8-875 ms measured over 6 runs, 3 with CPU burners, so the bound is 3 s here; 1 s is the routing test's.
    expect(firstServed - promotedAt).toBeLessThan(3000);

    // The old node comes back as the new master's replica (resynced, acknowledging). A grant on a shard that
    // listed no replica has the client look at the slot map again (at most every 5 s): from then on grants
    // wait for the replica (WAITs run on the new master).
    await heal(master);
    const before = await waitsOn(promoted);
    await vi.waitFor(
      async () => {
        const lease = await lock.tryAcquire(key, { ttlMs: 1000 });
        expect(lease).not.toBeNull();
        await lease!.release();
        expect(await waitsOn(promoted)).toBeGreaterThan(before);
      },
      { timeout: 20_000, interval: 250 },
    );
  });
});
