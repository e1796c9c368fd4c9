import { describe, expect, it } from 'vitest';
import {
  InProgressError,
  type OnceOptions,
  PayloadMismatchError,
  ValidationError,
  withOnce,
  withOnceBatch,
} from '../../layers/oncely/src/index.js';
import { LocalCache } from '../../layers/oncely/src/once/local-cache.js';
import { ADAPTERS, deferred, fakeOnce, lambdaContext, wrap } from '../support/once.js';

type Ev = { id: string; n?: number };

/** One fake clock for the store's expiry and the engine's monotonic and wall clocks. */
function setup(extra: Partial<OnceOptions<Ev>> = {}) {
  const t = { now: 1_000_000 };
  const options = {
    key: { jmespath: 'id' },
    payload: { jmespath: 'n' },
    clock: { now: () => t.now },
    wallClock: () => t.now,
    logger: undefined,
    logLevel: 'silent',
    localCache: true,
    ...extra,
  } as const;
  return { t, ...fakeOnce<Ev>(options, () => t.now) };
}

describe.each(ADAPTERS)('localCache through the $type', ({ type }) => {
  it('a duplicate in a warm container costs 0 round trips and gets a fresh copy of the stored result', async () => {
    const { store, decisions, options } = setup();
    let runs = 0;
    const h = wrap(type, async (e: Ev) => ({ runs: ++runs, n: e.n, list: [1] }), options);
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toEqual({ runs: 1, n: 1, list: [1] });
    expect(store.roundTrips).toBe(2);
    const dup = (await h({ id: 'a', n: 1 }, lambdaContext())) as { list: number[] };
    expect(dup).toEqual({ runs: 1, n: 1, list: [1] });
    dup.list.push(2); // a caller changing its copy does not change the next duplicate's
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toEqual({ runs: 1, n: 1, list: [1] });
    expect(store.roundTrips).toBe(2);
    expect(runs).toBe(1);
    expect(decisions.filter((d) => d.decision === 'duplicate-returned').map((d) => d.reason)).toEqual([
      'local cache',
      'local cache',
    ]);
  });

  it('off by default: every duplicate asks the store', async () => {
    const { store, options } = setup({ localCache: undefined });
    const h = wrap(type, async () => 'r', options);
    await h({ id: 'a', n: 1 }, lambdaContext());
    await h({ id: 'a', n: 1 }, lambdaContext());
    await h({ id: 'a', n: 1 }, lambdaContext());
    expect(store.roundTrips).toBe(4);
  });
});

