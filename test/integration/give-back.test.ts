import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createLock,
  type Decision,
  type Lock,
  LockNotReleasedError,
  StoreError,
  StoreUnavailableError,
  upstashStore,
  withOnce,
} from '../../layers/oncely/src/index.js';
import { ACQUIRE, ONCE_CLAIM, ONCE_RELEASE, RELEASE } from '../../layers/oncely/src/scripts.js';
import { type FaultMode, type FaultProxy, startFaultProxy } from '../support/http-fault-proxy.js';
import { lambdaContext } from '../support/once.js';
import { startTransport, type TransportFixture } from '../support/transports.js';

/**
 * Issue: an acquire that gives up after an ambiguous reply sent one release and swallowed its error; when that
 * release failed too (the REST gateway answering 503 while it reconnects to Redis), the key stayed held for the
 * whole TTL. Real redis-server and REST gateway; a proxy in front of the gateway drops the acquire's reply
 * (after Redis applied it) and answers 503 to the releases that follow.
 */
/**
 * The command carrying `sha1` in a request body: a command alone (POST /) or one of a pipeline's (a fresh
 * store's first grant reads INFO replication in the same request: transport/upstash-replicas.ts).
 */
function commandOf(body: string, sha1: string): string[] {
  const parsed = JSON.parse(body) as string[] | string[][];
  const commands = Array.isArray(parsed[0]) ? (parsed as string[][]) : [parsed as string[]];
  return commands.find((c) => c.includes(sha1)) ?? [];
}

