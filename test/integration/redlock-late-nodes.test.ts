/**
 * Redlock nodes that come back: 5 real, independent redis-server masters (nodes 0-2 over TCP, 3-4 over REST
 * through the gateway), 3 of them paused (SIGSTOP) while acquires fail for want of a quorum, then resumed
 * (SIGCONT). The acquires queued on the paused nodes run when they wake: the give-back must still come after
 * them, also when they wake past the TTL, must never take a later attempt's grant, and must stop (reported
 * once) when a node does not wake within the hard limit.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  createRedlock,
  LockNotAcquiredError,
  LockNotReleasedError,
  QuorumError,
  type Redlock,
  type Store,
  upstashStore,
} from '../../layers/oncely/src/index.js';
import { redisStore } from '../../layers/oncely/src/ioredis.js';
import { ACQUIRE } from '../../layers/oncely/src/scripts.js';
import { gatewayFor, useMasters } from '../support/servers.js';

const masters = useMasters(5);
/** Two TCP nodes and one REST node. */
const PAUSED = [0, 2, 4];
/** One observer connection per master (ours, not the stores under test), never used while it is paused. */
let observers: Redis[];

beforeAll(() => {
  observers = masters().map((m) => new Redis({ host: m.host, port: m.port, protocol: 2 }));
});
afterAll(() => {
  for (const o of observers ?? []) o.disconnect();
});

/**
 * Stores for the 5 masters (0-2 TCP, 3-4 REST), each with connections already open, as in a warm process. With
 * `passed`, the TCP stores wrap ioredis clients of ours: a call that times out leaves the connection open, so
 * later calls queue behind it on the same connection (an owned client is dropped on a timeout).
 */
async function warmStores(timeoutMs: number, passed = false): Promise<Store[]> {
  const stores = await Promise.all(
    masters().map(async (m, i) => {
      if (i < 3 && passed) {
        const client = new Redis({ host: m.host, port: m.port, protocol: 2, lazyConnect: true });
        await client.connect();
        const store = redisStore(client);
        const close = async () => {
          await store.close();
          client.disconnect();
        };
        return { kind: store.kind, name: store.name, run: store.run, runMany: store.runMany, close };
      }
      if (i < 3) return redisStore({ host: m.host, port: m.port, timeoutMs });
      const { url, token } = await gatewayFor(m);
      return upstashStore({ url, token, timeoutMs });
    }),
  );
  const warm = createRedlock(stores);
  const lease = (await warm.tryAcquire(uniqueKey('warm'), { ttlMs: 5000 }))!;
  await lease.release();
  return stores;
}

/** How many nodes hold `lockKey` (with `token`, when given). */
async function holding(lockKey: string, token?: string): Promise<number[]> {
  const values = await Promise.all(observers.map((o) => o.get(lockKey)));
  return values.map((v) => (v !== null && (token === undefined || v === token) ? 1 : 0));
}

function pause(): void {
  for (const i of PAUSED) masters()[i]!.pause();
}
function resume(): void {
  for (const i of PAUSED) masters()[i]!.resume();
}

/** Waits until no give-back is running, so none outlives its test. */
async function settled(redlock: Redlock): Promise<void> {
  await vi.waitFor(() => expect(redlock.pendingGiveBacks).toBe(0), { timeout: 20_000, interval: 50 });
}

let n = 0;
const uniqueKey = (label: string) => `${label}-${process.pid}-${++n}`;

/**
 * Polls every master for each key's lock until none holds one, failing if any is left 1 s after `resumedAt`;
 * the failure gives the lock keys per master, and `detail`.
 */
async function noKeysWithinASecond(
  redlock: Redlock,
  keys: readonly string[],
  resumedAt: number,
  detail: string,
): Promise<void> {
  let last: number[][] = [];
  await vi
    .waitFor(
      async () => {
        last = await Promise.all(keys.map((k) => holding(redlock.keyOf(k))));
        expect(last.flat().every((h) => h === 0)).toBe(true);
      },
      { timeout: 1000, interval: 20 },
    )
    .catch(() => {
      const perMaster = masters().map((_, m) => last.reduce((sum, row) => sum + row[m]!, 0));
      throw new Error(
        `lock keys per master ${Math.round(performance.now() - resumedAt)} ms after the resume${detail}: ` +
          perMaster.join(' '),
      );
    });
}

