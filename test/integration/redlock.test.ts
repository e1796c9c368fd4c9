/**
 * Redlock over 5 real, independent redis-server masters, with mixed transports: nodes 0-2 over TCP (ioredis),
 * nodes 3-4 over REST through the Upstash-compatible gateway. Nodes are killed (SIGKILL), paused (SIGSTOP) and
 * restarted by PID.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RedisProcess } from '../../dev/redis-server.js';
import {
  createRedlock,
  LockNotAcquiredError,
  QuorumError,
  type Redlock,
  type Store,
  StoreUnavailableError,
  upstashStore,
} from '../../layers/oncely/src/index.js';
import { redisStore } from '../../layers/oncely/src/ioredis.js';
import { FENCE_RAISE } from '../../layers/oncely/src/scripts.js';
import { gatewayFor, useMasters } from '../support/servers.js';

// Real-time bounds: large enough that a healthy node answers in time on a loaded machine (npm run test:stress),
// and every timing assertion below leaves headroom in proportion to it.
const NODE_TIMEOUT_MS = 1000;
const masters = useMasters(5);
let stores: Store[];
let redlock: Redlock;

beforeAll(async () => {
  stores = await Promise.all(
    masters().map(async (m, i) => {
      if (i < 3) return redisStore({ host: m.host, port: m.port, timeoutMs: 3000 });
      const { url, token } = await gatewayFor(m);
      return upstashStore({ url, token, timeoutMs: 3000 });
    }),
  );
  redlock = createRedlock(stores, { nodeTimeoutMs: NODE_TIMEOUT_MS });
});
afterAll(async () => {
  await Promise.all((stores ?? []).map((s) => s.close()));
});

/** Runs one command on a node through a short-lived client of our own (never through the stores under test). */
async function onNode(node: RedisProcess, ...command: [string, ...(string | number)[]]): Promise<unknown> {
  const c = new Redis({
    host: node.host,
    port: node.port,
    protocol: 2,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
  });
  try {
    await c.connect();
    return await c.call(...command);
  } finally {
    c.disconnect();
  }
}

/** Waits until every store answers again (the TCP client and the gateway reconnect after a restart). */
async function reachable(indexes: number[]): Promise<void> {
  await vi.waitFor(
    async () => {
      for (const i of indexes) await stores[i]!.run(FENCE_RAISE, ['oncely:{probe}:fence'], [0, 1000]);
    },
    { timeout: 10_000, interval: 50 },
  );
}

async function restart(indexes: number[]): Promise<void> {
  await Promise.all(indexes.map((i) => masters()[i]!.restart()));
  await reachable(indexes);
}

let n = 0;
const uniqueKey = (label: string) => `${label}-${++n}`;

