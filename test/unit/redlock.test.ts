import { describe, expect, it, vi } from 'vitest';
import { defaultNodeTimeoutMs, gather, type NodeAnswer } from '../../layers/oncely/src/fan-out.js';
import {
  createRedlock,
  LockLostError,
  LockNotAcquiredError,
  QuorumError,
  StoreUnavailableError,
  ValidationError,
} from '../../layers/oncely/src/index.js';
import { RELEASE } from '../../layers/oncely/src/scripts.js';
import type { Store } from '../../layers/oncely/src/transport/types.js';
import { type FakeNode, fakeNodes } from '../support/fake-nodes.js';

const LOCK = 'oncely:{k}:lock';
const FENCE = 'oncely:{k}:fence';
const scriptsRun = (node: FakeNode) => node.calls.map((c) => c.script);
const holders = (nodes: FakeNode[], token: string) => nodes.filter((n) => n.get(LOCK) === token).length;

describe('Redlock options', () => {
  it('rejects every bad option at once, naming each', () => {
    const nodes = fakeNodes(5);
    const err = (() => {
      try {
        createRedlock(nodes, {
          quorum: 2,
          nodeTimeoutMs: 0,
          prefix: 'a{',
          driftFactor: 1,
          driftMs: -1,
          giveBackLimitMs: 1.5,
        });
      } catch (e) {
        return e as ValidationError;
      }
    })();
    expect(err).toBeInstanceOf(ValidationError);
    expect(err?.problems).toHaveLength(6);
    expect(err?.message).toMatch(/quorum must be a whole number from 3 \(a majority/);
    expect(err?.message).toMatch(/giveBackLimitMs must be a whole number/);
  });

  it('rejects no stores and the same store twice', () => {
    const [a] = fakeNodes(1);
    expect(() => createRedlock([])).toThrow(/non-empty array/);
    expect(() => createRedlock([a!, a!])).toThrow(/same Store twice/);
  });

  it('defaults: a majority quorum, node timeout a tenth of the TTL within [10, 1000]', () => {
    expect(createRedlock(fakeNodes(5)).quorum).toBe(3);
    expect(createRedlock(fakeNodes(4)).quorum).toBe(3);
    expect(createRedlock(fakeNodes(1)).quorum).toBe(1);
    expect(createRedlock(fakeNodes(5), { quorum: 5 }).quorum).toBe(5);
    expect([50, 3000, 60_000].map(defaultNodeTimeoutMs)).toEqual([10, 300, 1000]);
  });
});

describe('gather', () => {
  const store = (name: string, reply: () => Promise<unknown>): Store => ({
    kind: 'redis',
    name,
    run: reply,
    runMany: async () => [],
    close: async () => {},
  });
  const parse = (_: number, a: NodeAnswer) => (a.ok ? a.value : a.error);
  const settled = (r: readonly unknown[]) => r.filter((v) => v !== undefined).length;

  it('decides with a snapshot once enough have answered; later answers land in heard, not in the snapshot', async () => {
    let late!: (v: number) => void;
    const stores = [
      store('a', async () => 1),
      store('b', async () => 2),
      store('c', () => new Promise((r) => (late = r))),
    ];
    const g = gather(stores, RELEASE, ['k'], [], 60_000, parse, (r) => settled(r) >= 2);
    const r = await g.decided;
    expect(r).toEqual([1, 2, undefined]);
    late(3);
    await g.raw[2];
    await Promise.resolve();
    expect(r).toEqual([1, 2, undefined]); // a snapshot: later results do not leak in
    expect(g.heard).toEqual([1, 2, 3]);
    expect(await gather([], RELEASE, [], [], 10, parse, () => false).decided).toEqual([]);
  });

  it('a node that does not answer within the timeout gets a StoreUnavailableError; its late reply is ignored', async () => {
    vi.useFakeTimers();
    try {
      let late!: (v: number) => void;
      const stores = [
        store('a', async () => 1),
        store('b', () => new Promise((r) => (late = r))),
        store('c', async () => {
          throw new Error('refused');
        }),
      ];
      const g = gather(stores, RELEASE, ['k'], [], 50, parse, () => false);
      await vi.advanceTimersByTimeAsync(49);
      expect(settled(g.heard)).toBe(2);
      await vi.advanceTimersByTimeAsync(1);
      const r = await g.decided;
      expect(r[0]).toBe(1);
      expect(r[1]).toBeInstanceOf(StoreUnavailableError);
      expect((r[1] as Error).message).toBe('b: no reply within the 50 ms node timeout');
      expect((r[2] as Error).message).toBe('refused');
      late(2);
      await g.raw[1];
      expect(g.heard[1]).toBe(r[1]); // answered once: the timeout stands
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('once `hurry` holds, the nodes still out get a short wait, not the node timeout', async () => {
    const hang = () => new Promise<never>(() => {});
    const stores = [store('a', async () => 'taken'), store('b', async () => 'ok'), store('c', hang)];
    const started = performance.now();
    const g = gather(
      stores,
      RELEASE,
      ['k'],
      [],
      5000,
      parse,
      () => false,
      (r) => r.includes('taken'),
    );
    const r = await g.decided;
    // A tenth of the node timeout (500 ms) or as long again as the answers took: far below the 5 s node timeout.
    expect(performance.now() - started).toBeLessThan(2500);
    expect(r.slice(0, 2)).toEqual(['taken', 'ok']);
    expect(r[2]).toBeInstanceOf(StoreUnavailableError);
    expect((r[2] as Error).message).toMatch(/^c: no reply within \d+ ms, after a split$/);
  });

  it('without `hurry` holding, the node timeout stands', async () => {
    vi.useFakeTimers();
    try {
      const stores = [store('a', async () => 'ok'), store('b', () => new Promise<never>(() => {}))];
      const g = gather(
        stores,
        RELEASE,
        ['k'],
        [],
        50,
        parse,
        () => false,
        (r) => r.includes('taken'),
      );
      await vi.advanceTimersByTimeAsync(49);
      expect(g.heard[1]).toBeUndefined();
      await vi.advanceTimersByTimeAsync(1);
      expect(((await g.decided)[1] as Error).message).toBe('b: no reply within the 50 ms node timeout');
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('Redlock acquire', () => {
  it('a split with nodes down gives its partial grants back at once, not after the node timeout', async () => {
    // Two of five down, one held by another contender: the two grants cannot make a quorum unless a down node
    // answers. Holding them for the node timeout would block every other contender meanwhile, and with
    // contenders splitting again as they give back, rounds of a contention run stalled for 10-38 s.
    const nodes = fakeNodes(5);
    nodes[0]!.set(LOCK, 'other');
    nodes[3]!.inner.next.push('hang');
    nodes[4]!.inner.next.push('hang');
    const started = performance.now();
    const err = await createRedlock(nodes, { nodeTimeoutMs: 5000 })
      .tryAcquire('k', { ttlMs: 50_000 })
      .catch((e) => e);
    expect(performance.now() - started).toBeLessThan(2500); // a tenth of the 5 s node timeout, with headroom
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.nodes.map((n: { status: string }) => n.status)).toEqual([
      'taken',
      'ok',
      'ok',
      'unreachable',
      'unreachable',
    ]);
    expect(err.nodes[3].cause.message).toMatch(/after a split/);
    expect(nodes[1]!.get(LOCK)).toBeUndefined();
    expect(nodes[2]!.get(LOCK)).toBeUndefined();
  });

  it('a split still waits a tenth of the node timeout: a node that is only late makes the quorum', async () => {
    // A fresh client's release of its last lease can reach one node after its next acquire (a NOSCRIPT fallback
    // resends it): that node says taken, and a late answer from another must still count.
    const nodes = fakeNodes(3);
    nodes[0]!.set(LOCK, 'last-lease');
    nodes[2]!.delayMs = 30;
    const lease = await createRedlock(nodes, { nodeTimeoutMs: 2000 }).tryAcquire('k', { ttlMs: 20_000 });
    expect(lease).not.toBeNull();
    expect(holders(nodes, lease!.token)).toBe(2);
  });

  it('holds the key on every node, with the same token, and a fence', async () => {
    const nodes = fakeNodes(5);
    const lease = (await createRedlock(nodes).tryAcquire('k', { ttlMs: 1000 }))!;
    expect(lease.fence).toBe(1);
    expect(holders(nodes, lease.token)).toBe(5);
    expect(await lease.release()).toBe('released');
    expect(holders(nodes, lease.token)).toBe(0);
  });

  it('returns at quorum: a frozen node does not delay it', async () => {
    const nodes = fakeNodes(5);
    nodes[4]!.inner.next.push('hang');
    nodes[3]!.delayMs = 5_000;
    const started = performance.now();
    const lease = await createRedlock(nodes, { nodeTimeoutMs: 10_000 }).tryAcquire('k', { ttlMs: 30_000 });
    expect(lease).not.toBeNull();
    // Well before the slow node's 5 s: headroom for a loaded machine.
    expect(performance.now() - started).toBeLessThan(2500);
  });

  it('a frozen majority costs at most the node timeout, then a QuorumError naming each node; the granted are undone', async () => {
    const nodes = fakeNodes(5);
    for (const n of nodes.slice(2)) n.inner.next.push('hang');
    const started = performance.now();
    const err = await createRedlock(nodes, { nodeTimeoutMs: 500 })
      .tryAcquire('k', { ttlMs: 10_000 })
      .catch((e) => e);
    const tookMs = performance.now() - started;
    // One node timeout, not two: timers fire late on a loaded machine, never early.
    expect(tookMs).toBeGreaterThanOrEqual(490);
    expect(tookMs).toBeLessThan(500 * 1.8);
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.name).toBe('QuorumError');
    expect(err.operation).toBe('acquire');
    expect(err.nodes.map((n: { status: string }) => n.status)).toEqual([
      'ok',
      'ok',
      'unreachable',
      'unreachable',
      'unreachable',
    ]);
    expect(err.unreachable[0].cause).toBeInstanceOf(StoreUnavailableError);
    expect(err.message).toMatch(/needs 3 of 5 nodes, 2 answered ok/);
    expect(err.message).toMatch(/unreachable: #2 fake-2 \(fake-2: no reply within the 500 ms node timeout\)/);
    expect(nodes[0]!.get(LOCK)).toBeUndefined();
    expect(nodes[1]!.get(LOCK)).toBeUndefined();
    expect(scriptsRun(nodes[0]!)).toEqual(['acquire', 'release']);
  });

  it('down nodes fail fast and are named with their cause; no token in the message', async () => {
    const nodes = fakeNodes(5);
    for (const n of nodes.slice(0, 3)) n.down = true;
    const err = await createRedlock(nodes)
      .tryAcquire('k', { ttlMs: 1000 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.unreachable.map((n: { node: string }) => n.node)).toEqual([
      '#0 fake-0',
      '#1 fake-1',
      '#2 fake-2',
    ]);
    expect(err.message).toContain('#1 fake-1 (fake-1: unreachable (ECONNREFUSED))');
    const token = String(nodes[3]!.calls[0]!.args[0]);
    expect(err.message).not.toContain(token);
    expect(holders(nodes, token)).toBe(0);
  });

  it('held by another holder on a blocking set: tryAcquire → null; acquire names the taken nodes', async () => {
    const nodes = fakeNodes(5);
    for (const n of nodes.slice(0, 3)) n.set(LOCK, 'someone-else');
    const redlock = createRedlock(nodes);
    expect(await redlock.tryAcquire('k', { ttlMs: 1000 })).toBeNull();
    // the two free nodes it got were given back
    expect(nodes[3]!.get(LOCK)).toBeUndefined();
    const err = await redlock
      .acquire('k', { ttlMs: 1000, retry: { attempts: 2, delayMs: 1 } })
      .catch((e) => e);
    expect(err).toBeInstanceOf(LockNotAcquiredError);
    expect(err.attempts).toBe(2);
    expect(err.cause).toBeInstanceOf(QuorumError);
    expect(err.cause.taken.map((n: { node: string }) => n.node)).toEqual([
      '#0 fake-0',
      '#1 fake-1',
      '#2 fake-2',
    ]);
    expect(err.message).toMatch(/taken by another holder: #0 fake-0, #1 fake-1, #2 fake-2/);
  });

  it('two taken and one down is not "held": it is a QuorumError (the outage matters)', async () => {
    const nodes = fakeNodes(5);
    nodes[0]!.set(LOCK, 'x');
    nodes[1]!.set(LOCK, 'x');
    nodes[2]!.down = true;
    const err = await createRedlock(nodes)
      .tryAcquire('k', { ttlMs: 1000 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.taken).toHaveLength(2);
    expect(err.unreachable).toHaveLength(1);
  });

  it('a quorum reached after ttl − drift is not a lease: undone, QuorumError says why', async () => {
    const nodes = fakeNodes(3);
    for (const n of nodes) n.delayMs = 60;
    const err = await createRedlock(nodes, { nodeTimeoutMs: 1000 })
      .tryAcquire('k', { ttlMs: 50 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.message).toMatch(/quorum reached after \d+ ms, past the lease validity/);
    await new Promise((r) => setTimeout(r, 100)); // the undo goes through the same slow nodes
    expect(nodes.every((n) => n.calls.some((c) => c.script === 'release'))).toBe(true);
  });

  it('a late answer from a timed-out node is released once it lands', async () => {
    const nodes = fakeNodes(3);
    nodes[2]!.delayMs = 100;
    nodes[1]!.down = true;
    const err = await createRedlock(nodes, { nodeTimeoutMs: 20 })
      .tryAcquire('k', { ttlMs: 5000 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.nodes[2].status).toBe('unreachable');
    await new Promise((r) => setTimeout(r, 250));
    // The release is as slow as the acquire was (past the node timeout): the give-back may send it again,
    // harmlessly (compare-and-delete), until one answer says released or gone.
    const [first, ...releases] = scriptsRun(nodes[2]!);
    expect(first).toBe('acquire');
    expect(releases.length).toBeGreaterThanOrEqual(1);
    expect(releases.every((s) => s === 'release')).toBe(true);
    expect(nodes[2]!.get(LOCK)).toBeUndefined();
    expect(nodes[0]!.get(LOCK)).toBeUndefined();
  });

  it('a node still out when the attempt is already lost is released once it answers', async () => {
    const nodes = fakeNodes(3);
    nodes[0]!.set(LOCK, 'x');
    nodes[1]!.down = true;
    nodes[2]!.delayMs = 50;
    const started = performance.now();
    const err = await createRedlock(nodes, { nodeTimeoutMs: 5000 })
      .tryAcquire('k', { ttlMs: 50_000 })
      .catch((e) => e);
    expect(performance.now() - started).toBeLessThan(40); // decided without waiting for node 2
    expect(err.nodes.map((n: { status: string }) => n.status)).toEqual(['taken', 'unreachable', 'pending']);
    expect(err.message).toMatch(/no answer yet: #2 fake-2/);
    await new Promise((r) => setTimeout(r, 150));
    expect(scriptsRun(nodes[2]!)).toEqual(['acquire', 'release']);
    expect(nodes[2]!.get(LOCK)).toBeUndefined();
  });

  it('retries until the holder is gone', async () => {
    const nodes = fakeNodes(3);
    const redlock = createRedlock(nodes);
    const first = (await redlock.tryAcquire('k', { ttlMs: 1000 }))!;
    setTimeout(() => void first.release(), 50);
    const second = await redlock.acquire('k', {
      ttlMs: 1000,
      retry: { attempts: 50, delayMs: 10, jitterMs: 5 },
    });
    expect(second.fence).toBe(2);
  });
});

describe('Redlock fencing across different quorums', () => {
  it('raises the quorum to the highest fence before handing the lease out', async () => {
    const nodes = fakeNodes(5);
    nodes[0]!.set(FENCE, '41');
    nodes[1]!.set(FENCE, '7');
    const lease = (await createRedlock(nodes).tryAcquire('k', { ttlMs: 1000 }))!;
    expect(lease.fence).toBe(42);
    // the quorum that granted first (nodes 0-2) now holds counters ≥ 42: any later quorum meets one of them
    expect(nodes.map((n) => Number(n.get(FENCE)))).toEqual([42, 42, 42, 1, 1]);
    expect(scriptsRun(nodes[1]!)).toEqual(['acquire', 'fence-raise']);
    expect(scriptsRun(nodes[2]!)).toEqual(['acquire', 'fence-raise']);
    expect(scriptsRun(nodes[0]!)).toEqual(['acquire']); // already at the max
  });

  it('no raise when the quorum agrees (the steady state costs one round trip)', async () => {
    const nodes = fakeNodes(5);
    await (await createRedlock(nodes).tryAcquire('k', { ttlMs: 1000 }))!.release();
    expect(nodes.every((n) => !scriptsRun(n).includes('fence-raise'))).toBe(true);
  });

  it('fails (and undoes) when a quorum cannot be raised', async () => {
    const nodes = fakeNodes(3);
    nodes[0]!.set(FENCE, '10');
    nodes[1]!.inner.next.push(
      'ok',
      new StoreUnavailableError('fake-1: gone', { store: 'fake-1', ambiguous: false }),
    );
    nodes[2]!.down = true;
    const err = await createRedlock(nodes)
      .tryAcquire('k', { ttlMs: 1000 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.message).toMatch(/the fence could not be raised on a quorum/);
    expect(nodes.every((n) => n.get(LOCK) === undefined)).toBe(true);
  });

  it('stay strictly increasing over 300 acquisitions with a random minority down each time', async () => {
    const nodes = fakeNodes(5);
    const redlock = createRedlock(nodes);
    let random = 7;
    const rand = () => {
      random = (random * 1103515245 + 12345) % 2 ** 31;
      return random / 2 ** 31;
    };
    const fences: number[] = [];
    for (let i = 0; i < 300; i++) {
      for (const n of nodes) n.down = false;
      const downs = Math.floor(rand() * 3);
      for (let d = 0; d < downs; d++) nodes[Math.floor(rand() * 5)]!.down = true;
      const lease = (await redlock.tryAcquire('k', { ttlMs: 1000 }))!;
      fences.push(lease.fence);
      for (const n of nodes) n.down = false;
      await lease.release();
    }
    for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]!);
    // the counters really did diverge, so the raise was needed
    expect(nodes.some((n) => scriptsRun(n).includes('fence-raise'))).toBe(true);
  });
});

describe('Redlock extend and release', () => {
  it('extend needs a quorum: two nodes lost still extends; three stolen loses the lease', async () => {
    const nodes = fakeNodes(5);
    const lease = (await createRedlock(nodes).tryAcquire('k', { ttlMs: 1000 }))!;
    nodes[0]!.down = true;
    nodes[1]!.set(LOCK, 'thief');
    await lease.extend(2000);
    nodes[2]!.set(LOCK, 'thief');
    nodes[3]!.set(LOCK, 'thief');
    const err = await lease.extend(2000).catch((e) => e);
    expect(err).toBeInstanceOf(LockLostError);
    expect(err.reason).toBe('stolen');
    expect(lease.signal.aborted).toBe(true);
  });

  it('extend with a frozen majority throws QuorumError; the lease is still valid, then expires on time', async () => {
    const nodes = fakeNodes(3);
    const lease = (await createRedlock(nodes, { nodeTimeoutMs: 30 }).tryAcquire('k', { ttlMs: 300 }))!;
    nodes[1]!.inner.next.push('hang');
    nodes[2]!.inner.next.push('hang');
    const err = await lease.extend().catch((e) => e);
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.operation).toBe('extend');
    expect(lease.held).toBe(true);
    await new Promise((r) => setTimeout(r, 320));
    expect(lease.signal.aborted).toBe(true);
    expect(lease.signal.reason).toMatchObject({ name: 'LockLostError', reason: 'expired' });
  });

  it('extend whose nodes all forgot the key reports expired', async () => {
    const nodes = fakeNodes(3);
    const lease = (await createRedlock(nodes).tryAcquire('k', { ttlMs: 1000 }))!;
    for (const n of nodes) n.inner.data.delete(LOCK);
    await expect(lease.extend()).rejects.toMatchObject({ reason: 'expired' });
  });

  it('release returns at quorum, without waiting for a frozen node', async () => {
    const nodes = fakeNodes(5);
    const lease = (await createRedlock(nodes, { nodeTimeoutMs: 5000 }).tryAcquire('k', { ttlMs: 30_000 }))!;
    nodes[4]!.inner.next.push('hang');
    const started = performance.now();
    expect(await lease.release()).toBe('released');
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('release tells not-held (a quorum has another holder) from expired, and fails without a quorum', async () => {
    const redlock = (nodes: FakeNode[]) => createRedlock(nodes, { nodeTimeoutMs: 50 });
    let nodes = fakeNodes(3);
    let lease = (await redlock(nodes).tryAcquire('k', { ttlMs: 1000 }))!;
    for (const n of nodes) n.set(LOCK, 'other');
    expect(await lease.release()).toBe('not-held');

    nodes = fakeNodes(3);
    lease = (await redlock(nodes).tryAcquire('k', { ttlMs: 1000 }))!;
    for (const n of nodes) n.inner.data.delete(LOCK);
    expect(await lease.release()).toBe('expired');

    nodes = fakeNodes(3);
    lease = (await redlock(nodes).tryAcquire('k', { ttlMs: 1000 }))!;
    nodes[0]!.down = true;
    nodes[1]!.inner.next.push('hang');
    const err = await lease.release().catch((e) => e);
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.operation).toBe('release');
    expect(err.nodes.map((n: { status: string }) => n.status)).toEqual(['unreachable', 'unreachable', 'ok']);
  });

  it('using() auto-extends on the quorum and returns fn’s result', async () => {
    const nodes = fakeNodes(3);
    const result = await createRedlock(nodes).using(
      'k',
      async (lease) => {
        // Past the TTL: only extensions keep it. Each extension (every ttl/3) has 2/3 of the TTL to spare,
        // room for timers that fire late on a loaded machine.
        await new Promise((r) => setTimeout(r, 1000));
        expect(lease.held).toBe(true);
        return lease.fence;
      },
      { ttlMs: 900 },
    );
    expect(result).toBe(1);
    expect(nodes[0]!.calls.filter((c) => c.script === 'extend').length).toBeGreaterThanOrEqual(2);
    expect(nodes.every((n) => n.get(LOCK) === undefined)).toBe(true);
  });
});

describe('a Redlock that gives up early names every node it heard from', () => {
  it('a node that answers while the partial grant is undone is named, not left pending', async () => {
    const nodes = fakeNodes(5);
    for (const n of nodes.slice(1))
      n.inner.data.set(LOCK, { value: 'other', expiresAt: Date.now() + 60_000 });
    nodes[0]!.inner.next.push('ok', 'hang'); // grants, then its release hangs until the node timeout
    nodes[4]!.delayMs = 30; // answers after the decision (3 taken: no quorum possible), during the undo
    const redlock = createRedlock(nodes, { nodeTimeoutMs: 300 });
    const err = (await redlock
      .acquire('k', { ttlMs: 10_000, retry: { attempts: 1 } })
      .catch((e: unknown) => e)) as LockNotAcquiredError;
    expect(err).toBeInstanceOf(LockNotAcquiredError);
    const nodesSeen = err.history[0]!.nodes;
    expect(nodesSeen.map((n) => n.status)).toEqual(['ok', 'taken', 'taken', 'taken', 'taken']);
    for (const n of nodesSeen.slice(1)) expect(n.holderTtlMs).toBeGreaterThan(0);
    expect(err.cause).toBeInstanceOf(QuorumError);
    expect((err.cause as QuorumError).taken.map((n) => n.node)).toEqual([
      '#1 fake-1',
      '#2 fake-2',
      '#3 fake-3',
      '#4 fake-4',
    ]);
    expect(err.message).toContain('#4 fake-4 taken by another holder');
  });

  it('every attempt of a retried acquire keeps its nodes', async () => {
    const nodes = fakeNodes(3);
    for (const n of nodes.slice(0, 2))
      n.inner.data.set(LOCK, { value: 'other', expiresAt: Date.now() + 60_000 });
    nodes[2]!.down = true;
    const err = (await createRedlock(nodes)
      .acquire('k', { ttlMs: 10_000, retry: { attempts: 3, delayMs: 0, jitterMs: 0 } })
      .catch((e: unknown) => e)) as LockNotAcquiredError;
    expect(err.history).toHaveLength(3);
    for (const a of err.history)
      expect(a.nodes.map((n) => `${n.node} ${n.status}`)).toEqual([
        '#0 fake-0 taken',
        '#1 fake-1 taken',
        '#2 fake-2 unreachable',
      ]);
  });
});

describe('a Redlock gives back a grant that may have landed', () => {
  it('retries the release on an ambiguous node through store failures until it succeeds', async () => {
    const nodes = fakeNodes(3);
    for (const n of nodes.slice(1))
      n.inner.data.set(LOCK, { value: 'other', expiresAt: Date.now() + 60_000 });
    const fail = () => new StoreUnavailableError('fake-0: 503', { store: 'fake-0', ambiguous: true });
    nodes[0]!.inner.next.push('apply-then-fail', fail(), fail()); // applied, reply lost; two releases fail
    const errors: Error[] = [];
    const redlock = createRedlock(nodes, { onError: (e) => errors.push(e) });
    await expect(redlock.acquire('k', { ttlMs: 60_000, retry: { attempts: 1 } })).rejects.toBeInstanceOf(
      LockNotAcquiredError,
    );
    await vi.waitFor(() => expect(nodes[0]!.get(LOCK)).toBeUndefined(), { timeout: 5000, interval: 20 });
    // The third release is the node's first answer since the acquire: one more, sent after it, is final.
    await vi.waitFor(() =>
      expect(scriptsRun(nodes[0]!)).toEqual(['acquire', 'release', 'release', 'release', 'release']),
    );
    await vi.waitFor(() => expect(redlock.pendingGiveBacks).toBe(0));
    expect(errors).toEqual([]);
  });

  it("a granted node whose undo release fails is given back too (the grant's reply was seen: one release is final)", async () => {
    const nodes = fakeNodes(3);
    for (const n of nodes.slice(1))
      n.inner.data.set(LOCK, { value: 'other', expiresAt: Date.now() + 60_000 });
    const fail = () => new StoreUnavailableError('fake-0: 503', { store: 'fake-0', ambiguous: true });
    nodes[0]!.inner.next.push('ok', fail()); // granted; the undo's release fails
    const errors: Error[] = [];
    const redlock = createRedlock(nodes, { onError: (e) => errors.push(e) });
    expect(await redlock.tryAcquire('k', { ttlMs: 60_000 })).toBeNull();
    await vi.waitFor(() => expect(nodes[0]!.get(LOCK)).toBeUndefined(), { timeout: 5000, interval: 20 });
    await vi.waitFor(() => expect(redlock.pendingGiveBacks).toBe(0));
    expect(scriptsRun(nodes[0]!)).toEqual(['acquire', 'release', 'release']);
    expect(errors).toEqual([]);
  });

  it('each attempt of acquire() draws its own token', async () => {
    const nodes = fakeNodes(3);
    for (const n of nodes.slice(1))
      n.inner.data.set(LOCK, { value: 'other', expiresAt: Date.now() + 60_000 });
    const redlock = createRedlock(nodes);
    await expect(
      redlock.acquire('k', { ttlMs: 1000, retry: { attempts: 3, delayMs: 1, jitterMs: 0 } }),
    ).rejects.toBeInstanceOf(LockNotAcquiredError);
    const tokens = nodes[0]!.calls.filter((c) => c.script === 'acquire').map((c) => c.args[0]);
    expect(tokens).toHaveLength(3);
    expect(new Set(tokens).size).toBe(3);
  });

  it('reports a node it could not give back before its limit (here the TTL: giveBackLimitMs 0) through onError', async () => {
    const nodes = fakeNodes(3);
    for (const n of nodes.slice(1))
      n.inner.data.set(LOCK, { value: 'other', expiresAt: Date.now() + 60_000 });
    const fail = () => new StoreUnavailableError('fake-0: 503', { store: 'fake-0', ambiguous: true });
    nodes[0]!.inner.next.push('apply-then-fail', ...Array.from({ length: 50 }, fail));
    let reported: (e: Error) => void = () => {};
    const report = new Promise<Error>((resolve) => {
      reported = resolve;
    });
    const redlock = createRedlock(nodes, { onError: (e) => reported(e), giveBackLimitMs: 0 });
    await expect(redlock.tryAcquire('k', { ttlMs: 400 })).rejects.toBeInstanceOf(QuorumError);
    const err = await report;
    expect(err).toMatchObject({ name: 'LockNotReleasedError' });
    expect(err.message).toContain('#0 fake-0');
    expect(scriptsRun(nodes[0]!).filter((s) => s === 'release').length).toBeGreaterThan(1);
  });
});
