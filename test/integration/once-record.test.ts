/**
 * The run-once record's invariants on real servers, on every transport (REST through the gateway, a standalone
 * redis-server and a 3-master cluster over TCP): each transition script (scripts/once.ts) is run through the
 * store, as once/record.ts builds its calls, against a record set up on the server; and the same invariants are
 * checked once more through withOnce. A record's expiry is made with an explicit DEL (what its PX expiry does,
 * without waiting for it), so nothing here depends on timing.
 *
 * The invariants: a late owner (its record expired, a newer owner claimed since and still runs) can neither
 * complete, release nor extend the newer owner's record, which stays byte for byte as it was; a late owner whose
 * record is gone and whose fence the counter has moved past writes nothing; one whose fence the counter still
 * holds completes late; an owner never rewrites, shortens or deletes its own completed record.
 *
 * Each invariant is checked twice: with the record's own script (ONCE_CLAIM, ONCE_COMPLETE: a single event),
 * and "in a batch", its call merged with a neighbour record's into one ONCE_CLAIM_MANY / ONCE_COMPLETE_MANY
 * (record-batch.ts; the neighbour first, under the same hash tag), so every guard of the batch scripts is
 * held to the same tests as the single record's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LockLostError, type OnceRun, type Store, withOnce } from '../../layers/oncely/src/index.js';
import {
  type CompleteReply,
  FENCE_GRACE_MS,
  parseClaim,
  parseComplete,
  Records,
} from '../../layers/oncely/src/once/record.js';
import { batchTrip, merge } from '../../layers/oncely/src/once/record-batch.js';
import { ONCE_CLAIM, ONCE_COMPLETE, ownerReply } from '../../layers/oncely/src/scripts.js';
import type { ScriptCall } from '../../layers/oncely/src/transport/types.js';
import { deferred, lambdaContext, unique } from '../support/once.js';
import { startTransport, TRANSPORTS, type TransportFixture } from '../support/transports.js';

/** The newer owner's lease, and the retention of a completed record: long, so nothing expires by itself. */
const LEASE_MS = 600_000;
const RETENTION_MS = 3_600_000;
/** What a late owner asks for: longer than anything set above, so a write of its would raise a PTTL. */
const LATE_MS = 86_400_000;

/** What the server holds for one record: the hash's fields and the counter, byte for byte (hex), and their PTTLs. */
interface Snapshot {
  record: Record<string, string>;
  fence: string | null;
  recordTtlMs: number;
  fenceTtlMs: number;
}

const CASES = TRANSPORTS.flatMap((t) => [
  [t, 'alone'],
  [t, 'in a batch'],
]) as [(typeof TRANSPORTS)[number], 'alone' | 'in a batch'][];