describe('Redlock over 5 masters (3 TCP + 2 REST)', () => {
  it('holds the same token on all five nodes and releases it from all of them', async () => {
    const key = uniqueKey('basic');
    const lease = (await redlock.tryAcquire(key, { ttlMs: 5000 }))!;
    expect(lease.fence).toBeGreaterThan(0);
    // acquire returns at a quorum: the slowest nodes may take a moment longer to answer.
    await vi.waitFor(async () => {
      for (const m of masters()) {
        expect(await onNode(m, 'GET', redlock.keyOf(key))).toBe(lease.token);
        expect(Number(await onNode(m, 'PTTL', redlock.keyOf(key)))).toBeGreaterThan(3000);
      }
    });
    expect(await redlock.tryAcquire(key, { ttlMs: 5000 })).toBeNull();
    expect(await lease.release()).toBe('released');
    await vi.waitFor(async () => {
      for (const m of masters()) expect(await onNode(m, 'EXISTS', redlock.keyOf(key))).toBe(0);
    });
    const next = (await redlock.tryAcquire(key, { ttlMs: 5000 }))!;
    expect(next.fence).toBeGreaterThan(lease.fence);
    await next.release();
  });

  it('2 of 5 killed (one TCP, one REST): locks are still granted, extended and released', async () => {
    const killed = [0, 3];
    await Promise.all(killed.map((i) => masters()[i]!.kill()));
    try {
      const key = uniqueKey('two-down');
      const lease = await redlock.acquire(key, { ttlMs: 5000, retry: { attempts: 1 } });
      expect(lease.held).toBe(true);
      for (const i of [1, 2, 4])
        expect(await onNode(masters()[i]!, 'GET', redlock.keyOf(key))).toBe(lease.token);
      await lease.extend(8000);
      expect(Number(await onNode(masters()[4]!, 'PTTL', redlock.keyOf(key)))).toBeGreaterThan(7000);
      expect(await lease.release()).toBe('released');
    } finally {
      await restart(killed);
    }
  });

  it('3 of 5 killed: a QuorumError naming the dead nodes, and no lock key left on the survivors', async () => {
    const killed = [0, 2, 4];
    await Promise.all(killed.map((i) => masters()[i]!.kill()));
    try {
      const key = uniqueKey('three-down');
      const err = await redlock.tryAcquire(key, { ttlMs: 5000 }).catch((e) => e);
      expect(err).toBeInstanceOf(QuorumError);
      expect(err.name).toBe('QuorumError');
      // The attempt is decided once three nodes have failed: a live node may not have answered by then.
      const statuses = err.nodes.map((o: { status: string }) => o.status);
      expect([statuses[0], statuses[2], statuses[4]]).toEqual(['unreachable', 'unreachable', 'unreachable']);
      for (const i of [1, 3]) expect(['ok', 'pending']).toContain(statuses[i]);
      for (const o of err.unreachable) expect(o.cause).toBeInstanceOf(StoreUnavailableError);
      expect(err.message).toContain(`#4 ${stores[4]!.name}`);
      expect(err.message).not.toMatch(/test-[A-Za-z0-9_-]{22}/); // no REST token
      // A grant that arrives after the decision is undone too: wait for it rather than race it.
      await vi.waitFor(async () => {
        for (const i of [1, 3]) expect(await onNode(masters()[i]!, 'EXISTS', redlock.keyOf(key))).toBe(0);
      });

      // acquire() gives up with LockNotAcquiredError carrying the last QuorumError
      const started = performance.now();
      const err2 = await redlock
        .acquire(key, { ttlMs: 5000, retry: { attempts: 3, delayMs: 20, jitterMs: 10 } })
        .catch((e) => e);
      expect(err2).toBeInstanceOf(LockNotAcquiredError);
      expect(err2.attempts).toBe(3);
      expect(err2.cause).toBeInstanceOf(QuorumError);
      expect(performance.now() - started).toBeLessThan(3 * NODE_TIMEOUT_MS + 1000);
      await vi.waitFor(async () => {
        for (const i of [1, 3]) expect(await onNode(masters()[i]!, 'EXISTS', redlock.keyOf(key))).toBe(0);
      });
    } finally {
      await restart(killed);
    }
  });

  it.each([
    { paused: 1, transport: 'TCP' },
    { paused: 4, transport: 'REST' },
  ])(
    '1 node paused (SIGSTOP, $transport): acquisition completes within the per-node timeout',
    async ({ paused }) => {
      const node = masters()[paused]!;
      const key = uniqueKey('paused');
      node.pause();
      let released = false;
      try {
        const started = performance.now();
        const lease = await redlock.acquire(key, { ttlMs: 5000, retry: { attempts: 1 } });
        const tookMs = performance.now() - started;
        expect(tookMs).toBeLessThan(NODE_TIMEOUT_MS);
        const releaseStarted = performance.now();
        expect(await lease.release()).toBe('released');
        expect(performance.now() - releaseStarted).toBeLessThan(NODE_TIMEOUT_MS);
        released = true;
      } finally {
        node.resume();
      }
      expect(released).toBe(true);
      // The frozen node ran the queued acquire and then the release, in order: no key is left behind.
      await vi.waitFor(async () => expect(await onNode(node, 'EXISTS', redlock.keyOf(key))).toBe(0), {
        timeout: 3000,
      });
      await reachable([paused]);
    },
  );

  it('with quorum = all 5 and one node paused, acquisition fails after one node timeout, not later', async () => {
    const strict = createRedlock(stores, { quorum: 5, nodeTimeoutMs: NODE_TIMEOUT_MS });
    const node = masters()[2]!;
    const key = uniqueKey('strict');
    node.pause();
    try {
      const started = performance.now();
      const err = await strict.tryAcquire(key, { ttlMs: 5000 }).catch((e) => e);
      const tookMs = performance.now() - started;
      expect(err).toBeInstanceOf(QuorumError);
      expect(err.unreachable.map((o: { node: string }) => o.node)).toEqual([`#2 ${stores[2]!.name}`]);
      expect(err.unreachable[0].cause.message).toMatch(
        `no reply within the ${NODE_TIMEOUT_MS} ms node timeout`,
      );
      expect(tookMs).toBeGreaterThanOrEqual(NODE_TIMEOUT_MS - 5);
      expect(tookMs).toBeLessThan(NODE_TIMEOUT_MS * 1.5 + 200);
      for (const i of [0, 1, 3, 4]) expect(await onNode(masters()[i]!, 'EXISTS', strict.keyOf(key))).toBe(0);
    } finally {
      node.resume();
    }
    await vi.waitFor(async () => expect(await onNode(node, 'EXISTS', strict.keyOf(key))).toBe(0), {
      timeout: 3000,
    });
  });

  it('fences keep increasing when the quorum changes: the new quorum is raised to the old maximum', async () => {
    const key = uniqueKey('fence');
    const fenceKey = redlock.fenceKeyOf(key);
    // A history where nodes 3 and 4 missed many acquisitions: their counters lag far behind (and the others
    // ran far ahead of the clock, so the time floor does not hide the difference).
    const high = Date.now() + 3_600_000;
    for (const [i, v] of [0, 0, 0, 0, 0].map((_, i) => [i, i < 3 ? high : 3] as const))
      await onNode(masters()[i]!, 'SET', fenceKey, v);
    // Now nodes 0 and 1 die: the quorum is {2, 3, 4}, only one of which has seen fence 50.
    await Promise.all([0, 1].map((i) => masters()[i]!.kill()));
    try {
      const lease = (await redlock.tryAcquire(key, { ttlMs: 5000 }))!;
      expect(lease.fence).toBe(high + 1);
      for (const i of [2, 3, 4]) expect(Number(await onNode(masters()[i]!, 'GET', fenceKey))).toBe(high + 1);
      await lease.release();
    } finally {
      await restart([0, 1]);
    }
    // Nodes 0 and 1 restarted empty (no persistence here); the next quorum still meets a raised node.
    const next = (await redlock.tryAcquire(key, { ttlMs: 5000 }))!;
    expect(next.fence).toBe(high + 2);
    await next.release();
  });

  it('using() keeps the lease through auto-extends while two nodes die under it', async () => {
    const key = uniqueKey('using');
    const fences = await redlock.using(
      key,
      async (lease) => {
        await delay(150);
        await Promise.all([1, 4].map((i) => masters()[i]!.kill()));
        await delay(450); // over two TTLs: only the auto-extends on the 3 survivors keep it
        expect(lease.held).toBe(true);
        expect(lease.signal.aborted).toBe(false);
        return lease.fence;
      },
      { ttlMs: 300, retry: { attempts: 1 } },
    );
    expect(fences).toBeGreaterThan(0);
    for (const i of [0, 2, 3]) expect(await onNode(masters()[i]!, 'EXISTS', redlock.keyOf(key))).toBe(0);
    await restart([1, 4]);
  });

  it('lease.check() asks every node: held on a quorum, lost once a majority no longer has the key', async () => {
    const key = uniqueKey('check');
    const lease = (await redlock.tryAcquire(key, { ttlMs: 30_000 }))!;
    await vi.waitFor(async () => {
      for (const m of masters()) expect(await onNode(m, 'GET', redlock.keyOf(key))).toBe(lease.token);
    });
    await onNode(masters()[0]!, 'DEL', redlock.keyOf(key));
    await onNode(masters()[3]!, 'DEL', redlock.keyOf(key)); // one TCP, one REST node: 3 of 5 still ours
    expect(await lease.check()).toBe(true);
    await onNode(masters()[1]!, 'SET', redlock.keyOf(key), 'another-owner', 'PX', 30_000);
    expect(await lease.check()).toBe(false);
    expect(lease.signal.reason).toMatchObject({ name: 'LockLostError', reason: 'stolen' });
    await lease.release();
    await onNode(masters()[1]!, 'DEL', redlock.keyOf(key));
  });

  it("a refused acquire names every node it heard from, with each holder's remaining TTL", async () => {
    const key = uniqueKey('detail');
    for (const i of [0, 2, 4])
      await onNode(masters()[i]!, 'SET', redlock.keyOf(key), 'another-owner', 'PX', 30_000);
    const err = (await redlock
      .acquire(key, { ttlMs: 5000, retry: { attempts: 2, delayMs: 10, jitterMs: 0 } })
      .catch((e: unknown) => e)) as LockNotAcquiredError;
    expect(err).toBeInstanceOf(LockNotAcquiredError);
    expect(err.history).toHaveLength(2);
    for (const a of err.history) {
      expect(a.nodes).toHaveLength(5);
      const taken = a.nodes.filter((n) => n.status === 'taken');
      expect(taken.map((n) => n.node)).toEqual([0, 2, 4].map((i) => `#${i} ${stores[i]!.name}`));
      for (const n of taken) expect(n.holderTtlMs).toBeGreaterThan(0);
      for (const n of taken) expect(n.holderTtlMs).toBeLessThanOrEqual(30_000);
      // The other two granted (then were undone) or had not answered yet when no quorum was possible.
      for (const n of a.nodes.filter((x) => x.status !== 'taken'))
        expect(['ok', 'pending']).toContain(n.status);
    }
    expect(err.message).toMatch(/taken by another holder \(\d+ ms left\)/);
    for (const i of [0, 2, 4]) await onNode(masters()[i]!, 'DEL', redlock.keyOf(key));
    // Undone: awaited where the node had granted, in the background where its answer came after the decision.
    await vi.waitFor(
      async () => {
        for (const i of [1, 3]) expect(await onNode(masters()[i]!, 'EXISTS', redlock.keyOf(key))).toBe(0);
      },
      { timeout: 5000, interval: 50 },
    );
  });
});
