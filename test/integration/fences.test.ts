/**
 * Fence counters with a bounded life (every transport, real servers): a lock name leaves no key behind once
 * its lease and the grace period have passed, and fences still strictly increase per key across counter expiry,
 * across holders and across Redlock quorum changes. The time floor comes from the store's clock (TIME inside
 * the script); the client's clock is used only on a store that refuses TIME in a script.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type RedisProcess, startRedis } from '../../dev/redis-server.js';
import {
  createLock,
  createRedlock,
  type Lease,
  type Redlock,
  type Store,
} from '../../layers/oncely/src/index.js';
import { redisStore } from '../../layers/oncely/src/ioredis.js';
import { useMasters } from '../support/servers.js';
import { startTransport, TRANSPORTS, type TransportFixture } from '../support/transports.js';

const NAMES = 10_000;
const GRACE_MS = 200;

/** Keys on every server behind a fixture (DBSIZE: expired keys count until Redis has actually removed them). */
async function keyCount(servers: readonly RedisProcess[]): Promise<number> {
  let total = 0;
  for (const s of servers) {
    const c = new Redis({ host: s.host, port: s.port, protocol: 2, lazyConnect: true });
    try {
      await c.connect();
      // Masters only: a cluster's replicas (if any) mirror their master's keys.
      const role = (await c.call('ROLE')) as [string];
      if (role[0] === 'master') total += await c.dbsize();
    } finally {
      c.disconnect();
    }
  }
  return total;
}

async function existsOn(s: RedisProcess, key: string): Promise<number> {
  const c = new Redis({ host: s.host, port: s.port, protocol: 2, lazyConnect: true });
  try {
    await c.connect();
    return await c.exists(key);
  } finally {
    c.disconnect();
  }
}

describe.each(TRANSPORTS)('fence counters over %s', (name) => {
  let fx: TransportFixture;
  beforeAll(async () => {
    fx = await startTransport(name);
  });
  afterAll(async () => {
    await fx?.stop();
  });

  it(`${NAMES} distinct names acquired and released leave 0 keys once the grace period has passed`, async () => {
    // A generous call bound: a batch of calls through the REST gateway on a saturated machine is slow.
    const lock = createLock(fx.store({ timeoutMs: 15_000 }), { fenceGraceMs: GRACE_MS });
    await fx.everyServer('FLUSHALL');
    const ttlMs = 60_000; // no lease runs out while we count, however busy the machine
    const names = Array.from({ length: NAMES }, (_, i) => `order-${i}`);
    const leases: Lease[] = [];
    for (let i = 0; i < names.length; i += 200) {
      const batch = await Promise.all(names.slice(i, i + 200).map((n) => lock.tryAcquire(n, { ttlMs })));
      leases.push(...batch.map((l) => l!));
    }
    expect(leases.every((l) => Number.isSafeInteger(l.fence) && l.fence > 0)).toBe(true);
    // Held: a lock key and a fence counter per name.
    const held = await keyCount(fx.servers);
    expect(held).toBe(2 * NAMES);
    for (let i = 0; i < leases.length; i += 200) {
      const released = await Promise.all(leases.slice(i, i + 200).map((l) => l.release()));
      expect(released.every((r) => r === 'released')).toBe(true);
    }
    // Released: the lock keys are gone at once, the counters once the grace period has passed.
    const released = await keyCount(fx.servers);
    expect(released).toBeLessThanOrEqual(NAMES);
    await vi.waitFor(async () => expect(await keyCount(fx.servers)).toBe(0), {
      timeout: 30_000,
      interval: 250,
    });
    console.log(
      `fence counters over ${name}: ${held} keys held, ${released} just after release, 0 once the grace passed`,
    );
  });

  it('fences strictly increase per key across counter expiry and across holders', async () => {
    const store = fx.store();
    // Two holders; one has a wall clock an hour slow: the floor comes from the store's clock, not the client's.
    const a = createLock(store, { fenceGraceMs: 50 });
    const b = createLock(fx.store(), { fenceGraceMs: 50, wallClock: () => Date.now() - 3_600_000 });
    const key = 'expiring-counter';
    const fences: number[] = [];
    for (let round = 0; round < 6; round++) {
      const lease = (await (round % 2 ? b : a).tryAcquire(key, { ttlMs: 5000 })) as Lease;
      fences.push(lease.fence);
      await lease.release();
      // Every other round, wait until the counter itself is gone: the next fence comes from the time floor.
      if (round % 2 === 0) {
        await vi.waitFor(async () => expect(await fx.admin.exists(a.fenceKeyOf(key))).toBe(0), {
          timeout: 10_000,
          interval: 20,
        });
      }
    }
    for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]!);
  });

  it('extend keeps the counter alive with the lease (TTL plus grace), never shortening it', async () => {
    const lock = createLock(fx.store(), { fenceGraceMs: 5_000 });
    const lease = (await lock.tryAcquire('extend-counter', { ttlMs: 1000 }))!;
    const fenceKey = lock.fenceKeyOf('extend-counter');
    const ttl0 = await fx.admin.pttl(fenceKey);
    expect(ttl0).toBeGreaterThan(4_000);
    expect(ttl0).toBeLessThanOrEqual(6_000);
    await lease.extend(20_000);
    expect(await fx.admin.pttl(fenceKey)).toBeGreaterThan(20_000);
    await lease.extend(1000); // a shorter lease does not cut the counter's life
    expect(await fx.admin.pttl(fenceKey)).toBeGreaterThan(20_000);
    await lease.release();
  });
});

