/**
 * The Redis fenced write (oncely/effects/redis) on every transport: each guard of EFFECT_SET with a test that
 * fails when it is broken (docs/safety.md lists them), in the manner of script-guards.test.ts: the keys set up
 * on the server, one script call through the store, its reply and what it left checked. Then fencedSet itself:
 * the fence key in the value's slot, its errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fencedSet, fenceKeyFor } from '../../layers/oncely/src/effects/redis.js';
import { StaleFenceError, ValidationError } from '../../layers/oncely/src/errors.js';
import type { Store } from '../../layers/oncely/src/index.js';
import { EFFECT_SET } from '../../layers/oncely/src/scripts.js';
import type { ScriptArg } from '../../layers/oncely/src/transport/types.js';
import { unique } from '../support/once.js';
import { norm, startTransport, TRANSPORTS, type TransportFixture } from '../support/transports.js';

const TTL_MS = 60_000;
/** Far above any TTL a test asks for: a fence given this PTTL shows whether a write cut it. */
const LONG_MS = 86_400_000;
/** Slack for the PTTL a key loses while a test runs (a busy machine). */
const SLACK_MS = 30_000;
const F = 1_700_000_000_000; // a fence as a lock hands them out (ms-floored)

describe.each(TRANSPORTS)('fenced writes to Redis over %s', (transport) => {
  let fx: TransportFixture;
  let store: Store;
  beforeAll(async () => {
    fx = await startTransport(transport);
    store = fx.store({ timeoutMs: 5000 });
  });
  afterAll(async () => {
    await fx?.stop();
  });

  const keys = (label: string) => {
    const key = `effect:{${unique(label)}}`;
    return { key, fence: fenceKeyFor(key) };
  };
  const set = async (
    k: { key: string; fence: string },
    fence: number,
    value: string,
    ttl: number | '' = '',
    nx = false,
  ) =>
    norm(
      await store.run(EFFECT_SET, [k.key, k.fence], [
        fence,
        value,
        ttl,
        ...(nx ? ['NX'] : []),
      ] as ScriptArg[]),
    );
  const get = (key: string) => fx.admin.get(key);
  const pttl = (key: string) => fx.admin.pttl(key);

  describe('EFFECT_SET guards', () => {
    it('no fence yet counts as 0; an older fence is refused {0, last} and touches nothing; the same fence writes again (1)', async () => {
      const k = keys('order');
      expect(await set(k, 1, 'first')).toBe(1);
      expect(await set(k, F, 'newer')).toBe(1);
      expect(await get(k.fence)).toBe(String(F));
      expect(await set(k, F - 1, 'stale')).toEqual([0, F]);
      expect(await get(k.key)).toBe('newer');
      expect(await get(k.fence)).toBe(String(F));
      expect(await set(k, F, 'again')).toBe(1);
      expect(await get(k.key)).toBe('again');
    });

    it("'NX': a key that exists is left as it is (2), fence unmoved; without it overwritten; a stale writer is refused first", async () => {
      const k = keys('nx');
      expect(await set(k, F, 'first', '', true)).toBe(1);
      expect(await set(k, F + 5, 'second', '', true)).toBe(2);
      expect(await get(k.key)).toBe('first');
      expect(await get(k.fence)).toBe(String(F));
      expect(await set(k, F - 1, 'stale', '', true)).toEqual([0, F]);
      expect(await set(k, F + 5, 'second')).toBe(1);
      expect(await get(k.key)).toBe('second');
    });

    it('with ttlMs: the value gets PX ttlMs, a new fence lives ttlMs; a longer-lived fence is not cut, a persistent one gets no expiry', async () => {
      const k = keys('ttl');
      expect(await set(k, F, 'v', TTL_MS)).toBe(1);
      for (const key of [k.key, k.fence]) {
        expect(await pttl(key)).toBeGreaterThan(TTL_MS - SLACK_MS);
        expect(await pttl(key)).toBeLessThanOrEqual(TTL_MS);
      }
      await fx.admin.pexpire(k.fence, LONG_MS);
      expect(await set(k, F + 1, 'v2', TTL_MS)).toBe(1);
      expect(await pttl(k.fence)).toBeGreaterThan(LONG_MS - SLACK_MS); // kept (KEEPTTL), not cut to TTL_MS
      expect(await get(k.fence)).toBe(String(F + 1));
      await fx.admin.persist(k.fence);
      expect(await set(k, F + 2, 'v3', TTL_MS)).toBe(1);
      expect(await pttl(k.fence)).toBe(-1);
    });

    it('without ttlMs: the value persists (a PX it had is cleared) and so does its fence', async () => {
      const k = keys('persist');
      await set(k, F, 'v', TTL_MS);
      expect(await set(k, F + 1, 'v2')).toBe(1);
      expect(await pttl(k.key)).toBe(-1);
      expect(await pttl(k.fence)).toBe(-1);
    });
  });

  describe('fencedSet', () => {
    it('true when written, false with ifAbsent on an existing key, StaleFenceError naming both fences', async () => {
      const key = `plain-${unique('fs')}`;
      expect(await fencedSet(store, { key, value: 'a', fence: F })).toBe(true);
      expect(await fencedSet(store, { key, value: 'b', fence: F + 1, ifAbsent: true })).toBe(false);
      const err = await fencedSet(store, { key, value: 'c', fence: F - 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StaleFenceError);
      expect(err).toMatchObject({ resource: key, fence: F - 1, current: F });
      expect((err as Error).message).toBe(
        `write to "${key}" refused: fence ${F - 1} is older than fence ${F}`,
      );
      expect(await get(key)).toBe('a');
      expect(await get(`{${key}}:oncely-fence`)).toBe(String(F));
    });

    it('the fence key shares the value key’s slot: its hash tag, or the whole key made one', async () => {
      expect(fenceKeyFor('order:42')).toBe('{order:42}:oncely-fence');
      expect(fenceKeyFor('order:{42}:status')).toBe('order:{42}:status:oncely-fence');
      expect(fenceKeyFor('a{}b')).toBe('{a{}b}:oncely-fence');
      // On a cluster, a key with and one without a tag both write (a CROSSSLOT would fail the call).
      await fencedSet(store, { key: `order:{${unique('t')}}:status`, value: 'x', fence: F });
      await fencedSet(store, { key: `order:${unique('u')}`, value: 'x', fence: F });
    });

    it('bad input is one ValidationError naming each problem, before any call', async () => {
      const err = await fencedSet(store, {
        key: 'a}b',
        value: 5 as unknown as string,
        fence: 0,
        ttlMs: 0,
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).problems).toEqual([
        'key has a "}" but no hash tag: its fence key cannot share its cluster slot; add a {tag}',
        'value must be a string',
        'fence is 0: the handler ran without a record (failOpen, missingKey "run" or ONCELY_DISABLED)',
        'ttlMs must be a whole number of milliseconds from 1 to 9007199254740991, got 0',
      ]);
    });
  });
});
