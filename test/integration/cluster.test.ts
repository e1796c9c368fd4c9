import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisCluster, startCluster } from '../../dev/redis-server.js';
import { createLock, fromEnv, type Lock, type Store, StoreAuthError } from '../../layers/oncely/src/index.js';
import { clusterStore } from '../../layers/oncely/src/ioredis.js';
import { ACQUIRE } from '../../layers/oncely/src/scripts.js';
import { keySlot } from '../../layers/oncely/src/transport/cluster.js';

/** Cluster topology changes under a held lock: the store follows MOVED and keeps working. */
describe('cluster: a slot migrates while a lock is held', () => {
  let cluster: RedisCluster;
  let store: Store;
  let lock: Lock;
  const admins: Redis[] = [];
  const admin = (port: number) => {
    const c = new Redis({ host: '127.0.0.1', port, protocol: 2 });
    admins.push(c);
    return c;
  };

  beforeAll(async () => {
    cluster = await startCluster({ masters: 3 });
    store = clusterStore({ nodes: cluster.seeds });
    lock = createLock(store);
  });
  afterAll(async () => {
    await store?.close();
    for (const c of admins) c.disconnect();
    await cluster?.stop();
  });

  it('extend and release follow MOVED to the new owner; batches spanning slots still work', async () => {
    const key = 'migrating-lock';
    const lease = (await lock.tryAcquire(key, { ttlMs: 30_000 }))!;
    const slot = keySlot(lock.keyOf(key));

    // Find the owner (A) and another node (B) with their ids.
    const nodes = await Promise.all(
      cluster.nodes.map(async (n) => {
        const c = admin(n.port);
        return { port: n.port, c, id: String(await c.call('CLUSTER', 'MYID')) };
      }),
    );
    const owners = await Promise.all(
      nodes.map(async (n) => Number(await n.c.call('CLUSTER', 'COUNTKEYSINSLOT', String(slot)))),
    );
    const a = nodes[owners.indexOf(2)]!; // the lock key and its fence key
    const b = nodes.find((n) => n !== a)!;

    await b.c.call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', a.id);
    await a.c.call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', b.id);
    const keys = (await a.c.call('CLUSTER', 'GETKEYSINSLOT', String(slot), '100')) as string[];
    expect(keys.sort()).toEqual([lock.fenceKeyOf(key), lock.keyOf(key)].sort());
    await a.c.call('MIGRATE', '127.0.0.1', String(b.port), '', '0', '5000', 'KEYS', ...keys);
    for (const n of nodes) await n.c.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', b.id);
    expect(await b.c.get(lock.fenceKeyOf(key))).toBe(String(lease.fence)); // the counter moved with the slot
    expect(Number(await b.c.call('CLUSTER', 'COUNTKEYSINSLOT', String(slot)))).toBe(2);

    await lease.extend(30_000); // sent to A first: MOVED → B
    expect(await b.c.pttl(lock.keyOf(key))).toBeGreaterThan(25_000);
    const next = await lock.tryAcquire(key, { ttlMs: 1000 });
    expect(next).toBeNull();
    const batch = await store.runMany(
      [key, 'other-1', 'other-2', 'other-3'].map((k) => ({
        script: ACQUIRE,
        keys: [lock.keyOf(k), lock.fenceKeyOf(k)],
        args: ['batch-token', 5000, 65_000, Date.now()],
      })),
    );
    expect(batch[0]).toMatchObject({ ok: true, value: [0, expect.any(Number)] });
    expect(batch.slice(1)).toEqual([
      { ok: true, value: [1, expect.any(Number)] },
      { ok: true, value: [1, expect.any(Number)] },
      { ok: true, value: [1, expect.any(Number)] },
    ]);
    expect(await lease.release()).toBe('released');
    const after = (await lock.tryAcquire(key, { ttlMs: 1000 }))!;
    expect(after.fence).toBeGreaterThan(lease.fence);
  });
});

/** The ElastiCache / MemoryDB AUTH shape on a real cluster: every node requires the password. */
describe('cluster with an AUTH token', () => {
  const password = 'cluster-auth-token-1234';
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startCluster({ masters: 3, password });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('fromEnv with ONCELY_REDIS_CLUSTER_NODES and ONCELY_REDIS_PASSWORD locks across the shards', async () => {
    const store = fromEnv({
      ONCELY_REDIS_CLUSTER_NODES: cluster.seeds.map((s) => `${s.host}:${s.port}`).join(','),
      ONCELY_REDIS_PASSWORD: password,
    });
    const lock = createLock(store);
    const keys = Array.from({ length: 12 }, (_, i) => `auth-${i}`);
    const slots = new Set(keys.map((k) => keySlot(lock.keyOf(k))));
    expect(slots.size).toBeGreaterThan(3); // spread over the shards
    for (const k of keys) expect((await lock.tryAcquire(k, { ttlMs: 5000 }))?.fence).toBeGreaterThan(0);
    await store.close();
  });

  it('a wrong password is a StoreAuthError, within the timeout, that never contains it', async () => {
    const wrong = 'wrong-cluster-token-9876';
    const store = clusterStore({ nodes: cluster.seeds, password: wrong, timeoutMs: 1000 });
    const err = await createLock(store)
      .tryAcquire('auth-x', { ttlMs: 5000 })
      .catch((e) => e);
    await store.close();
    expect(err).toBeInstanceOf(StoreAuthError);
    expect(`${err.message} ${err.stack} ${String(err.cause)}`).not.toContain(wrong);
  });
});