describe.each(CASES)('run-once record invariants over %s, %s', (transport, mode) => {
  let fx: TransportFixture;
  let store: Store;
  let records: Records;

  beforeAll(async () => {
    fx = await startTransport(transport);
    store = fx.store({ timeoutMs: 5000 });
    records = new Records('oncely', `inv-${transport}`);
  });
  afterAll(async () => {
    await fx?.stop();
  });

  /**
   * A neighbour of `call` for a merged call: a new record's claim, or a completion by a token that owns
   * nothing (it writes nothing), with the same shared args; its keys beside `call`'s, under the same hash tag
   * (one cluster slot).
   */
  function neighbour(call: ScriptCall): ScriptCall {
    const n = unique('n');
    const keys = call.keys.map((k) => k.replace(/:(rec|fence)$/, `:${n}:$1`));
    const a = call.args;
    const args =
      call.script === ONCE_CLAIM
        ? ['token-N', a[1]!, '', a[3]!, a[4]!]
        : ['token-N', 1, 'j"N"', a[3]!, a[4]!, ''];
    return { script: call.script, keys, args };
  }

  /** Runs `call` alone, or (mode 'in a batch') merged after a neighbour's into one batch script. */
  async function run(call: ScriptCall): Promise<unknown> {
    if (mode === 'alone' || (call.script !== ONCE_CLAIM && call.script !== ONCE_COMPLETE))
      return store.run(call.script, call.keys, call.args);
    const calls = [neighbour(call), call];
    const merged = merge(calls, store.kind === 'cluster');
    expect(merged.map((m) => [m.call.script.name, m.of])).toEqual([[`${call.script.name}-many`, [0, 1]]]);
    const [first, mine] = await batchTrip(store, calls);
    expect(first?.ok).toBe(true);
    if (!mine?.ok) throw mine?.error;
    return mine.value;
  }

  /** Claims `key` for `token` and returns the fence (the claim must succeed). */
  async function claim(key: string, token: string, hash = '', ttlMs = LEASE_MS): Promise<number> {
    const reply = parseClaim(await run(records.claim(key, token, hash, ttlMs, Date.now())), store.name);
    expect(reply).toMatchObject({ kind: 'claimed' });
    return (reply as { fence: number }).fence;
  }
  const complete = async (
    key: string,
    token: string,
    fence: number,
    text: string,
    retentionMs = RETENTION_MS,
  ): Promise<CompleteReply> =>
    parseComplete(await run(records.complete({ key, token, fence, hash: '' }, text, retentionMs)));
  const extend = async (key: string, token: string, ttlMs = LATE_MS) =>
    ownerReply(await run(records.extend(key, token, ttlMs)));
  const release = async (key: string, token: string) => ownerReply(await run(records.release(key, token)));

  /** The record's PX expiry, as the server would run it: the record goes, its fence counter stays. */
  const expire = async (key: string) => {
    expect(await fx.admin.del(records.keysOf(key)[0])).toBe(1);
  };

  async function snapshot(key: string): Promise<Snapshot> {
    const [rec, fence] = records.keysOf(key);
    const fields = await fx.admin.hgetallBuffer(rec);
    return {
      record: Object.fromEntries(
        Object.entries(fields)
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([k, v]) => [k, v.toString('hex')]),
      ),
      fence: (await fx.admin.getBuffer(fence))?.toString('hex') ?? null,
      recordTtlMs: await fx.admin.pttl(rec),
      fenceTtlMs: await fx.admin.pttl(fence),
    };
  }

  /**
   * `after` is `before`, byte for byte, and neither PTTL was raised or cut: a write to either key by a late
   * call (all of which ask for LATE_MS or RETENTION_MS + the grace) would have moved one.
   */
  function expectUntouched(after: Snapshot, before: Snapshot, slackMs = 60_000): void {
    expect(after.record).toEqual(before.record);
    expect(after.fence).toBe(before.fence);
    expect(after.recordTtlMs).toBeLessThanOrEqual(before.recordTtlMs);
    expect(after.recordTtlMs).toBeGreaterThan(before.recordTtlMs - slackMs);
    expect(after.fenceTtlMs).toBeLessThanOrEqual(before.fenceTtlMs);
    expect(after.fenceTtlMs).toBeGreaterThan(before.fenceTtlMs - slackMs);
  }

  /** A late owner A (its record expired) and a newer owner B that claimed since and still runs. */
  async function lateAndNewer(label: string) {
    const key = unique(label);
    const aFence = await claim(key, 'token-A');
    await expire(key);
    const bFence = await claim(key, 'token-B');
    expect(bFence).toBeGreaterThan(aFence);
    const before = await snapshot(key);
    expect(Object.keys(before.record)).toEqual(['f', 'h', 's', 't']);
    expect(Buffer.from(before.record.s!, 'hex').toString()).toBe('P');
    expect(Buffer.from(before.record.t!, 'hex').toString()).toBe('token-B');
    return { key, aFence, bFence, before };
  }

  describe('a late owner while a newer owner runs', () => {
    it("its completion is refused ('stolen') and leaves the newer record untouched", async () => {
      const { key, aFence, bFence, before } = await lateAndNewer('late-complete');
      expect(await complete(key, 'token-A', aFence, 'j"A"', LATE_MS)).toBe('stolen');
      expectUntouched(await snapshot(key), before);
      // The newer owner's record is still its own: it completes.
      expect(await complete(key, 'token-B', bFence, 'j"B"')).toBe('completed');
      expect(await fx.admin.hget(records.keysOf(key)[0], 'r')).toBe('j"B"');
    });

    it("its failure (release) is refused ('theirs') and leaves the newer record untouched", async () => {
      const { key, bFence, before } = await lateAndNewer('late-release');
      expect(await release(key, 'token-A')).toBe('theirs');
      expectUntouched(await snapshot(key), before);
      expect(await complete(key, 'token-B', bFence, 'j"B"')).toBe('completed');
    });

    it("its extension is refused ('theirs') and leaves the newer record untouched", async () => {
      const { key, before } = await lateAndNewer('late-extend');
      expect(await extend(key, 'token-A')).toBe('theirs');
      expectUntouched(await snapshot(key), before);
    });

    it('the newer owner completed: the late completion, release and extension leave its result', async () => {
      const { key, aFence, bFence } = await lateAndNewer('late-after-done');
      expect(await complete(key, 'token-B', bFence, 'j"B"')).toBe('completed');
      const before = await snapshot(key);
      expect(await complete(key, 'token-A', aFence, 'j"A"', LATE_MS)).toBe('stolen');
      expect(await release(key, 'token-A')).toBe('theirs');
      expect(await extend(key, 'token-A')).toBe('theirs');
      expectUntouched(await snapshot(key), before);
    });
  });

  describe('a late owner whose record is gone', () => {
    it('the fence moved on (a newer owner claimed; its record is gone too): nothing is written', async () => {
      const { key, aFence, bFence } = await lateAndNewer('gone-moved-on');
      await expire(key); // B's lease ran out too (or B failed and released)
      const before = await snapshot(key);
      expect(before.record).toEqual({});
      expect(Buffer.from(before.fence!, 'hex').toString()).toBe(String(bFence));
      expect(await complete(key, 'token-A', aFence, 'j"A"', LATE_MS)).toBe('expired');
      expectUntouched(await snapshot(key), before);
      expect(await release(key, 'token-A')).toBe('gone');
      expect(await extend(key, 'token-A')).toBe('gone');
      expectUntouched(await snapshot(key), before);
      // The record was left for the owner whose fence the counter holds: B still completes, late.
      expect(await complete(key, 'token-B', bFence, 'j"B"')).toBe('completed-late');
      expect(await fx.admin.hmget(records.keysOf(key)[0], 's', 't', 'f', 'r')).toEqual([
        'C',
        'token-B',
        String(bFence),
        'j"B"',
      ]);
    });

    it('the counter still holds its fence (nobody claimed since): it completes late, as the owner', async () => {
      const key = unique('gone-late');
      const fence = await claim(key, 'token-A', 'hash-A');
      await expire(key);
      expect(await complete(key, 'token-A', fence, 'j"A"')).toBe('completed-late');
      const [rec, counter] = records.keysOf(key);
      expect(await fx.admin.hmget(rec, 's', 't', 'f', 'r')).toEqual(['C', 'token-A', String(fence), 'j"A"']);
      expect(await fx.admin.pttl(rec)).toBeGreaterThan(RETENTION_MS - 60_000);
      expect(await fx.admin.pttl(counter)).toBeGreaterThan(RETENTION_MS);
      // A duplicate gets the late result.
      const dup = parseClaim(await run(records.claim(key, 'token-C', '', LEASE_MS, Date.now())), store.name);
      expect(dup).toEqual({ kind: 'completed', value: 'A' });
    });
  });

  describe("an owner's own record", () => {
    it('completing again (a retried request) keeps the first result and retention', async () => {
      const key = unique('own-again');
      const fence = await claim(key, 'token-A');
      expect(await complete(key, 'token-A', fence, 'j"first"')).toBe('completed');
      const before = await snapshot(key);
      expect(await complete(key, 'token-A', fence, 'j"second"', LATE_MS)).toBe('already-completed');
      expectUntouched(await snapshot(key), before);
    });

    it('a completed record is neither released nor extended by its owner', async () => {
      const key = unique('own-done');
      const fence = await claim(key, 'token-A');
      expect(await complete(key, 'token-A', fence, 'j"done"')).toBe('completed');
      const before = await snapshot(key);
      expect(await release(key, 'token-A')).toBe('theirs');
      expect(await extend(key, 'token-A', 1000)).toBe('theirs');
      expectUntouched(await snapshot(key), before);
    });

    it('in progress: release deletes the record and keeps the counter; extend moves both PTTLs', async () => {
      const key = unique('own-live');
      const fence = await claim(key, 'token-A', '', 10_000);
      const [rec, counter] = records.keysOf(key);
      expect(await extend(key, 'token-A', LATE_MS)).toBe('ours');
      expect(await fx.admin.pttl(rec)).toBeGreaterThan(LATE_MS - 60_000);
      expect(await fx.admin.pttl(counter)).toBeGreaterThan(LATE_MS);
      expect(await release(key, 'token-A')).toBe('ours');
      expect(await fx.admin.exists(rec)).toBe(0);
      expect(await fx.admin.get(counter)).toBe(String(fence));
      expect(await release(key, 'token-A')).toBe('gone');
      expect(await extend(key, 'token-A')).toBe('gone');
      // The next claim gets a higher fence from the counter that stayed.
      expect(await claim(key, 'token-B')).toBeGreaterThan(fence);
    });
  });

  describe('claim', () => {
    it('re-run by its owner while in progress: the same fence, the lease renewed; another token: in progress', async () => {
      const key = unique('claim-again');
      const fence = await claim(key, 'token-A', '', 10_000);
      expect(await claim(key, 'token-A', '', LEASE_MS)).toBe(fence);
      expect(await fx.admin.pttl(records.keysOf(key)[0])).toBeGreaterThan(LEASE_MS - 60_000);
      const before = await snapshot(key);
      const other = parseClaim(await run(records.claim(key, 'token-B', '', LATE_MS, Date.now())), store.name);
      expect(other).toMatchObject({ kind: 'in-progress' });
      expect((other as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(LEASE_MS - 60_000);
      expectUntouched(await snapshot(key), before);
    });

    it('re-run by its owner once completed: the stored result, not a new claim', async () => {
      const key = unique('claim-done');
      const fence = await claim(key, 'token-A');
      expect(await complete(key, 'token-A', fence, 'j{"v":1}')).toBe('completed');
      const before = await snapshot(key);
      const again = parseClaim(await run(records.claim(key, 'token-A', '', LATE_MS, Date.now())), store.name);
      expect(again).toEqual({ kind: 'completed', value: { v: 1 } });
      expectUntouched(await snapshot(key), before);
    });

    it('a payload hash is compared only when both the record and the claim have one', async () => {
      const checked = unique('claim-hash');
      await claim(checked, 'token-A', 'hash-1');
      const claimAs = async (key: string, token: string, hash: string) =>
        parseClaim(await run(records.claim(key, token, hash, LEASE_MS, Date.now())), store.name);
      expect(await claimAs(checked, 'token-B', 'hash-2')).toEqual({ kind: 'mismatch' });
      expect(await claimAs(checked, 'token-B', 'hash-1')).toMatchObject({ kind: 'in-progress' });
      expect(await claimAs(checked, 'token-B', '')).toMatchObject({ kind: 'in-progress' }); // unchecked claim
      const unchecked = unique('claim-nohash');
      await claim(unchecked, 'token-A', '');
      expect(await claimAs(unchecked, 'token-B', 'hash-2')).toMatchObject({ kind: 'in-progress' });
    });

    it('fences: above the counter when it is ahead of the clock, and at the clock when the counter is gone', async () => {
      const ahead = unique('fence-ahead');
      const [, counter] = records.keysOf(ahead);
      const far = Date.now() + 10 * 365 * 86_400_000; // a counter far ahead of any clock
      await fx.admin.set(counter, String(far), 'PX', 600_000);
      expect(await claim(ahead, 'token-A')).toBe(far + 1);

      const lost = unique('fence-lost');
      const first = await claim(lost, 'token-A');
      await expire(lost);
      expect(await fx.admin.del(records.keysOf(lost)[1])).toBe(1); // the counter gone too (a failover)
      const t0 = Date.now();
      // A client clock at 5 ms since the epoch: the store's TIME wins (the client's is only its fallback).
      const reply = await run(records.claim(lost, 'token-B', '', LEASE_MS, 5));
      const second = (parseClaim(reply, store.name) as { fence: number }).fence;
      // From the store's clock, not from 1 (the same host as ours); in the same millisecond as the first grant
      // the floor can equal its fence: docs/safety.md, the clock assumption.
      expect(second).toBeGreaterThanOrEqual(first);
      expect(second).toBeGreaterThan(t0 - 60_000);
      // the counter outlives the record by the grace period
      const [rec] = records.keysOf(lost);
      expect(await fx.admin.pttl(records.keysOf(lost)[1])).toBeGreaterThan(
        (await fx.admin.pttl(rec)) + FENCE_GRACE_MS - 60_000,
      );
    });
  });

  describe('through withOnce (two containers: a store each)', () => {
    it.each(['completes', 'fails'] as const)(
      'a late owner that %s while the newer owner runs: refused, the newer record untouched',
      async (ending) => {
        const ns = records.namespace;
        const key = unique(`api-${ending}`);
        const options = (s: Store) => ({
          store: s,
          namespace: ns,
          key: (e: { id: string }) => e.id,
          payload: false as const,
          logLevel: 'silent' as const,
        });
        const gateA = deferred();
        const gateB = deferred();
        const startedA = deferred();
        const startedB = deferred();
        const runs: OnceRun[] = [];
        const a = withOnce(
          async (_e: { id: string }, _c, once) => {
            runs.push(once);
            startedA.resolve();
            await gateA.promise;
            if (ending === 'fails') throw new Error('A failed late');
            return 'A';
          },
          options(fx.store({ timeoutMs: 5000 })),
        );
        const b = withOnce(
          async (_e: { id: string }, _c, once) => {
            runs.push(once);
            startedB.resolve();
            await gateB.promise;
            return 'B';
          },
          options(fx.store({ timeoutMs: 5000 })),
        );

        const first = a({ id: key }, lambdaContext(LEASE_MS)).catch((e: unknown) => e);
        await startedA.promise; // A's record is claimed
        await expire(key);
        const second = b({ id: key }, lambdaContext(LEASE_MS));
        await startedB.promise;
        expect(runs).toHaveLength(2);
        expect(runs[1]!.fence).toBeGreaterThan(runs[0]!.fence);
        const before = await snapshot(key);
        expect(Buffer.from(before.record.s!, 'hex').toString()).toBe('P');

        gateA.resolve();
        const late = await first;
        if (ending === 'completes') expect(late).toMatchObject({ name: 'LockLostError', reason: 'stolen' });
        else expect(late).toMatchObject({ message: 'A failed late' });
        expect(late).toBeInstanceOf(ending === 'completes' ? LockLostError : Error);
        expectUntouched(await snapshot(key), before);

        gateB.resolve();
        expect(await second).toBe('B');
        expect(await b({ id: key }, lambdaContext())).toBe('B');
        expect(runs).toHaveLength(2);
      },
    );

    it('a late owner whose record is gone and whose fence moved on: refused (expired), nothing written', async () => {
      const ns = records.namespace;
      const key = unique('api-gone');
      const gate = deferred();
      const started = deferred();
      const a = withOnce(
        async () => {
          started.resolve();
          await gate.promise;
          return 'A';
        },
        {
          store: fx.store({ timeoutMs: 5000 }),
          namespace: ns,
          key: (e: { id: string }) => e.id,
          logLevel: 'silent',
        },
      );
      const first = a({ id: key }, lambdaContext(LEASE_MS)).catch((e: unknown) => e);
      await started.promise; // its record is claimed
      await expire(key);
      // Another owner claims (the counter moves on), and its record goes too.
      await claim(key, 'token-B');
      await expire(key);
      const before = await snapshot(key);
      gate.resolve();
      expect(await first).toMatchObject({ name: 'LockLostError', reason: 'expired' });
      expectUntouched(await snapshot(key), before);
      expect(before.record).toEqual({});
    });
  });
});
