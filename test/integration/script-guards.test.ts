/**
 * Every guard of the lock, leader and operator scripts (scripts/lock.ts, scripts/leader.ts, scripts/admin.ts) on
 * real servers, on every transport: each test sets the keys up on the server, runs one script through the
 * store, and checks its reply and what it left, so that breaking any one condition (a token compare, a fence
 * compare, NX, "expired" vs "held by another", a guarded delete, a PTTL that must never shrink or grow) fails a
 * test named for it. docs/safety.md lists each guard with the test that catches it (found by breaking each in
 * turn). The run-once record's scripts are in once-record.test.ts (which runs each of its tests through the
 * batch scripts too); here, the batch scripts with every record state side by side in one call.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Store } from '../../layers/oncely/src/index.js';
import {
  ACQUIRE,
  EXTEND,
  FENCE_RAISE,
  LEADER_ANNOUNCE,
  LEADER_OBSERVE,
  LOCK_ACQUIRE_ALL,
  LOCK_CHECK,
  LOCK_EXTEND_ALL,
  LOCK_FORCE_RELEASE,
  LOCK_RELEASE_ALL,
  LOCK_RESUME,
  LOCK_STATUS,
  ONCE_CLAIM,
  ONCE_CLAIM_MANY,
  ONCE_COMPLETE_MANY,
  ONCE_FORGET,
  ONCE_INSPECT,
  RELEASE,
  type Script,
  WINDOW_OPEN,
} from '../../layers/oncely/src/scripts.js';
import type { ScriptArg } from '../../layers/oncely/src/transport/types.js';
import { unique } from '../support/once.js';
import { norm, startTransport, TRANSPORTS, type TransportFixture } from '../support/transports.js';

const TTL_MS = 60_000;
const FENCE_TTL_MS = 120_000;
/** Far above any TTL a test asks for: a counter given this PTTL shows whether a script shortened it. */
const LONG_MS = 86_400_000;
/** Slack for the PTTL a key loses while a test runs (a busy machine). */
const SLACK_MS = 30_000;