describe('Redlock: paused nodes get their give-back when they come back', () => {
  it.each([
    { connections: 'owned (dropped on a timeout)', passed: false },
    { connections: 'passed in (kept: later calls queue behind the acquire)', passed: true },
  ])(
    '3 of 5 paused, TCP connections $connections: acquires with retries fail for want of a quorum; no lock key on any master within 1 s of the resume',
    async ({ passed }) => {
      const stores = await warmStores(3000, passed);
      const errors: Error[] = [];
      const redlock = createRedlock(stores, { onError: (e) => errors.push(e) });
      // A TTL far beyond the 1 s looked at: keys that go away went because they were given back, not expired.
      const ttlMs = 20_000;
      const keys = [uniqueKey('late'), uniqueKey('late'), uniqueKey('late')];
      pause();
      let resumedAt: number;
      try {
        const results = await Promise.all(
          keys.map((k) =>
            redlock
              .acquire(k, { ttlMs, retry: { attempts: 3, delayMs: 100, jitterMs: 50 } })
              .catch((e: unknown) => e),
          ),
        );
        for (const r of results) expect(r).toBeInstanceOf(LockNotAcquiredError);
      } finally {
        resume();
        resumedAt = performance.now();
      }
      // Each master, polled for each lock key: none left within 1 s of the resume.
      await noKeysWithinASecond(redlock, keys, resumedAt, '');
      await settled(redlock);
      expect(errors).toEqual([]);
      await Promise.all(stores.map((s) => s.close()));
    },
  );

  it.each([
    // The acquire's connection is dropped (its store timeout) before the node timeout: every release goes on
    // another connection (797e7ea left 3 keys on each paused TCP master).
    { connections: 'owned (dropped on a timeout)', passed: false, storeTimeoutMs: 250 },
    // The stores' default timeout (797e7ea mostly passes: its first releases, sent at the node timeout, go on
    // the acquire's connection, behind it; a give-back that waits for the acquire's timeout and stops at the
    // TTL left 3 keys on paused masters).
    { connections: 'owned (dropped on a timeout)', passed: false, storeTimeoutMs: 2000 },
    {
      connections: 'passed in (kept: later calls queue behind the acquire)',
      passed: true,
      storeTimeoutMs: 2000,
    },
  ])(
    '3 of 5 paused for twice the TTL, TCP connections $connections, store timeout $storeTimeoutMs ms: the acquires fail long before the resume; no lock key on any master within 1 s of the resume',
    async ({ passed, storeTimeoutMs }) => {
      // The acquires queued on the paused nodes run at the resume, past the TTL counted from when they were
      // sent: a give-back that stopped at the TTL leaves each key there a TTL more.
      const stores = await warmStores(storeTimeoutMs, passed);
      const errors: Error[] = [];
      const redlock = createRedlock(stores, { onError: (e) => errors.push(e) });
      const ttlMs = 3000;
      const keys = [uniqueKey('long'), uniqueKey('long'), uniqueKey('long')];
      pause();
      const pausedAt = performance.now();
      let resumedAt: number;
      try {
        const results = await Promise.all(
          keys.map((k) =>
            redlock
              .acquire(k, { ttlMs, retry: { attempts: 3, delayMs: 100, jitterMs: 50 } })
              .catch((e: unknown) => e),
          ),
        );
        for (const r of results) expect(r).toBeInstanceOf(LockNotAcquiredError);
        const failedAt = performance.now();
        // Paused at least twice the TTL, and resumed at least 1.5 TTLs after the acquires failed (their
        // give-backs started by then): past any deadline counted from the send.
        await delay(Math.max(pausedAt + 2 * ttlMs, failedAt + 1.5 * ttlMs) - performance.now());
      } finally {
        resume();
        resumedAt = performance.now();
      }
      await noKeysWithinASecond(
        redlock,
        keys,
        resumedAt,
        ` (paused ${Math.round(resumedAt - pausedAt)} ms, TTL ${ttlMs} ms)`,
      );
      await settled(redlock);
      expect(errors).toEqual([]);
      await Promise.all(stores.map((s) => s.close()));
    },
  );

  it("a later attempt's grant survives the give-back of the earlier attempts queued on the same paused nodes", async () => {
    // Long store timeouts: the paused nodes' connections stay open, and all three acquires wait on them.
    const stores = await warmStores(10_000);
    let sent = 0;
    // Resume right after the third attempt's acquire went out to node 0: the node then runs all three.
    const node0 = stores[0]!;
    const watched: Store = {
      kind: node0.kind,
      name: node0.name,
      run: (script, keys, args) => {
        if (script === ACQUIRE && ++sent === 3) setImmediate(resume);
        return node0.run(script, keys, args);
      },
      runMany: (calls) => node0.runMany(calls),
      close: () => node0.close(),
    };
    const nodes = [watched, ...stores.slice(1)];
    const redlock = createRedlock(nodes);
    const key = uniqueKey('later');
    pause();
    let lease: Awaited<ReturnType<Redlock['acquire']>>;
    try {
      lease = await redlock.acquire(key, {
        ttlMs: 20_000,
        retry: { attempts: 8, delayMs: 100, jitterMs: 50 },
      });
    } finally {
      if (sent < 3) resume();
    }
    expect(sent).toBeGreaterThanOrEqual(3);
    // Every give-back of the failed attempts has had its time; the lease still holds a quorum of the nodes.
    await delay(1000);
    const held = await holding(redlock.keyOf(key), lease.token);
    expect(held.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(redlock.quorum);
    expect(await createRedlock(nodes).tryAcquire(key, { ttlMs: 5000 })).toBeNull();
    expect(await lease.release()).toBe('released');
    await settled(redlock);
    await Promise.all(stores.map((s) => s.close()));
  });

  it('a give-back that never lands (the nodes stay paused past the hard limit) goes on past the TTL, is reported once per node, then stops', async () => {
    const stores = await warmStores(1000);
    const errors: { error: Error; at: number }[] = [];
    const ttlMs = 2000;
    // A small hard limit (the default is 5 minutes), twice the TTL.
    const giveBackLimitMs = 2 * ttlMs;
    const redlock = createRedlock(stores, {
      onError: (error) => errors.push({ error, at: performance.now() }),
      giveBackLimitMs,
    });
    const key = uniqueKey('never');
    pause();
    try {
      const sentAt = performance.now();
      await expect(redlock.tryAcquire(key, { ttlMs })).rejects.toBeInstanceOf(QuorumError);
      expect(redlock.pendingGiveBacks).toBe(PAUSED.length);
      // Every give-back ends (none is left running), each with its report: once per paused node.
      await settled(redlock);
      const named = PAUSED.map((i) =>
        errors.filter((e) => e.error.message.includes(`#${i} ${stores[i]!.name}`)),
      );
      expect(named.map((e) => e.length)).toEqual(PAUSED.map(() => 1));
      expect(errors).toHaveLength(PAUSED.length);
      // Not at the TTL: at the hard limit, counted from a start no earlier than the acquire.
      for (const { error, at } of errors) {
        expect(error).toBeInstanceOf(LockNotReleasedError);
        expect(error.message).toContain(`answered nothing within ${giveBackLimitMs} ms`);
        expect(at - sentAt).toBeGreaterThanOrEqual(giveBackLimitMs);
      }
      // Stopped: nothing more is sent or reported (no timer is left to do it).
      await delay(ttlMs / 2);
      expect(errors).toHaveLength(PAUSED.length);
      expect(redlock.pendingGiveBacks).toBe(0);
    } finally {
      resume();
    }
    // The acquires queued on the paused nodes ran at the resume; not ours to clean up, but not another test's.
    await Promise.all(observers.map((o) => o.del(redlock.keyOf(key))));
    await Promise.all(stores.map((s) => s.close()));
  });
});
