/**
 * Run-once at its edges (issue 11) over real servers, on every transport (REST through the gateway, a
 * standalone redis-server and a cluster over TCP): a handler that ran never runs again because its result could
 * not be stored, duplicates on another container get exactly the first caller's value or a marker, and keys
 * that cannot collide.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  isResultNotStored,
  MissingKeyError,
  type OnceOptions,
  withOnce,
} from '../../layers/oncely/src/index.js';
import { OnceEngine } from '../../layers/oncely/src/once/engine.js';
import { ADAPTERS, CountingStore, lambdaContext, unique, wrap } from '../support/once.js';
import { RESULT_VALUES } from '../support/result-values.js';
import { startTransport, TRANSPORTS, type TransportFixture } from '../support/transports.js';

type Ev = { k?: unknown; n?: number };

describe.each(TRANSPORTS)('run-once edges over %s', (transport) => {
  let fx: TransportFixture;
  let store: CountingStore;
  const base = (namespace: string): OnceOptions<Ev> => ({
    store,
    namespace,
    key: (e) => e.k as never,
    payload: false,
    logLevel: 'silent',
  });

  beforeAll(async () => {
    fx = await startTransport(transport);
    store = new CountingStore(fx.store({ timeoutMs: 2000 }));
  });
  afterAll(async () => {
    await fx?.stop();
  });

  describe.each(ADAPTERS)('keys, through the $type', ({ type }) => {
    it('keys JSON would collide are refused before the store; canonical keys share one record', async () => {
      const ns = unique(`keys-${type}`);
      let runs = 0;
      const h = wrap(type, async () => ++runs, base(ns));
      const before = store.roundTrips;
      for (const k of [Number.NaN, Number.POSITIVE_INFINITY, [undefined], [null], { a: undefined }]) {
        await expect(h({ k }, lambdaContext())).rejects.toBeInstanceOf(MissingKeyError);
      }
      expect(store.roundTrips).toBe(before);
      expect(runs).toBe(0);

      expect(await h({ k: { b: 2, a: [1, 'x'] } }, lambdaContext())).toBe(1);
      expect(await h({ k: { a: [1, 'x'], b: 2 } }, lambdaContext())).toBe(1);
      expect(await h({ k: -0 }, lambdaContext())).toBe(2);
      expect(await h({ k: 0 }, lambdaContext())).toBe(2);
      expect(await h({ k: { a: null } }, lambdaContext())).toBe(3);
      expect(runs).toBe(3);

      // the record is where the canonical key's digest says, on the real server
      const keys = new OnceEngine<Ev>(base(ns)).keysOf('{"a":[1,"x"],"b":2}');
      expect(await fx.admin.exists(keys[0])).toBe(1);
    });
  });

  describe('results: the first caller on one container, a duplicate on another (another store instance)', () => {
    let other: CountingStore;
    beforeAll(() => {
      other = new CountingStore(fx.store({ timeoutMs: 2000 }));
    });

    it.each(RESULT_VALUES)(
      '%s: exactly the same value (deep-equal, with types) or the marker; never a re-run',
      async (_label, make, expected) => {
        const ns = unique('results');
        const value = make();
        let runs = 0;
        const handler = async () => {
          runs++;
          return value;
        };
        const first = wrap('wrapper', handler, base(ns));
        const second = wrap('middleware', handler, { ...base(ns), store: other });
        expect(await first({ k: 'r' }, lambdaContext())).toBe(value);
        const dup = await second({ k: 'r' }, lambdaContext());
        if (expected === 'exact') expect(dup).toStrictEqual(value);
        else expect(dup).toMatchObject({ oncely: 'result-not-stored', reason: expected });
        expect(isResultNotStored(dup)).toBe(expected !== 'exact');
        expect(runs).toBe(1);
      },
    );

    it("unstorable: 'throw' re-runs on the other container, as asked", async () => {
      const ns = unique('rerun');
      let runs = 0;
      const handler = async () => {
        runs++;
        return new Map();
      };
      const opts = { ...base(ns), unstorable: 'throw' as const };
      await expect(withOnce(handler, opts)({ k: 'r' }, lambdaContext())).rejects.toThrow(/cannot be stored/);
      await expect(withOnce(handler, { ...opts, store: other })({ k: 'r' }, lambdaContext())).rejects.toThrow(
        /cannot be stored/,
      );
      expect(runs).toBe(2);
    });
  });

  it('another container (another store instance) finds the record of a canonical key', async () => {
    const ns = unique('keys-other');
    let runs = 0;
    const h = withOnce(async () => ++runs, base(ns));
    await h({ k: { z: 1, a: 2 } }, lambdaContext());
    const other = fx.store({ timeoutMs: 2000 });
    const g = withOnce(async () => ++runs, { ...base(ns), store: other });
    expect(await g({ k: { a: 2, z: 1 } }, lambdaContext())).toBe(1);
    expect(runs).toBe(1);
  });
});