describe.each(TRANSPORTS)('script guards over %s', (transport) => {
  let fx: TransportFixture;
  let store: Store;
  beforeAll(async () => {
    fx = await startTransport(transport);
    store = fx.store({ timeoutMs: 5000 });
  });
  afterAll(async () => {
    await fx?.stop();
  });

  const run = async (script: Script, keys: string[], args: ScriptArg[]) =>
    norm(await store.run(script, keys, args));
  /** The keys of one lock name (one hash tag: one slot), as lock.ts names them. */
  const named = (label: string) => {
    const tag = `{${unique(label)}}`;
    return {
      lock: `oncely:${tag}:lock`,
      fence: `oncely:${tag}:fence`,
      leader: `oncely:${tag}:leader`,
      /** A second lock and counter in the same slot (the set scripts). */
      lock2: `oncely:${tag}:2:lock`,
      fence2: `oncely:${tag}:2:fence`,
      rec: `oncely:once:${tag}:rec`,
    };
  };
  const acquire = (k: { lock: string; fence: string }, token: string, ttlMs = TTL_MS) =>
    run(ACQUIRE, [k.lock, k.fence], [token, ttlMs, FENCE_TTL_MS, Date.now()]) as Promise<[number, number]>;
  const pttl = (key: string) => fx.admin.pttl(key);
  const get = (key: string) => fx.admin.get(key);

  describe('acquire', () => {
    it('NX: a held lock is not taken by another token, which gets {0, pttl}; the holder and counter stay', async () => {
      const k = named('nx');
      const [ok, fence] = await acquire(k, 'tok-A');
      expect(ok).toBe(1);
      const [status, left] = await acquire(k, 'tok-B', LONG_MS);
      expect(status).toBe(0);
      expect(left).toBeGreaterThan(TTL_MS - SLACK_MS);
      expect(left).toBeLessThanOrEqual(TTL_MS);
      expect(await get(k.lock)).toBe('tok-A');
      expect(await get(k.fence)).toBe(String(fence));
      expect(await pttl(k.lock)).toBeLessThanOrEqual(TTL_MS);
    });

    it('re-run by the holder: the same fence, the lock renewed, the counter kept at least fenceTtl and never cut', async () => {
      const k = named('again');
      const [, fence] = await acquire(k, 'tok-A', 1000);
      await fx.admin.pexpire(k.fence, LONG_MS);
      expect(await acquire(k, 'tok-A')).toEqual([1, fence]);
      expect(await pttl(k.lock)).toBeGreaterThan(TTL_MS - SLACK_MS);
      expect(await pttl(k.fence)).toBeGreaterThan(LONG_MS - SLACK_MS); // not cut to FENCE_TTL_MS
      await fx.admin.pexpire(k.fence, 1000);
      expect(await acquire(k, 'tok-A')).toEqual([1, fence]);
      expect(await pttl(k.fence)).toBeGreaterThan(FENCE_TTL_MS - SLACK_MS); // raised to FENCE_TTL_MS
    });

    it("fences: max(last + 1, the store's TIME); with 'client', the client's clock instead", async () => {
      const k = named('fences');
      const far = Date.now() + 10 * 365 * 86_400_000;
      await fx.admin.set(k.fence, String(far), 'PX', LONG_MS);
      expect(await acquire(k, 'tok-A')).toEqual([1, far + 1]);
      await fx.admin.del(k.lock, k.fence);
      // A client clock at 5 ms since the epoch: the store's TIME wins.
      const t0 = Date.now();
      const [, fromStore] = (await run(
        ACQUIRE,
        [k.lock, k.fence],
        ['tok-B', TTL_MS, FENCE_TTL_MS, 5],
      )) as number[];
      expect(fromStore).toBeGreaterThan(t0 - SLACK_MS);
      expect(fromStore).toBeLessThan(t0 + SLACK_MS);
      await fx.admin.del(k.lock, k.fence);
      // 'client' (Redlock): the client's clock, even far from the store's.
      const ahead = t0 + 1_000_000_000;
      expect(await run(ACQUIRE, [k.lock, k.fence], ['tok-C', TTL_MS, FENCE_TTL_MS, ahead, 'client'])).toEqual(
        [1, ahead],
      );
      expect(await pttl(k.fence)).toBeGreaterThan(FENCE_TTL_MS - SLACK_MS);
    });
  });

  describe('extend', () => {
    it("another token's lock: -1 and untouched; no lock: 0 (expired, not stolen)", async () => {
      const k = named('extend-other');
      await acquire(k, 'tok-A');
      expect(await run(EXTEND, [k.lock, k.fence], ['tok-B', LONG_MS, LONG_MS])).toBe(-1);
      expect(await pttl(k.lock)).toBeLessThanOrEqual(TTL_MS);
      expect(await pttl(k.fence)).toBeLessThanOrEqual(FENCE_TTL_MS);
      expect(await get(k.lock)).toBe('tok-A');
      await fx.admin.del(k.lock);
      expect(await run(EXTEND, [k.lock, k.fence], ['tok-A', LONG_MS, LONG_MS])).toBe(0);
      expect(await fx.admin.exists(k.lock)).toBe(0);
      expect(await pttl(k.fence)).toBeLessThanOrEqual(FENCE_TTL_MS);
    });

    it('ours: the lock renewed; the counter kept at least fenceTtl, never cut; without a fence key too', async () => {
      const k = named('extend-ours');
      await acquire(k, 'tok-A', 1000);
      await fx.admin.pexpire(k.fence, LONG_MS);
      expect(await run(EXTEND, [k.lock, k.fence], ['tok-A', TTL_MS, FENCE_TTL_MS])).toBe(1);
      expect(await pttl(k.lock)).toBeGreaterThan(TTL_MS - SLACK_MS);
      expect(await pttl(k.fence)).toBeGreaterThan(LONG_MS - SLACK_MS);
      await fx.admin.pexpire(k.fence, 1000);
      expect(await run(EXTEND, [k.lock, k.fence], ['tok-A', TTL_MS, FENCE_TTL_MS])).toBe(1);
      expect(await pttl(k.fence)).toBeGreaterThan(FENCE_TTL_MS - SLACK_MS);
      expect(await run(EXTEND, [k.lock], ['tok-A', TTL_MS])).toBe(1);
    });
  });

  describe('release', () => {
    it("another token's lock: -1 and untouched; no lock: 0 (expired, not held by another)", async () => {
      const k = named('release-other');
      const [, fence] = await acquire(k, 'tok-A');
      expect(await run(RELEASE, [k.lock, k.fence], ['tok-B', 1000])).toBe(-1);
      expect(await get(k.lock)).toBe('tok-A');
      expect(await pttl(k.fence)).toBeGreaterThan(FENCE_TTL_MS - SLACK_MS); // not cut to 1000
      await fx.admin.del(k.lock);
      expect(await run(RELEASE, [k.lock, k.fence], ['tok-A', 1000])).toBe(0);
      expect(await pttl(k.fence)).toBeGreaterThan(FENCE_TTL_MS - SLACK_MS);
      expect(await get(k.fence)).toBe(String(fence));
    });

    it('ours: deleted; the counter left at most the grace to live, never lengthened; without a fence key too', async () => {
      const k = named('release-ours');
      const [, fence] = await acquire(k, 'tok-A');
      expect(await run(RELEASE, [k.lock, k.fence], ['tok-A', 5000])).toBe(1);
      expect(await fx.admin.exists(k.lock)).toBe(0);
      expect(await get(k.fence)).toBe(String(fence));
      expect(await pttl(k.fence)).toBeLessThanOrEqual(5000);
      await acquire(k, 'tok-B');
      await fx.admin.pexpire(k.fence, 2000);
      expect(await run(RELEASE, [k.lock, k.fence], ['tok-B', LONG_MS])).toBe(1);
      expect(await pttl(k.fence)).toBeLessThanOrEqual(2000); // not lengthened to the grace
      await acquire(k, 'tok-C');
      expect(await run(RELEASE, [k.lock], ['tok-C'])).toBe(1);
    });
  });

  describe('status, check, resume', () => {
    it('status: {1, pttl, fence} while held, {0, 0, fence} once free, fence 0 once the counter is gone', async () => {
      const k = named('status');
      expect(await run(LOCK_STATUS, [k.lock, k.fence], [])).toEqual([0, 0, 0]);
      const [, fence] = await acquire(k, 'tok-A');
      const [held, left, f] = (await run(LOCK_STATUS, [k.lock, k.fence], [])) as number[];
      expect([held, f]).toEqual([1, fence]);
      expect(left).toBeGreaterThan(TTL_MS - SLACK_MS);
      await fx.admin.del(k.lock);
      expect(await run(LOCK_STATUS, [k.lock, k.fence], [])).toEqual([0, 0, fence]);
    });

    it('check: 1 ours, -1 another owner, 0 nobody; read-only', async () => {
      const k = named('check');
      await acquire(k, 'tok-A');
      expect(await run(LOCK_CHECK, [k.lock], ['tok-A'])).toBe(1);
      expect(await run(LOCK_CHECK, [k.lock], ['tok-B'])).toBe(-1);
      expect(await get(k.lock)).toBe('tok-A');
      await fx.admin.del(k.lock);
      expect(await run(LOCK_CHECK, [k.lock], ['tok-A'])).toBe(0);
      expect(await fx.admin.exists(k.lock)).toBe(0);
    });

    it('resume: ours renewed with its fence; another owner {-1} untouched; nobody {0}, and a free lock is not taken', async () => {
      const k = named('resume');
      const [, fence] = await acquire(k, 'tok-A', 1000);
      await fx.admin.pexpire(k.fence, LONG_MS);
      expect(await run(LOCK_RESUME, [k.lock, k.fence], ['tok-A', TTL_MS, FENCE_TTL_MS])).toEqual([1, fence]);
      expect(await pttl(k.lock)).toBeGreaterThan(TTL_MS - SLACK_MS);
      expect(await pttl(k.fence)).toBeGreaterThan(LONG_MS - SLACK_MS);
      await fx.admin.pexpire(k.fence, 1000);
      expect(await run(LOCK_RESUME, [k.lock, k.fence], ['tok-A', TTL_MS, FENCE_TTL_MS])).toEqual([1, fence]);
      expect(await pttl(k.fence)).toBeGreaterThan(FENCE_TTL_MS - SLACK_MS);
      expect(await run(LOCK_RESUME, [k.lock, k.fence], ['tok-B', LONG_MS, LONG_MS])).toEqual([-1]);
      expect(await get(k.lock)).toBe('tok-A');
      expect(await pttl(k.lock)).toBeLessThanOrEqual(TTL_MS);
      await fx.admin.del(k.lock);
      expect(await run(LOCK_RESUME, [k.lock, k.fence], ['tok-A', TTL_MS, FENCE_TTL_MS])).toEqual([0]);
      expect(await fx.admin.exists(k.lock)).toBe(0);
    });
  });

  describe('several locks in one slot', () => {
    it('acquire-all: one held by another owner: {0, its index, its pttl}, and nothing taken or moved', async () => {
      const k = named('all-held');
      const [, theirs] = await acquire({ lock: k.lock2, fence: k.fence2 }, 'tok-B');
      const keys = [k.lock, k.fence, k.lock2, k.fence2];
      const [status, index, left] = (await run(LOCK_ACQUIRE_ALL, keys, [
        'tok-A',
        TTL_MS,
        FENCE_TTL_MS,
        Date.now(),
      ])) as number[];
      expect([status, index]).toEqual([0, 2]);
      expect(left).toBeGreaterThan(TTL_MS - SLACK_MS);
      expect(await fx.admin.exists(k.lock, k.fence)).toBe(0);
      expect(await get(k.lock2)).toBe('tok-B');
      expect(await get(k.fence2)).toBe(String(theirs));
    });

    it('acquire-all re-run by the holder: the fences it holds unchanged, a new lock gets a new fence', async () => {
      const k = named('all-again');
      const [, mine] = await acquire(k, 'tok-A', 1000);
      const keys = [k.lock, k.fence, k.lock2, k.fence2];
      const t0 = Date.now();
      const [ok, f1, f2] = (await run(LOCK_ACQUIRE_ALL, keys, [
        'tok-A',
        TTL_MS,
        FENCE_TTL_MS,
        t0,
      ])) as number[];
      expect([ok, f1]).toEqual([1, mine]);
      expect(f2).toBeGreaterThan(t0 - SLACK_MS);
      expect(await get(k.fence)).toBe(String(mine));
      expect(await get(k.fence2)).toBe(String(f2));
      expect(await get(k.lock2)).toBe('tok-A');
      expect(await pttl(k.lock)).toBeGreaterThan(TTL_MS - SLACK_MS);
      await fx.admin.pexpire(k.fence, LONG_MS);
      expect(await run(LOCK_ACQUIRE_ALL, keys, ['tok-A', TTL_MS, FENCE_TTL_MS, t0])).toEqual([1, mine, f2]);
      expect(await pttl(k.fence)).toBeGreaterThan(LONG_MS - SLACK_MS);
      await fx.admin.del(k.lock2);
      const far = Date.now() + 10 * 365 * 86_400_000;
      await fx.admin.set(k.fence2, String(far), 'PX', LONG_MS);
      expect(await run(LOCK_ACQUIRE_ALL, keys, ['tok-A', TTL_MS, FENCE_TTL_MS, t0])).toEqual([
        1,
        mine,
        far + 1,
      ]);
    });

    it('extend-all: one held by another owner (-1) or one gone (0): nothing extended; all ours: 1', async () => {
      const k = named('extend-all');
      const keys = [k.lock, k.fence, k.lock2, k.fence2];
      await acquire(k, 'tok-A', 10_000);
      await acquire({ lock: k.lock2, fence: k.fence2 }, 'tok-B', 10_000);
      expect(await run(LOCK_EXTEND_ALL, keys, ['tok-A', LONG_MS, LONG_MS])).toBe(-1);
      for (const key of [k.lock, k.lock2]) expect(await pttl(key)).toBeLessThanOrEqual(10_000);
      for (const key of [k.fence, k.fence2]) expect(await pttl(key)).toBeLessThanOrEqual(FENCE_TTL_MS);
      await fx.admin.del(k.lock2);
      expect(await run(LOCK_EXTEND_ALL, keys, ['tok-A', LONG_MS, LONG_MS])).toBe(0);
      expect(await pttl(k.lock)).toBeLessThanOrEqual(10_000);
      expect(await pttl(k.fence)).toBeLessThanOrEqual(FENCE_TTL_MS);
      await acquire({ lock: k.lock2, fence: k.fence2 }, 'tok-A', 10_000);
      expect(await run(LOCK_EXTEND_ALL, keys, ['tok-A', LONG_MS, LONG_MS])).toBe(1);
      for (const key of [k.lock, k.lock2, k.fence, k.fence2])
        expect(await pttl(key)).toBeGreaterThan(LONG_MS - SLACK_MS);
      // the counters are never cut
      expect(await run(LOCK_EXTEND_ALL, keys, ['tok-A', TTL_MS, FENCE_TTL_MS])).toBe(1);
      expect(await pttl(k.fence)).toBeGreaterThan(LONG_MS - SLACK_MS);
    });

    it('release-all: deletes only our locks (1); none ours but one held: -1, untouched; none left: 0', async () => {
      const k = named('release-all');
      const keys = [k.lock, k.fence, k.lock2, k.fence2];
      await acquire(k, 'tok-A');
      await acquire({ lock: k.lock2, fence: k.fence2 }, 'tok-B');
      expect(await run(LOCK_RELEASE_ALL, keys, ['tok-A', 5000])).toBe(1);
      expect(await fx.admin.exists(k.lock)).toBe(0);
      expect(await pttl(k.fence)).toBeLessThanOrEqual(5000);
      expect(await get(k.lock2)).toBe('tok-B');
      expect(await pttl(k.fence2)).toBeGreaterThan(FENCE_TTL_MS - SLACK_MS);
      expect(await run(LOCK_RELEASE_ALL, keys, ['tok-A', 5000])).toBe(-1);
      expect(await get(k.lock2)).toBe('tok-B');
      await fx.admin.del(k.lock2);
      expect(await run(LOCK_RELEASE_ALL, keys, ['tok-A', 5000])).toBe(0);
      await fx.admin.pexpire(k.fence2, 1000);
      await acquire({ lock: k.lock2, fence: k.fence2 }, 'tok-A');
      await fx.admin.pexpire(k.fence2, 1000);
      expect(await run(LOCK_RELEASE_ALL, keys, ['tok-A', LONG_MS])).toBe(1);
      expect(await pttl(k.fence2)).toBeLessThanOrEqual(1000); // never lengthened
    });

    it('window-open (NX): {1, 0} opens a window; while it is open {0, pttl}, and it stays the first one', async () => {
      const k = named('window');
      expect(await run(WINDOW_OPEN, [k.lock], ['tok-A', TTL_MS])).toEqual([1, 0]);
      const [status, left] = (await run(WINDOW_OPEN, [k.lock], ['tok-B', LONG_MS])) as number[];
      expect(status).toBe(0);
      expect(left).toBeGreaterThan(TTL_MS - SLACK_MS);
      expect(await get(k.lock)).toBe('tok-A');
      expect(await pttl(k.lock)).toBeLessThanOrEqual(TTL_MS);
    });
  });

  describe('fence raise (Redlock)', () => {
    it('raises to n only when n is higher; never lowers the counter nor cuts its PTTL', async () => {
      const k = named('raise');
      expect(await run(FENCE_RAISE, [k.fence], [1000, TTL_MS])).toBe(1000);
      expect(await get(k.fence)).toBe('1000');
      expect(await run(FENCE_RAISE, [k.fence], [500, LONG_MS])).toBe(1000);
      expect(await get(k.fence)).toBe('1000');
      expect(await pttl(k.fence)).toBeGreaterThan(LONG_MS - SLACK_MS); // at least fenceTtl
      expect(await run(FENCE_RAISE, [k.fence], [1000, TTL_MS])).toBe(1000);
      expect(await pttl(k.fence)).toBeGreaterThan(LONG_MS - SLACK_MS); // never cut
      expect(await run(FENCE_RAISE, [k.fence], [2000, TTL_MS])).toBe(2000);
      expect(await get(k.fence)).toBe('2000');
    });
  });

  describe('leader', () => {
    it('announce: only by the lock holder; observe tells nobody, an announced holder, an unannounced one', async () => {
      const k = named('leader');
      const keys = [k.lock, k.leader];
      expect(await run(LEADER_OBSERVE, keys, [])).toEqual([0]);
      expect(await run(LEADER_ANNOUNCE, keys, ['tok-A', 'node-a', 7, TTL_MS])).toBe(0); // nobody holds it
      expect(await fx.admin.exists(k.leader)).toBe(0);
      await acquire(k, 'tok-A');
      expect(await run(LEADER_ANNOUNCE, keys, ['tok-B', 'node-b', 8, TTL_MS])).toBe(0); // not the holder
      expect(await fx.admin.exists(k.leader)).toBe(0);
      expect(await run(LEADER_OBSERVE, keys, [])).toEqual([2, expect.any(Number)]);
      expect(await run(LEADER_ANNOUNCE, keys, ['tok-A', 'node-a', 7, TTL_MS])).toBe(1);
      const [seen, left, id, term] = (await run(LEADER_OBSERVE, keys, [])) as [
        number,
        number,
        string,
        number,
      ];
      expect([seen, id, term]).toEqual([1, 'node-a', 7]);
      expect(left).toBeGreaterThan(TTL_MS - SLACK_MS);
      expect(JSON.stringify(await fx.admin.hgetall(k.leader))).not.toContain('tok-A');
      // A new holder that has not announced: the old record is not taken for it.
      await fx.admin.set(k.lock, 'tok-B', 'PX', TTL_MS);
      expect(await run(LEADER_OBSERVE, keys, [])).toEqual([2, expect.any(Number)]);
      expect(await run(LEADER_ANNOUNCE, keys, ['tok-A', 'node-a', 9, TTL_MS])).toBe(0); // deposed
      expect(await fx.admin.hget(k.leader, 'term')).toBe('7');
      // Nobody holds it: the record left behind is not a leader.
      await fx.admin.del(k.lock);
      expect(await run(LEADER_OBSERVE, keys, [])).toEqual([0]);
    });
  });

  describe('run-once claim: the fence counter', () => {
    it('none left: written (SET NX) at the clock with fenceTtl; behind the clock: the clock; ahead: last + 1', async () => {
      const claim = (k: { rec: string; fence: string }, token: string) =>
        run(ONCE_CLAIM, [k.rec, k.fence], [token, TTL_MS, '', FENCE_TTL_MS, 5]) as Promise<[number, number]>;
      const none = named('claim-none');
      const t0 = Date.now();
      const [ok, fence] = await claim({ rec: none.rec, fence: none.fence }, 'tok-A');
      expect(ok).toBe(1);
      // The store's TIME, not the client's 5 ms since the epoch.
      expect(fence).toBeGreaterThan(t0 - SLACK_MS);
      expect(fence).toBeLessThan(t0 + SLACK_MS);
      expect(await get(none.fence)).toBe(String(fence));
      expect(await pttl(none.fence)).toBeGreaterThan(FENCE_TTL_MS - SLACK_MS);
      expect(await pttl(none.fence)).toBeLessThanOrEqual(FENCE_TTL_MS);
      expect(await fx.admin.hmget(none.rec, 's', 't', 'f')).toEqual(['P', 'tok-A', String(fence)]);

      const behind = named('claim-behind');
      await fx.admin.set(behind.fence, '42', 'PX', 1000);
      const [, late] = await claim({ rec: behind.rec, fence: behind.fence }, 'tok-B');
      expect(late).toBeGreaterThan(t0 - SLACK_MS);
      expect(await get(behind.fence)).toBe(String(late));
      expect(await pttl(behind.fence)).toBeGreaterThan(FENCE_TTL_MS - SLACK_MS);

      const ahead = named('claim-ahead');
      const far = Date.now() + 10 * 365 * 86_400_000;
      await fx.admin.set(ahead.fence, String(far), 'PX', LONG_MS);
      expect(await claim({ rec: ahead.rec, fence: ahead.fence }, 'tok-C')).toEqual([1, far + 1]);
      expect(await get(ahead.fence)).toBe(String(far + 1));
      expect(await pttl(ahead.fence)).toBeLessThanOrEqual(FENCE_TTL_MS);
    });
  });

  describe('run-once batch scripts: every record its own guards, side by side in one call', () => {
    /** Record and counter keys of one batch (one hash tag: one slot, as record-batch.ts merges them). */
    const batchOf = (label: string, n: number) => {
      const tag = `{${unique(label)}}`;
      return Array.from({ length: n }, (_, i) => ({
        rec: `oncely:once:${tag}:${i}:rec`,
        fence: `oncely:once:${tag}:${i}:fence`,
      }));
    };
    const keysOf = (ks: { rec: string; fence: string }[]) => ks.flatMap((k) => [k.rec, k.fence]);
    const hmget = (key: string) => fx.admin.hmget(key, 's', 't', 'f', 'h', 'r');

    it("once-claim-many: new, ours, another owner's, completed, mismatched, counter-ahead and counter-behind records, each its own reply", async () => {
      const ks = batchOf('claim-many', 9);
      const far = Date.now() + 10 * 365 * 86_400_000;
      await fx.admin.hset(ks[1]!.rec, 's', 'P', 't', 'tok-1', 'f', '11', 'h', '');
      await fx.admin.pexpire(ks[1]!.rec, 1000);
      await fx.admin.hset(ks[2]!.rec, 's', 'P', 't', 'tok-X', 'f', '12', 'h', 'hash-2');
      await fx.admin.pexpire(ks[2]!.rec, TTL_MS);
      await fx.admin.hset(ks[3]!.rec, 's', 'C', 't', 'tok-X', 'f', '13', 'h', 'hash-3', 'r', 'j"done"');
      await fx.admin.pexpire(ks[3]!.rec, TTL_MS);
      await fx.admin.hset(ks[4]!.rec, 's', 'C', 't', 'tok-X', 'f', '14', 'h', 'other', 'r', 'j"x"');
      await fx.admin.pexpire(ks[4]!.rec, TTL_MS);
      await fx.admin.set(ks[5]!.fence, String(far), 'PX', LONG_MS);
      // Ours, but completed: its result, not a re-claim. Another owner's, made without a payload hash: the
      // claim's hash is not compared with it.
      await fx.admin.hset(ks[6]!.rec, 's', 'C', 't', 'tok-6', 'f', '16', 'h', '', 'r', 'j"six"');
      await fx.admin.pexpire(ks[6]!.rec, TTL_MS);
      await fx.admin.hset(ks[7]!.rec, 's', 'P', 't', 'tok-X', 'f', '17', 'h', '');
      await fx.admin.pexpire(ks[7]!.rec, TTL_MS);
      // A counter left behind the clock (a record given back long ago), about to expire.
      await fx.admin.set(ks[8]!.fence, '42', 'PX', 1000);
      const t0 = Date.now();
      const tokens = [
        'tok-0',
        '',
        'tok-1',
        'hash-1',
        'tok-2',
        '',
        'tok-3',
        'hash-3',
        'tok-4',
        'hash-4',
        'tok-5',
        '',
        'tok-6',
        '',
        'tok-7',
        'hash-7',
        'tok-8',
        '',
      ];
      // A client clock at 5 ms since the epoch: the store's TIME wins.
      const reply = (await run(ONCE_CLAIM_MANY, keysOf(ks), [
        LONG_MS,
        FENCE_TTL_MS,
        5,
        ...tokens,
      ])) as unknown[][];
      const [fresh, ours, theirs, done, mismatch, ahead, oursDone, unhashed, behind] = reply;
      expect(fresh![0]).toBe(1);
      expect(fresh![1]).toBeGreaterThan(t0 - SLACK_MS);
      expect(fresh![1]).toBeLessThan(t0 + SLACK_MS);
      expect(await hmget(ks[0]!.rec)).toEqual(['P', 'tok-0', String(fresh![1]), '', null]);
      expect(await get(ks[0]!.fence)).toBe(String(fresh![1]));
      expect(await pttl(ks[0]!.rec)).toBeGreaterThan(LONG_MS - SLACK_MS);
      expect(await pttl(ks[0]!.fence)).toBeLessThanOrEqual(FENCE_TTL_MS);
      expect(await pttl(ks[0]!.fence)).toBeGreaterThan(FENCE_TTL_MS - SLACK_MS);
      // Ours in progress (its hash unchecked): the same fence, the lease renewed.
      expect(ours).toEqual([1, 11]);
      expect(await pttl(ks[1]!.rec)).toBeGreaterThan(LONG_MS - SLACK_MS);
      // Another owner's (no hash in the claim: not compared): in progress, untouched.
      expect(theirs![0]).toBe(0);
      expect(theirs![1]).toBeLessThanOrEqual(TTL_MS);
      expect(await hmget(ks[2]!.rec)).toEqual(['P', 'tok-X', '12', 'hash-2', null]);
      expect(done![0]).toBe(2);
      expect(done![1]).toBe('j"done"');
      expect(mismatch).toEqual([3, 'C']);
      expect(await hmget(ks[4]!.rec)).toEqual(['C', 'tok-X', '14', 'other', 'j"x"']);
      expect(ahead).toEqual([1, far + 1]);
      expect(await get(ks[5]!.fence)).toBe(String(far + 1));
      expect(await pttl(ks[5]!.fence)).toBeLessThanOrEqual(FENCE_TTL_MS);
      // Behind the clock: the clock's fence, not the counter's next; the counter raised and given fenceTtl.
      expect(behind![0]).toBe(1);
      expect(behind![1]).toBeGreaterThan(t0 - SLACK_MS);
      expect(await get(ks[8]!.fence)).toBe(String(behind![1]));
      expect(await pttl(ks[8]!.fence)).toBeGreaterThan(FENCE_TTL_MS - SLACK_MS);
      expect(await hmget(ks[8]!.rec)).toEqual(['P', 'tok-8', String(behind![1]), '', null]);
      expect(oursDone).toEqual([2, 'j"six"', expect.any(Number)]);
      expect(await hmget(ks[6]!.rec)).toEqual(['C', 'tok-6', '16', '', 'j"six"']);
      expect(unhashed![0]).toBe(0);
      expect(await hmget(ks[7]!.rec)).toEqual(['P', 'tok-X', '17', '', null]);
      expect(reply).toHaveLength(9);
    });

    it("once-complete-many: ours, ours again, another owner's, gone and moved on, gone and still ours, each its own reply", async () => {
      const ks = batchOf('complete-many', 5);
      await fx.admin.hset(ks[0]!.rec, 's', 'P', 't', 'tok-0', 'f', '10', 'h', '');
      await fx.admin.set(ks[0]!.fence, '10', 'PX', 1000);
      await fx.admin.hset(ks[1]!.rec, 's', 'C', 't', 'tok-1', 'f', '11', 'h', '', 'r', 'j"first"');
      await fx.admin.pexpire(ks[1]!.rec, TTL_MS);
      await fx.admin.hset(ks[2]!.rec, 's', 'P', 't', 'tok-X', 'f', '13', 'h', '');
      await fx.admin.pexpire(ks[2]!.rec, TTL_MS);
      await fx.admin.set(ks[3]!.fence, '14', 'PX', TTL_MS); // we had 13: someone claimed since
      await fx.admin.set(ks[4]!.fence, '15', 'PX', 1000); // we had 15: nobody claimed since
      const own = [
        ...['tok-0', 10, 'j"r0"', ''],
        ...['tok-1', 11, 'j"r1"', ''],
        ...['tok-2', 12, 'j"r2"', ''],
        ...['tok-3', 13, 'j"r3"', ''],
        ...['tok-4', 15, 'j"r4"', 'hash-4'],
      ];
      const reply = await run(ONCE_COMPLETE_MANY, keysOf(ks), [LONG_MS, LONG_MS, ...own]);
      expect(reply).toEqual([1, 2, -1, 0, 3]);
      expect(await hmget(ks[0]!.rec)).toEqual(['C', 'tok-0', '10', '', 'j"r0"']);
      expect(await pttl(ks[0]!.rec)).toBeGreaterThan(LONG_MS - SLACK_MS);
      expect(await pttl(ks[0]!.fence)).toBeGreaterThan(LONG_MS - SLACK_MS);
      expect(await hmget(ks[1]!.rec)).toEqual(['C', 'tok-1', '11', '', 'j"first"']);
      expect(await pttl(ks[1]!.rec)).toBeLessThanOrEqual(TTL_MS);
      expect(await hmget(ks[2]!.rec)).toEqual(['P', 'tok-X', '13', '', null]);
      expect(await pttl(ks[2]!.rec)).toBeLessThanOrEqual(TTL_MS);
      expect(await fx.admin.exists(ks[3]!.rec)).toBe(0);
      expect(await pttl(ks[3]!.fence)).toBeLessThanOrEqual(TTL_MS);
      expect(await hmget(ks[4]!.rec)).toEqual(['C', 'tok-4', '15', 'hash-4', 'j"r4"']);
      expect(await pttl(ks[4]!.fence)).toBeGreaterThan(LONG_MS - SLACK_MS);
    });
  });

  describe('operators', () => {
    it('once-inspect: {0, now} without a record; the record without its token', async () => {
      const k = named('inspect');
      const t0 = Date.now();
      const [none, now] = (await run(ONCE_INSPECT, [k.rec, k.fence], [])) as number[];
      expect(none).toBe(0);
      expect(Math.abs(now! - t0)).toBeLessThan(SLACK_MS);
      await fx.admin.hset(k.rec, 's', 'C', 't', 'tok-A', 'f', '41', 'h', 'hash', 'r', 'j"abc"');
      await fx.admin.pexpire(k.rec, TTL_MS);
      await fx.admin.set(k.fence, '42', 'PX', FENCE_TTL_MS);
      const reply = (await run(ONCE_INSPECT, [k.rec, k.fence], [])) as unknown[];
      expect(reply).toEqual([1, expect.any(Number), 'C', 41, 'hash', 6, expect.any(Number), 42]);
      expect(JSON.stringify(reply)).not.toContain('tok-A');
    });

    it('once-forget: deletes only the record the operator saw (its fence, or any with an empty fence)', async () => {
      const k = named('forget');
      expect(await run(ONCE_FORGET, [k.rec], [''])).toEqual([0]);
      await fx.admin.hset(k.rec, 's', 'P', 't', 'tok-A', 'f', '41');
      await fx.admin.set(k.fence, '41', 'PX', FENCE_TTL_MS);
      expect(await run(ONCE_FORGET, [k.rec], ['40'])).toEqual([2, 41]); // claimed since the operator looked
      expect(await fx.admin.hget(k.rec, 't')).toBe('tok-A');
      expect(await run(ONCE_FORGET, [k.rec], ['41'])).toEqual([1, 'P']);
      expect(await fx.admin.exists(k.rec)).toBe(0);
      expect(await get(k.fence)).toBe('41'); // the counter stays
      await fx.admin.hset(k.rec, 's', 'C', 't', 'tok-B', 'f', '42');
      expect(await run(ONCE_FORGET, [k.rec], [''])).toEqual([1, 'C']);
      expect(await fx.admin.exists(k.rec)).toBe(0);
    });

    it('lock-force-release: deletes only the lock the operator saw (its fence, or any with an empty fence)', async () => {
      const k = named('force');
      expect(await run(LOCK_FORCE_RELEASE, [k.lock, k.fence], [''])).toEqual([0]);
      await fx.admin.set(k.fence, '41', 'PX', FENCE_TTL_MS);
      expect(await run(LOCK_FORCE_RELEASE, [k.lock, k.fence], [''])).toEqual([0]); // a counter, no lock
      const [, fence] = await acquire(k, 'tok-A');
      expect(await run(LOCK_FORCE_RELEASE, [k.lock, k.fence], [String(fence - 1)])).toEqual([2, fence]);
      expect(await get(k.lock)).toBe('tok-A');
      expect(await run(LOCK_FORCE_RELEASE, [k.lock, k.fence], [String(fence)])).toEqual([1, fence]);
      expect(await fx.admin.exists(k.lock)).toBe(0);
      expect(await get(k.fence)).toBe(String(fence)); // the counter stays
      const [, next] = await acquire(k, 'tok-B');
      expect(await run(LOCK_FORCE_RELEASE, [k.lock, k.fence], [''])).toEqual([1, next]);
      expect(await fx.admin.exists(k.lock)).toBe(0);
    });
  });
});
