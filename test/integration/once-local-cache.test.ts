import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OnceOptions, withOnce } from '../../layers/oncely/src/index.js';
import { digest } from '../../layers/oncely/src/once/record.js';
import { ONCE_SCRIPTS } from '../../layers/oncely/src/scripts.js';
import { CountingStore, lambdaContext, unique } from '../support/once.js';
import { startTransport, TRANSPORTS, type TransportFixture } from '../support/transports.js';

type Ev = { id: string; n?: number };

describe.each(TRANSPORTS)('withOnce localCache over %s', (transport) => {
  let fx: TransportFixture;
  const stores: CountingStore[] = [];
  /** A new store instance: a new container's connection. */
  const container = () => {
    const s = new CountingStore(fx.store({ timeoutMs: 5000 }));
    stores.push(s);
    return s;
  };
  const options = (store: CountingStore): OnceOptions<Ev> => ({
    store,
    namespace: `lc-${transport}`,
    key: { jmespath: 'id' },
    payload: { jmespath: 'n' },
    logLevel: 'silent',
    localCache: true,
  });

  beforeAll(async () => {
    fx = await startTransport(transport);
    for (const s of ONCE_SCRIPTS) await fx.everyServer('SCRIPT', 'LOAD', s.lua);
  });
  afterAll(async () => {
    await fx?.stop();
  });

  /** Scripts the servers ran (EVALSHA and EVAL, summed over every server), read from INFO commandstats. */
  async function scriptsRun(): Promise<number> {
    let total = 0;
    for (const s of fx.servers) {
      const c = new Redis({ host: s.host, port: s.port, protocol: 2 });
      try {
        const info = await c.info('commandstats');
        for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) total += Number(m[1]);
      } finally {
        c.disconnect();
      }
    }
    return total;
  }

  /** Round trips counted at the store, at the servers (scripts run), and for REST at the gateway. */
  async function measure(store: CountingStore, work: () => Promise<unknown>) {
    const s0 = store.roundTrips;
    const h0 = fx.gateway?.requests;
    const r0 = await scriptsRun();
    await work();
    return {
      store: store.roundTrips - s0,
      scripts: (await scriptsRun()) - r0,
      ...(h0 !== undefined ? { http: fx.gateway!.requests - h0 } : {}),
    };
  }
  const trips = (n: number) =>
    transport === 'rest' ? { store: n, scripts: n, http: n } : { store: n, scripts: n };

  it('a duplicate in a warm container: 0 round trips; another container still asks Redis, then caches', async () => {
    const key = unique('dup');
    let runs = 0;
    const warmStore = container();
    const warm = withOnce(async (e: Ev) => ({ runs: ++runs, id: e.id }), options(warmStore));
    expect(await measure(warmStore, () => warm({ id: key, n: 1 }, lambdaContext()))).toEqual(trips(2));
    let dup: unknown;
    expect(
      await measure(warmStore, async () => {
        dup = await warm({ id: key, n: 1 }, lambdaContext());
      }),
    ).toEqual(trips(0));
    expect(dup).toEqual({ runs: 1, id: key });

    const otherStore = container();
    const other = withOnce(async () => ({ runs: ++runs, id: 'other' }), options(otherStore));
    let fromRedis: unknown;
    expect(
      await measure(otherStore, async () => {
        fromRedis = await other({ id: key, n: 1 }, lambdaContext());
      }),
    ).toEqual(trips(1));
    expect(fromRedis).toEqual({ runs: 1, id: key });
    expect(await measure(otherStore, () => other({ id: key, n: 1 }, lambdaContext()))).toEqual(trips(0));
    expect(runs).toBe(1);
  });

  it("a cached entry ends with the record's retention in Redis", async () => {
    const key = unique('ret');
    let runs = 0;
    const store = container();
    const retentionMs = 1_500;
    const h = withOnce(async () => ++runs, { ...options(store), retentionMs });
    expect(await h({ id: key, n: 1 }, lambdaContext())).toBe(1);
    // Wait on Redis itself: the record is gone (at least retentionMs after the completion was sent).
    const c = new Redis({ host: fx.servers[0]!.host, port: fx.servers[0]!.port, protocol: 2 });
    const probe = transport === 'cluster' ? fx.admin : c;
    try {
      for (;;) {
        const pttl = await (probe as Redis).pttl(`oncely:once:{lc-${transport}:${digest(key)}}:rec`);
        if (pttl === -2) break;
        await new Promise((r) => setTimeout(r, Math.max(20, pttl)));
      }
    } finally {
      c.disconnect();
    }
    expect(await h({ id: key, n: 1 }, lambdaContext())).toBe(2);
  });
});
