import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLock,
  type Lease,
  type Lock,
  LockLostError,
  LockNotAcquiredError,
  type Store,
  ValidationError,
} from '../../layers/oncely/src/index.js';
import type { Script } from '../../layers/oncely/src/scripts.js';
import type { ScriptArg } from '../../layers/oncely/src/transport/types.js';
import { LOCK_TRANSPORTS, startTransport, type TransportFixture } from '../support/transports.js';

let n = 0;
const uniqueKey = (label: string) => `${label}-${process.pid}-${++n}`;

/** A store that records the scripts run through it (to count round trips), over a real one. */
function counting(inner: Store): Store & { scripts: string[] } {
  const scripts: string[] = [];
  return {
    kind: inner.kind,
    name: inner.name,
    scripts,
    run(script: Script, keys: readonly string[], args: readonly ScriptArg[]) {
      scripts.push(script.name);
      return inner.run(script, keys, args);
    },
    runMany(calls) {
      for (const c of calls) scripts.push(c.script.name);
      return inner.runMany(calls);
    },
    close: () => inner.close(),
  };
}

describe.each(LOCK_TRANSPORTS)('lock features over %s', (transport) => {
  let fx: TransportFixture;
  let lock: Lock;
  // A second store: its own client and connection, as another container's would be (in this one process:
  // the names below say "another store", not "another process").
  let other: Lock;
  beforeAll(async () => {
    fx = await startTransport(transport);
    lock = createLock(fx.store());
    other = createLock(fx.store());
  });
  afterAll(async () => {
    await fx?.stop();
  });

  describe('status', () => {
    it('tells held, remaining ms and fence without the token, through another store', async () => {
      const key = uniqueKey('status');
      expect(await other.status(key)).toMatchObject({ held: false, remainingMs: 0 });
      const lease = (await lock.tryAcquire(key, { ttlMs: 5000 }))!;
      const s = await other.status(key);
      expect(s.held).toBe(true);
      expect(s.remainingMs).toBeGreaterThan(0);
      expect(s.remainingMs).toBeLessThanOrEqual(5000);
      expect(s.fence).toBe(lease.fence);
      expect(JSON.stringify(s)).not.toContain(lease.token);
      expect(Object.keys(s).sort()).toEqual(['fence', 'held', 'remainingMs']);
      await lease.release();
      expect(await other.status(key)).toEqual({ held: false, remainingMs: 0, fence: lease.fence });
      const next = (await lock.tryAcquire(key, { ttlMs: 5000 }))!;
      expect((await other.status(key)).fence).toBe(next.fence);
      expect(next.fence).toBeGreaterThan(lease.fence);
      await next.release();
    });

    it('rejects a bad key with a ValidationError', async () => {
      await expect(lock.status('')).rejects.toBeInstanceOf(ValidationError);
    });
  });

  describe('lease.check()', () => {
    it('is true while the store holds our token', async () => {
      const lease = (await lock.tryAcquire(uniqueKey('check'), { ttlMs: 5000 }))!;
      expect(await lease.check()).toBe(true);
      expect(lease.held).toBe(true);
      expect(lease.signal.aborted).toBe(false);
      await lease.release();
      expect(await lease.check()).toBe(false);
    });

    it('learns in one round trip that the key was deleted, well before the local deadline', async () => {
      const lease = (await lock.tryAcquire(uniqueKey('check-gone'), { ttlMs: 60_000 }))!;
      await fx.admin.del(lock.keyOf(lease.key));
      expect(lease.held).toBe(true); // the local deadline alone cannot tell
      expect(await lease.check()).toBe(false);
      expect(lease.held).toBe(false);
      expect(lease.signal.aborted).toBe(true);
      expect(lease.signal.reason).toMatchObject({ name: 'LockLostError', reason: 'expired' });
    });

    it('learns that another owner took the key: stolen', async () => {
      const lease = (await lock.tryAcquire(uniqueKey('check-stolen'), { ttlMs: 60_000 }))!;
      await fx.admin.set(lock.keyOf(lease.key), 'someone-else', 'PX', 60_000);
      expect(await lease.check()).toBe(false);
      expect(lease.signal.reason).toBeInstanceOf(LockLostError);
      expect(lease.signal.reason).toMatchObject({ reason: 'stolen' });
      expect(await fx.admin.get(lock.keyOf(lease.key))).toBe('someone-else'); // read-only
    });
  });

  describe('resume (hand-over)', () => {
    it('rebuilds the lease on another store from the token: same fence, new TTL, and it can release', async () => {
      const key = uniqueKey('resume');
      const first = (await lock.tryAcquire(key, { ttlMs: 2000 }))!;
      const resumed = await other.resume(key, first.token, { ttlMs: 60_000 });
      expect(resumed.fence).toBe(first.fence);
      expect(resumed.token).toBe(first.token);
      expect(resumed.held).toBe(true);
      expect(await fx.admin.pttl(lock.keyOf(key))).toBeGreaterThan(2000);
      await resumed.extend(30_000);
      expect(await resumed.check()).toBe(true);
      expect(await resumed.release()).toBe('released');
      expect(await fx.admin.exists(lock.keyOf(key))).toBe(0);
    });

    it('fails with LockLostError when the token no longer holds the key, and never takes a free lock', async () => {
      const key = uniqueKey('resume-lost');
      const first = (await lock.tryAcquire(key, { ttlMs: 5000 }))!;
      await first.release();
      const gone = await other.resume(key, first.token, { ttlMs: 5000 }).catch((e: unknown) => e);
      expect(gone).toBeInstanceOf(LockLostError);
      expect(gone).toMatchObject({ reason: 'expired' });
      expect(await fx.admin.exists(lock.keyOf(key))).toBe(0);

      const second = (await lock.tryAcquire(key, { ttlMs: 5000 }))!;
      const stolen = await other.resume(key, first.token, { ttlMs: 5000 }).catch((e: unknown) => e);
      expect(stolen).toMatchObject({ name: 'LockLostError', reason: 'stolen' });
      expect((stolen as Error).message).not.toContain(first.token);
      expect(await fx.admin.get(lock.keyOf(key))).toBe(second.token);
      await second.release();
    });

    it('rejects a missing token without echoing it', async () => {
      const err = await lock.resume('k', '', { ttlMs: 1000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(/token/);
    });
  });

  describe('await using', () => {
    it('releases the lease when the scope exits', async () => {
      const key = uniqueKey('using-scope');
      {
        await using lease = await lock.acquire(key, { ttlMs: 60_000 });
        expect(await fx.admin.get(lock.keyOf(key))).toBe(lease.token);
      }
      expect(await fx.admin.exists(lock.keyOf(key))).toBe(0);
    });

    it("releases on a throw, and the scope's own error comes out unchanged", async () => {
      const key = uniqueKey('using-throw');
      const mine = new Error('mine');
      const run = async () => {
        await using lease = await lock.acquire(key, { ttlMs: 60_000 });
        expect(lease.held).toBe(true);
        throw mine;
      };
      await expect(run()).rejects.toBe(mine);
      expect(await fx.admin.exists(lock.keyOf(key))).toBe(0);
    });

    it('leaves a lease released inside the scope, and a successor, alone', async () => {
      const key = uniqueKey('using-released');
      let successor: Lease | null = null;
      {
        await using lease = await lock.acquire(key, { ttlMs: 60_000 });
        expect(await lease.release()).toBe('released');
        successor = await other.tryAcquire(key, { ttlMs: 60_000 });
      }
      expect(await fx.admin.get(lock.keyOf(key))).toBe(successor!.token);
      await successor!.release();
    });
  });

  describe('several keys at once', () => {
    it('keys sharing a hash tag: all in one script, one fence per key, all or none', async () => {
      const tag = uniqueKey('order');
      const keys = [`{${tag}}:b`, `{${tag}}:a`, `{${tag}}:c`];
      const store = counting(fx.store());
      const l = createLock(store);
      const lease = (await l.tryAcquire(keys, { ttlMs: 60_000 }))!;
      expect(store.scripts).toEqual(['lock-acquire-all']);
      expect(lease.keys).toEqual(keys);
      expect(lease.fences).toHaveLength(3);
      expect(lease.fence).toBe(lease.fences[0]);
      for (const k of keys) expect(await fx.admin.get(l.keyOf(k))).toBe(lease.token);

      // One of them held elsewhere: nothing is taken.
      await lease.release();
      for (const k of keys) expect(await fx.admin.exists(l.keyOf(k))).toBe(0);
      const held = (await other.tryAcquire(keys[2]!, { ttlMs: 60_000 }))!;
      expect(await l.tryAcquire(keys, { ttlMs: 60_000 })).toBeNull();
      for (const k of keys.slice(0, 2)) expect(await fx.admin.exists(l.keyOf(k))).toBe(0);
      await held.release();

      const again = (await l.tryAcquire(keys, { ttlMs: 60_000 }))!;
      // Each key's own counter: every fence moved past the last one handed out for that key.
      for (const [i, f] of again.fences.entries()) expect(f).toBeGreaterThan(lease.fences[i]!);
      expect(again.fences[2]).toBeGreaterThan(held.fence);
      store.scripts.length = 0;
      await again.extend(30_000);
      expect(await again.release()).toBe('released');
      expect(store.scripts).toEqual(['lock-extend-all', 'lock-release-all']);
    });

    it('keys in different slots: taken in sorted order, rolled back when one is held', async () => {
      const keys = [uniqueKey('zeta'), uniqueKey('alpha'), uniqueKey('mid')];
      const held = (await other.tryAcquire(keys[2]!, { ttlMs: 60_000 }))!; // 'mid': second in sorted order
      expect(await lock.tryAcquire(keys, { ttlMs: 60_000 })).toBeNull();
      for (const k of [keys[0]!, keys[1]!]) expect(await fx.admin.exists(lock.keyOf(k))).toBe(0);
      await held.release();

      const lease = (await lock.acquire(keys, { ttlMs: 60_000 }))!;
      expect(lease.keys).toEqual(keys);
      expect(lease.fences[2]).toBeGreaterThan(held.fence);
      for (const k of keys) expect(await fx.admin.get(lock.keyOf(k))).toBe(lease.token);
      expect(await lease.check()).toBe(true);
      await fx.admin.del(lock.keyOf(keys[0]!));
      expect(await lease.check()).toBe(false);
      expect(lease.signal.reason).toMatchObject({ reason: 'expired' });
      expect(await lease.release()).toBe('released');
      for (const k of keys) expect(await fx.admin.exists(lock.keyOf(k))).toBe(0);
    });

    it('two contenders for overlapping sets in opposite orders both finish, never overlapping', async () => {
      const a = uniqueKey('pair-a');
      const b = uniqueKey('pair-b');
      const c = uniqueKey('pair-c');
      let inside = 0;
      let overlaps = 0;
      const fencesOfB: number[] = [];
      const work = (l: Lock, keys: string[]) =>
        l.using(
          keys,
          async (lease) => {
            fencesOfB.push(lease.fences[keys.indexOf(b)]!);
            inside++;
            if (inside > 1) overlaps++;
            await delay(5);
            inside--;
          },
          { ttlMs: 10_000, retry: { attempts: 1000, delayMs: 5, jitterMs: 10 } },
        );
      const rounds = 8;
      await Promise.all([
        ...Array.from({ length: rounds }, () => work(lock, [a, b])),
        ...Array.from({ length: rounds }, () => work(other, [b, a])),
        ...Array.from({ length: rounds }, () => work(other, [c, b])),
      ]);
      expect(overlaps).toBe(0);
      expect(fencesOfB).toHaveLength(3 * rounds);
      for (let i = 1; i < fencesOfB.length; i++) expect(fencesOfB[i]).toBeGreaterThan(fencesOfB[i - 1]!);
    });

    it('rejects an empty or repeating key list', async () => {
      await expect(lock.tryAcquire([], { ttlMs: 1000 })).rejects.toBeInstanceOf(ValidationError);
      await expect(lock.acquire(['x', 'x'], { ttlMs: 1000 })).rejects.toThrow(/repeat/);
    });
  });

  describe('error detail', () => {
    it("LockNotAcquiredError records each attempt: the store, its state, the holder's remaining TTL", async () => {
      const key = uniqueKey('detail');
      const holder = (await other.tryAcquire(key, { ttlMs: 30_000 }))!;
      const err = (await lock
        .acquire(key, { ttlMs: 1000, retry: { attempts: 3, delayMs: 10, jitterMs: 0 } })
        .catch((e: unknown) => e)) as LockNotAcquiredError;
      expect(err).toBeInstanceOf(LockNotAcquiredError);
      expect(err.history.map((a) => a.attempt)).toEqual([1, 2, 3]);
      for (const a of err.history) {
        expect(a.nodes).toEqual([
          { node: lock.store.name, status: 'taken', holderTtlMs: expect.any(Number) as number },
        ]);
        expect(a.nodes[0]!.holderTtlMs).toBeGreaterThan(0);
        expect(a.nodes[0]!.holderTtlMs).toBeLessThanOrEqual(30_000);
      }
      expect(err.message).toContain(`${lock.store.name} taken by another holder (`);
      expect(JSON.stringify(err.history)).not.toContain(holder.token);
      await holder.release();
    });
  });

  describe('once per window', () => {
    it('runs fn once per window across two stores, however many calls arrive', async () => {
      const key = uniqueKey('window');
      let runs = 0;
      const fn = async () => {
        runs++;
        await delay(20);
        return 'rebuilt';
      };
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          (i % 2 ? lock : other).oncePerWindow(key, fn, { windowMs: 5000 }),
        ),
      );
      expect(runs).toBe(1);
      expect(results.filter((r) => r.ran)).toEqual([{ ran: true, value: 'rebuilt' }]);
      for (const r of results.filter((x) => !x.ran)) {
        expect(r).toMatchObject({ ran: false });
        if (!r.ran) expect(r.retryAfterMs).toBeGreaterThan(0);
        if (!r.ran) expect(r.retryAfterMs).toBeLessThanOrEqual(5000);
      }
      // The window key lives apart from a lock of the same name.
      expect(await lock.tryAcquire(key, { ttlMs: 1000 })).not.toBeNull();
    });

    it('opens again once the window has passed', async () => {
      const key = uniqueKey('window-next');
      expect(await lock.oncePerWindow(key, async () => 1, { windowMs: 200 })).toEqual({
        ran: true,
        value: 1,
      });
      const closed = await other.oncePerWindow(key, async () => 2, { windowMs: 200 });
      expect(closed.ran).toBe(false);
      await delay((closed.ran ? 0 : closed.retryAfterMs) + 100);
      expect(await other.oncePerWindow(key, async () => 3, { windowMs: 200 })).toEqual({
        ran: true,
        value: 3,
      });
    });

    it('reopens when fn throws, unless told to keep the window closed', async () => {
      const key = uniqueKey('window-throw');
      const boom = new Error('boom');
      await expect(
        lock.oncePerWindow(
          key,
          async () => {
            throw boom;
          },
          { windowMs: 60_000 },
        ),
      ).rejects.toBe(boom);
      expect(await other.oncePerWindow(key, async () => 'second', { windowMs: 60_000 })).toEqual({
        ran: true,
        value: 'second',
      });

      const kept = uniqueKey('window-keep');
      await expect(
        lock.oncePerWindow(
          kept,
          async () => {
            throw boom;
          },
          { windowMs: 60_000, reopenOnError: false },
        ),
      ).rejects.toBe(boom);
      expect((await other.oncePerWindow(kept, async () => 'x', { windowMs: 60_000 })).ran).toBe(false);
    });

    it('rejects a bad window', async () => {
      await expect(lock.oncePerWindow('k', async () => 1, { windowMs: 0 })).rejects.toThrow(/windowMs/);
    });
  });
});