describe('the time floor', () => {
  let plain: RedisProcess;
  let noTime: RedisProcess;
  const stores: Store[] = [];
  beforeAll(async () => {
    plain = await startRedis();
    // A store that refuses TIME (as a scripting engine that forbids clock reads would): the client's clock.
    noTime = await startRedis({ args: ['--rename-command', 'TIME', ''] });
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await Promise.allSettled([plain?.stop(), noTime?.stop()]);
  });
  const storeOf = (s: RedisProcess) => {
    const store = redisStore({ host: s.host, port: s.port });
    stores.push(store);
    return store;
  };

  it("comes from the store's clock where the store allows TIME in a script", async () => {
    const future = Date.now() + 10 * 365 * 86_400_000;
    const lock = createLock(storeOf(plain), { wallClock: () => future });
    const before = Date.now();
    const lease = (await lock.tryAcquire('floor', { ttlMs: 1000 }))!;
    // The store runs on this host's clock; the client's (ten years ahead) was not used.
    expect(lease.fence).toBeGreaterThanOrEqual(before - 1000);
    expect(lease.fence).toBeLessThan(before + 60_000);
    await lease.release();
  });

  it("falls back to the client's clock on a store that refuses TIME", async () => {
    const future = Date.now() + 10 * 365 * 86_400_000;
    const lock = createLock(storeOf(noTime), { wallClock: () => future });
    const lease = (await lock.tryAcquire('floor', { ttlMs: 1000 }))!;
    expect(lease.fence).toBe(future);
    await lease.release();
    const next = (await createLock(storeOf(noTime)).tryAcquire('floor', { ttlMs: 1000 }))!;
    expect(next.fence).toBe(future + 1); // the counter, not the (slower) clock, decides while it lives
    await next.release();
  });
});

describe('Redlock fences across quorum changes and counter expiry', () => {
  const masters = useMasters(5);
  let stores: Store[];
  let redlock: Redlock;
  beforeAll(() => {
    stores = masters().map((m) => redisStore({ host: m.host, port: m.port, timeoutMs: 1000 }));
    redlock = createRedlock(stores, { nodeTimeoutMs: 100, fenceGraceMs: 100 });
  });
  afterAll(async () => {
    for (const m of masters()) if (m.running) m.resume();
    await Promise.all((stores ?? []).map((s) => s.close()));
  });

  it('strictly increasing while different minorities are frozen and counters expire', async () => {
    const key = 'quorum-fence';
    const fences: number[] = [];
    for (let round = 0; round < 10; round++) {
      // Freeze two nodes (a different pair each round): the quorum is the other three.
      const frozen = [round % 5, (round + 2) % 5].map((i) => masters()[i]!);
      for (const m of frozen) m.pause();
      try {
        // A node frozen last round may apply a queued acquire after its give-back gave up (requests on a closed
        // connection run when it resumes), leaving a key nobody releases for one TTL: wait up to a few TTLs.
        const lease = await redlock.acquire(key, {
          ttlMs: 2000,
          retry: { attempts: 1000, delayMs: 50, maxWaitMs: 3 * 2000 },
        });
        fences.push(lease.fence);
        await lease.release();
      } finally {
        for (const m of frozen) m.resume();
      }
      if (round % 3 === 2) {
        // Let every counter expire (the grace period after the release), then go on.
        await vi.waitFor(
          async () => {
            for (const m of masters()) expect(await existsOn(m, redlock.fenceKeyOf(key))).toBe(0);
          },
          { timeout: 10_000, interval: 50 },
        );
      }
    }
    for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]!);
  });
});