describe('a lock we may hold but will not use is given back (REST gateway answering 503)', () => {
  let fx: TransportFixture;
  let proxy: FaultProxy;
  let n = 0;
  const uniqueKey = (label: string) => `${label}-${process.pid}-${++n}`;

  beforeAll(async () => {
    fx = await startTransport('rest');
    proxy = await startFaultProxy(fx.gateway!.url);
    // Loaded up front so the acquire's EVALSHA is applied as it is (no NOSCRIPT round trip to swallow).
    for (const s of [ACQUIRE, RELEASE, ONCE_CLAIM, ONCE_RELEASE])
      await fx.everyServer('SCRIPT', 'LOAD', s.lua);
  });
  afterEach(() => {
    proxy.mode = () => 'pass';
  });
  afterAll(async () => {
    await proxy?.close();
    await fx?.stop();
  });

  function setup() {
    const errors: Error[] = [];
    let reported: (e: Error) => void = () => {};
    const onReport = new Promise<Error>((resolve) => {
      reported = resolve;
    });
    const store = upstashStore({ url: proxy.url, token: fx.gateway!.token, timeoutMs: 300 });
    const lock = createLock(store, {
      onError: (e) => {
        errors.push(e);
        reported(e);
      },
    });
    return { lock, errors, onReport, store };
  }

  /** The acquire is applied but its reply is lost; the first `failing` releases get a 503. */
  function outage(
    key: string,
    failing: number,
    onRelease?: (i: number) => void,
  ): { releases: () => FaultMode[] } {
    const modes: FaultMode[] = [];
    const lockKey = JSON.stringify(`oncely:{${key}}:lock`);
    proxy.mode = (body) => {
      if (!body.includes(lockKey)) return 'pass'; // another test's background work
      if (body.includes(ACQUIRE.sha1)) return 'swallow';
      if (!body.includes(RELEASE.sha1)) return 'pass';
      const mode: FaultMode = modes.length < failing ? '503' : 'pass';
      modes.push(mode);
      onRelease?.(modes.length);
      return mode;
    };
    return { releases: () => modes };
  }

  async function gone(lock: Lock, key: string, withinMs: number): Promise<boolean> {
    const until = Date.now() + withinMs;
    while (Date.now() < until) {
      if ((await fx.admin.exists(lock.keyOf(key))) === 0) return true;
      await delay(25);
    }
    return false;
  }

  it.each(['tryAcquire', 'acquire'] as const)(
    '%s: the release is retried through the 503s until it succeeds, long before the TTL',
    async (method) => {
      const { lock, errors, store } = setup();
      const key = uniqueKey(`give-back-${method}`);
      let heldDuringOutage: Promise<number> | undefined;
      const o = outage(key, 4, (i) => {
        if (i === 1) heldDuringOutage = fx.admin.exists(lock.keyOf(key));
      });
      const err = await (method === 'tryAcquire'
        ? lock.tryAcquire(key, { ttlMs: 60_000 })
        : lock.acquire(key, { ttlMs: 60_000, retry: { attempts: 1 } })
      ).catch((e: unknown) => e);
      if (method === 'tryAcquire') {
        expect(err).toBeInstanceOf(StoreUnavailableError);
        expect(err).toMatchObject({ ambiguous: true });
      } else {
        expect(err).toMatchObject({ name: 'LockNotAcquiredError' });
        expect((err as Error).cause).toBeInstanceOf(StoreUnavailableError);
      }
      // The TTL is 60 s: a lock left behind would still be there long after this bound.
      expect(await gone(lock, key, 15_000)).toBe(true);
      expect(await heldDuringOutage).toBe(1); // the lost acquire had been applied: there was a lock to give back
      expect(o.releases()).toEqual(['503', '503', '503', '503', 'pass']);
      expect(errors).toEqual([]);
      await store.close();
    },
  );

  it('stops as soon as the store says the key is not ours, leaving the new holder alone', async () => {
    const { lock, errors, store } = setup();
    const key = uniqueKey('give-back-not-ours');
    // During the outage our key expires and another owner takes the lock.
    const o = outage(key, 3, (i) => {
      if (i === 1) void fx.admin.set(lock.keyOf(key), 'another-owner', 'PX', 60_000);
    });
    await expect(lock.tryAcquire(key, { ttlMs: 60_000 })).rejects.toBeInstanceOf(StoreError);
    const until = Date.now() + 15_000;
    while (o.releases().length < 4 && Date.now() < until) await delay(25);
    expect(o.releases()).toEqual(['503', '503', '503', 'pass']);
    await delay(1500); // longer than the largest backoff: no release follows a 'not-held'
    expect(o.releases()).toHaveLength(4);
    expect(await fx.admin.get(lock.keyOf(key))).toBe('another-owner');
    expect(errors).toEqual([]);
    await store.close();
  });

  it("gives up once the lease's validity has passed, and reports it through onError", async () => {
    const { lock, onReport, store } = setup();
    const key = uniqueKey('give-back-fails');
    const o = outage(key, Number.POSITIVE_INFINITY);
    let token = '';
    proxy.mode = ((inner) => (body: string) => {
      if (body.includes(ACQUIRE.sha1)) token = commandOf(body, ACQUIRE.sha1)[5] ?? '';
      return inner(body);
    })(proxy.mode);
    await expect(lock.tryAcquire(key, { ttlMs: 1500 })).rejects.toBeInstanceOf(StoreError);
    const reported = await Promise.race([onReport, delay(15_000).then(() => undefined)]);
    expect(reported).toBeInstanceOf(LockNotReleasedError);
    const err = reported as LockNotReleasedError;
    expect(err.key).toBe(key);
    expect(err.attempts).toBe(o.releases().length);
    expect(err.attempts).toBeGreaterThan(2);
    expect(err.cause).toBeInstanceOf(StoreUnavailableError);
    expect(token).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(`${err.message} ${(err.cause as Error).message} ${err.stack}`).not.toContain(token);
    // It stopped: no release after the report, and the key has expired by itself.
    const sent = o.releases().length;
    await delay(1200);
    expect(o.releases()).toHaveLength(sent);
    expect(await gone(lock, key, 5000)).toBe(true);
    await store.close();
  });

  describe('withOnce: a claim whose reply was lost', () => {
    /** The claim is applied but its reply lost; the first `failing` record releases get a 503. */
    function claimOutage(failing: number) {
      const releases: FaultMode[] = [];
      let record = '';
      proxy.mode = (body) => {
        if (body.includes(ONCE_CLAIM.sha1)) {
          record = commandOf(body, ONCE_CLAIM.sha1)[3] ?? '';
          return 'swallow';
        }
        if (!body.includes(ONCE_RELEASE.sha1)) return 'pass';
        const mode: FaultMode = releases.length < failing ? '503' : 'pass';
        releases.push(mode);
        return mode;
      };
      return { releases, record: () => record };
    }

    function handlerFor(ttlMs: number) {
      const decisions: Decision[] = [];
      let reported: (d: Decision) => void = () => {};
      const failed = new Promise<Decision>((resolve) => {
        reported = resolve;
      });
      const store = upstashStore({ url: proxy.url, token: fx.gateway!.token, timeoutMs: 300 });
      const handler = withOnce(async () => 'ran', {
        store,
        key: (e: { id: string }) => e.id,
        ttlMs,
        logLevel: 'silent',
        onDecision: (d) => {
          decisions.push(d);
          if (d.decision === 'give-back-failed') reported(d);
        },
      });
      return { handler, decisions, failed, store };
    }

    it('gives the record back through the 503s, so a retry of the event can run', async () => {
      const o = claimOutage(3);
      const { handler, decisions, store } = handlerFor(60_000);
      const id = uniqueKey('once-give-back');
      await expect(handler({ id }, lambdaContext(120_000))).rejects.toBeInstanceOf(StoreError);
      expect(o.record()).toContain(':rec');
      const until = Date.now() + 15_000;
      while ((await fx.admin.exists(o.record())) === 1 && Date.now() < until) await delay(25);
      expect(await fx.admin.exists(o.record())).toBe(0); // the lease was 60 s
      expect(o.releases).toEqual(['503', '503', '503', 'pass']);
      expect(decisions.map((d) => d.decision)).toEqual(['store-error']);
      proxy.mode = () => 'pass';
      expect(await handler({ id }, lambdaContext(120_000))).toBe('ran');
      await store.close();
    });

    it("logs a 'give-back-failed' decision once the lease has passed", async () => {
      const o = claimOutage(Number.POSITIVE_INFINITY);
      const { handler, failed, store } = handlerFor(1500);
      await expect(
        handler({ id: uniqueKey('once-give-back-fails') }, lambdaContext(120_000)),
      ).rejects.toBeInstanceOf(StoreError);
      const d = await Promise.race([failed, delay(15_000).then(() => undefined)]);
      expect(d).toMatchObject({ decision: 'give-back-failed' });
      expect(d?.reason).toMatch(/could not be given back after \d+ release attempt/);
      expect(o.releases.length).toBeGreaterThan(2);
      await store.close();
    });
  });
});