describe('localCache', () => {
  it('an entry lives at most localCache.ttlMs; then the store answers (and the entry is renewed from it)', async () => {
    const { t, store, options } = setup({ localCache: { ttlMs: 1_000 }, retentionMs: 60_000 });
    let runs = 0;
    const h = withOnce(async () => ++runs, options);
    await h({ id: 'a', n: 1 }, lambdaContext());
    t.now += 999;
    await h({ id: 'a', n: 1 }, lambdaContext());
    expect(store.roundTrips).toBe(2);
    t.now += 1;
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe(1);
    expect(store.roundTrips).toBe(3); // expired from the cache: asked the store, which still has it
    t.now += 500;
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe(1);
    expect(store.roundTrips).toBe(3); // cached again from the store's reply
    expect(runs).toBe(1);
  });

  it("never longer than the record's retention: once the record is gone the handler runs again", async () => {
    const { t, store, options } = setup({ localCache: { ttlMs: 60_000 }, retentionMs: 500 });
    let runs = 0;
    const h = withOnce(async () => ++runs, options);
    await h({ id: 'a', n: 1 }, lambdaContext());
    t.now += 499;
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe(1);
    expect(store.roundTrips).toBe(2);
    t.now += 1;
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe(2); // the record expired: a new run
    expect(store.roundTrips).toBe(4);
  });

  it("an entry filled from the store's reply expires with the record's remaining retention (PTTL)", async () => {
    const { t, store, options } = setup({ localCache: { ttlMs: 60_000 }, retentionMs: 10_000 });
    const first = withOnce(async () => 'first', options); // another container
    const warm = withOnce(async () => 'second', options);
    await first({ id: 'a', n: 1 }, lambdaContext());
    t.now += 9_000; // 1000 ms of retention left
    expect(await warm({ id: 'a', n: 1 }, lambdaContext())).toBe('first');
    expect(store.roundTrips).toBe(3);
    t.now += 999;
    expect(await warm({ id: 'a', n: 1 }, lambdaContext())).toBe('first');
    expect(store.roundTrips).toBe(3);
    t.now += 1;
    expect(await warm({ id: 'a', n: 1 }, lambdaContext())).toBe('second');
    expect(store.roundTrips).toBe(5);
  });

  it('holds at most maxEntries, evicting the least recently used', async () => {
    const { store, options } = setup({ localCache: { maxEntries: 2 } });
    const h = withOnce(async (e: Ev) => e.id, options);
    await h({ id: 'a', n: 1 }, lambdaContext());
    await h({ id: 'b', n: 1 }, lambdaContext());
    await h({ id: 'a', n: 1 }, lambdaContext()); // a is now the most recently used
    expect(store.roundTrips).toBe(4);
    await h({ id: 'c', n: 1 }, lambdaContext()); // evicts b
    expect(store.roundTrips).toBe(6);
    await h({ id: 'a', n: 1 }, lambdaContext());
    await h({ id: 'c', n: 1 }, lambdaContext());
    expect(store.roundTrips).toBe(6);
    expect(await h({ id: 'b', n: 1 }, lambdaContext())).toBe('b');
    expect(store.roundTrips).toBe(7);
  });

  it('never caches a record in progress: every duplicate asks the store until it completes', async () => {
    const { store, options } = setup();
    const gate = deferred();
    const h = withOnce(
      async () => {
        await gate.promise;
        return 'done';
      },
      { ...options, duplicate: 'throw' },
    );
    const first = h({ id: 'a', n: 1 }, lambdaContext());
    await expect(h({ id: 'a', n: 1 }, lambdaContext())).rejects.toBeInstanceOf(InProgressError);
    await expect(h({ id: 'a', n: 1 }, lambdaContext())).rejects.toBeInstanceOf(InProgressError);
    expect(store.script('once-claim')).toBe(3);
    gate.resolve();
    expect(await first).toBe('done');
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe('done');
    expect(store.script('once-claim')).toBe(3);
  });

  it('a failed handler leaves nothing cached: the retry runs', async () => {
    const { store, options } = setup();
    let runs = 0;
    const h = withOnce(async () => {
      runs++;
      if (runs === 1) throw new Error('boom');
      return 'ok';
    }, options);
    await expect(h({ id: 'a', n: 1 }, lambdaContext())).rejects.toThrow('boom');
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe('ok');
    expect(runs).toBe(2);
    expect(store.script('once-claim')).toBe(2);
  });

  it('a different payload is not answered from the cache: the store reports the mismatch', async () => {
    const { store, options } = setup();
    const h = withOnce(async () => 'r', options);
    await h({ id: 'a', n: 1 }, lambdaContext());
    await expect(h({ id: 'a', n: 2 }, lambdaContext())).rejects.toBeInstanceOf(PayloadMismatchError);
    expect(store.roundTrips).toBe(3);
  });

  it('two wrappers (two containers) have their own caches', async () => {
    const { store, options } = setup();
    const a = withOnce(async () => 'a', options);
    const b = withOnce(async () => 'b', options);
    await a({ id: 'k', n: 1 }, lambdaContext());
    expect(await b({ id: 'k', n: 1 }, lambdaContext())).toBe('a');
    expect(store.roundTrips).toBe(3);
    expect(await b({ id: 'k', n: 1 }, lambdaContext())).toBe('a');
    expect(store.roundTrips).toBe(3);
  });

  it('a batch answers cached records without a round trip and caches what it completes', async () => {
    const { store, options } = setup({ payload: false });
    const { store: _s, key: _k, payload: _p, ...rest } = options;
    const h = withOnceBatch(async (r: { messageId: string }) => r.messageId, {
      ...rest,
      store,
      key: 'sqs',
      duplicate: 'throw',
    });
    const event = (...ids: string[]) =>
      ({
        Records: ids.map((id) => ({ messageId: id, body: id, eventSource: 'aws:sqs', attributes: {} })),
      }) as never;
    expect(await h(event('m1', 'm2'), lambdaContext())).toEqual({ batchItemFailures: [] });
    expect(store.roundTrips).toBe(2);
    expect(await h(event('m1', 'm2'), lambdaContext())).toEqual({ batchItemFailures: [] });
    expect(store.roundTrips).toBe(2);
  });

  it('bad localCache options are a ValidationError naming each', () => {
    const { options } = setup();
    for (const [localCache, named] of [
      [{ maxEntries: 0 }, 'localCache.maxEntries'],
      [{ ttlMs: 1.5 }, 'localCache.ttlMs'],
      [{ ttl: 5 }, 'localCache: unknown option "ttl" (did you mean ttlMs?)'],
      ['yes', 'localCache must be'],
    ] as const) {
      expect(() => withOnce(async () => 1, { ...options, localCache: localCache as never })).toThrow(
        ValidationError,
      );
      expect(() => withOnce(async () => 1, { ...options, localCache: localCache as never })).toThrow(named);
    }
  });
});

describe('LocalCache', () => {
  it('expires at min(ttlMs, leftMs) from when the request was sent; never keeps an entry already past it', () => {
    const t = { now: 100 };
    const cache = new LocalCache(10, 1_000, { now: () => t.now });
    cache.put('a', 'h', 'ja', 100, 300);
    cache.put('b', 'h', 'jb', 100, 5_000);
    cache.put('c', 'h', 'jc', 50, 40); // sent at 50, expired at 90: not kept
    cache.put('d', 'h', 'jd', 100, 0);
    expect(cache.size).toBe(2);
    t.now = 399;
    expect(cache.get('a', 'h')).toEqual({ text: 'ja' });
    expect(cache.get('a', 'other')).toBeUndefined();
    t.now = 400;
    expect(cache.get('a', 'h')).toBeUndefined();
    expect(cache.get('b', 'h')).toEqual({ text: 'jb' });
    t.now = 1_100;
    expect(cache.get('b', 'h')).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});
