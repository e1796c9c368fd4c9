import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startGateway } from '../../dev/gateway.js';
import { freePort, startRedis } from '../../dev/redis-server.js';
import {
  createLock,
  type Lease,
  type Lock,
  LockLostError,
  type Store,
  StoreAuthError,
  StoreUnavailableError,
  upstashClientStore,
  upstashStore,
} from '../../layers/oncely/src/index.js';
import { clusterStore, redisStore } from '../../layers/oncely/src/ioredis.js';
import * as scripts from '../../layers/oncely/src/scripts.js';
import { ACQUIRE, EXTEND, LOCK_SCRIPTS, RELEASE, type Script } from '../../layers/oncely/src/scripts.js';
import { keySlot } from '../../layers/oncely/src/transport/cluster.js';
import {
  LOCK_TRANSPORTS,
  startTransport,
  type TransportFixture,
  upstashClient,
} from '../support/transports.js';

/** A standalone server has no CLUSTER KEYSLOT: check our CRC16 against keys whose slots are published. */
async function slotFromCrc(k: string): Promise<number> {
  expect(keySlot('123456789')).toBe(0x31c3 % 16384); // the CRC16/XMODEM check value from the cluster spec
  expect(keySlot('{user1000}.following')).toBe(keySlot('{user1000}.followers'));
  return keySlot(k);
}

let n = 0;
const uniqueKey = (label: string) => `${label}-${process.pid}-${++n}`;

describe.each(LOCK_TRANSPORTS)('lock over %s', (transport) => {
  let fx: TransportFixture;
  let lock: Lock;
  beforeAll(async () => {
    fx = await startTransport(transport);
    lock = createLock(fx.store());
  });
  afterAll(async () => {
    await fx?.stop();
  });
  /** Waits until the server has expired the lock key (an event, not a guess at how long that takes). */
  const expired = (key: string) =>
    vi.waitFor(async () => expect(await fx.admin.exists(lock.keyOf(key))).toBe(0), {
      timeout: 10_000,
      interval: 20,
    });

  it('acquire, contend, release, release again: released then expired', async () => {
    const key = uniqueKey('basic');
    const lease = (await lock.tryAcquire(key, { ttlMs: 5000 }))!;
    expect(lease.key).toBe(key);
    expect(lease.token).toMatch(/^[A-Za-z0-9_-]{22}$/); // 128 bits, base64url
    expect(lease.fence).toBeGreaterThan(0);
    expect(await lock.tryAcquire(key, { ttlMs: 5000 })).toBeNull();
    expect(await fx.admin.pttl(lock.keyOf(key))).toBeGreaterThan(4000);
    expect(await lease.release()).toBe('released');
    expect(await fx.admin.exists(lock.keyOf(key))).toBe(0);
    expect(await lease.release()).toBe('expired');
  });

  it('release by a stale holder reports not-held and leaves the new holder alone', async () => {
    const key = uniqueKey('stale');
    // Long enough to be granted on a loaded machine (a reply after the validity counts as not granted).
    const first = (await lock.tryAcquire(key, { ttlMs: 1000 }))!;
    expect(first).not.toBeNull();
    await expired(key);
    const second = (await lock.tryAcquire(key, { ttlMs: 5000 }))!;
    expect(second).not.toBeNull();
    expect(await first.release()).toBe('not-held');
    expect(await fx.admin.get(lock.keyOf(key))).toBe(second.token);
    await expect(first.extend(1000)).rejects.toMatchObject({ name: 'LockLostError', reason: 'expired' });
    await second.release();
  });

  it('TTL expiry frees the lock', async () => {
    const key = uniqueKey('ttl');
    // A TTL long enough that the next line runs before it ends, even on a loaded machine.
    expect(await lock.tryAcquire(key, { ttlMs: 2000 })).not.toBeNull();
    expect(await lock.tryAcquire(key, { ttlMs: 2000 })).toBeNull();
    await expired(key);
    expect(await lock.tryAcquire(key, { ttlMs: 2000 })).not.toBeNull();
  });

  it('a call with more or fewer keys than its script takes fails at once, naming the script', async () => {
    const key = lock.keyOf(uniqueKey('keys'));
    const store = lock.store;
    await expect(store.run(ACQUIRE, [key], ['t', 1000, 2000, 0])).rejects.toMatchObject({
      name: 'ValidationError',
      message: 'script "acquire": takes 2 keys, got 1',
    });
    await expect(store.run(RELEASE, [key, `${key}:f`, `${key}:x`], ['t'])).rejects.toThrow(
      'script "release": takes 1 to 2 keys, got 3',
    );
    await expect(
      store.runMany([
        { script: RELEASE, keys: [key], args: ['t'] },
        { script: scripts.LOCK_RELEASE_ALL, keys: [key], args: ['t', 10] },
      ]),
    ).rejects.toThrow('script "lock-release-all": takes pairs of keys, got 1');
    // nothing was sent: the key was never written
    expect(await fx.admin.exists(key)).toBe(0);
  });

  it('a wrong token can neither release nor extend', async () => {
    const key = uniqueKey('wrong');
    const lease = (await lock.tryAcquire(key, { ttlMs: 5000 }))!;
    const store = lock.store;
    expect(await store.run(RELEASE, [lock.keyOf(key)], ['not-the-token'])).toBe(-1);
    expect(await store.run(EXTEND, [lock.keyOf(key)], ['not-the-token', 60_000])).toBe(-1);
    expect(await fx.admin.get(lock.keyOf(key))).toBe(lease.token);
    expect(await fx.admin.pttl(lock.keyOf(key))).toBeLessThanOrEqual(5000);
    // and the real holder's extend is seen by the server
    await lease.extend(60_000);
    expect(await fx.admin.pttl(lock.keyOf(key))).toBeGreaterThan(50_000);
    await lease.release();
  });

  it('extend of a stolen lease fails with LockLostError(stolen) and fires the signal', async () => {
    const key = uniqueKey('stolen');
    const lease = (await lock.tryAcquire(key, { ttlMs: 5000 }))!;
    await fx.admin.set(lock.keyOf(key), 'intruder', 'PX', 5000);
    const err = await lease.extend().catch((e) => e);
    expect(err).toBeInstanceOf(LockLostError);
    expect(err.reason).toBe('stolen');
    expect(lease.signal.aborted).toBe(true);
  });

  it('acquire re-run with the token we hold succeeds with the same fence', async () => {
    const key = uniqueKey('rerun');
    const keys = [lock.keyOf(key), lock.fenceKeyOf(key)];
    const args = (token: string) => [token, 5000, 65_000, Date.now()];
    const [ok, fence] = (await lock.store.run(ACQUIRE, keys, args('tok-A'))) as [number, number];
    expect(ok).toBe(1);
    expect(await lock.store.run(ACQUIRE, keys, args('tok-A'))).toEqual([1, fence]);
    const [status, pttl] = (await lock.store.run(ACQUIRE, keys, args('tok-B'))) as [number, number];
    expect(status).toBe(0);
    expect(pttl).toBeGreaterThan(4000);
  });

  it('fences strictly increase across holders', async () => {
    const key = uniqueKey('fence');
    const startedAt = Date.now();
    const other = createLock(fx.store());
    const fences: number[] = [];
    for (let i = 0; i < 6; i++) {
      const l = (await (i % 2 ? other : lock).tryAcquire(key, { ttlMs: 5000 }))!;
      fences.push(l.fence);
      await l.release();
    }
    // Each fence is above the last, and the first is floored at the store's clock (same host as ours).
    expect(fences[0]).toBeGreaterThan(startedAt - 60_000);
    for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]!);
  });

  it('20 concurrent contenders: no two critical sections overlap, fences increase in entry order', async () => {
    const key = uniqueKey('mutex');
    let inside = 0;
    let overlaps = 0;
    const entered: number[] = [];
    const contenders = Array.from({ length: 20 }, () => createLock(fx.store()));
    await Promise.all(
      contenders.map((l) =>
        l.using(
          key,
          async (lease: Lease) => {
            if (inside++ > 0) overlaps++;
            entered.push(lease.fence);
            await fx.admin.incr(`${key}:work`); // a real round trip inside the critical section
            await delay(2);
            inside--;
          },
          { ttlMs: 2000, retry: { attempts: 2000, delayMs: 5, jitterMs: 5 } },
        ),
      ),
    );
    expect(overlaps).toBe(0);
    expect(entered).toHaveLength(20);
    for (let i = 1; i < entered.length; i++) expect(entered[i]!).toBeGreaterThan(entered[i - 1]!);
    expect(await fx.admin.get(`${key}:work`)).toBe('20');
  });

  it('recovers from NOSCRIPT after SCRIPT FLUSH, for single calls and batches', async () => {
    await fx.everyServer('SCRIPT', 'FLUSH');
    const key = uniqueKey('noscript');
    const lease = (await lock.tryAcquire(key, { ttlMs: 5000 }))!;
    expect(lease).not.toBeNull();
    await fx.everyServer('SCRIPT', 'FLUSH');
    const results = await lock.store.runMany(
      ['a', 'b', 'c'].map((k) => ({
        script: ACQUIRE,
        keys: [lock.keyOf(`${key}-${k}`), lock.fenceKeyOf(`${key}-${k}`)],
        args: ['tok', 5000, 65_000, Date.now()],
      })),
    );
    expect(results).toEqual([
      { ok: true, value: [1, expect.any(Number)] },
      { ok: true, value: [1, expect.any(Number)] },
      { ok: true, value: [1, expect.any(Number)] },
    ]);
    expect(await lease.release()).toBe('released');
  });

  it('runMany runs many scripts in one round trip and reports a failing one alone', async () => {
    const key = uniqueKey('many');
    await fx.admin.hset(`oncely:{${key}-bad}:lock`, 'f', 'v'); // wrong type: GET fails inside the script
    await lock.tryAcquire(`${key}-warm`, { ttlMs: 1000 }); // ACQUIRE cached: no NOSCRIPT retry
    const requestsBefore = fx.gateway?.requests ?? 0;
    const results = await lock.store.runMany(
      ['ok1', 'bad', 'ok2'].map((k) => ({
        script: ACQUIRE,
        keys: [lock.keyOf(`${key}-${k}`), lock.fenceKeyOf(`${key}-${k}`)],
        args: ['tok', 5000, 65_000, Date.now()],
      })),
    );
    expect(results[0]).toEqual({ ok: true, value: [1, expect.any(Number)] });
    expect(results[1]?.ok).toBe(false);
    expect(results[1]?.ok === false && results[1].error.message).toMatch(/WRONGTYPE/);
    expect(results[2]).toEqual({ ok: true, value: [1, expect.any(Number)] });
    if (fx.gateway) expect(fx.gateway.requests - requestsBefore).toBe(1); // one POST /pipeline
  });

  it('the lost-lease signal fires when the key is deleted behind our back, not at its expiry a minute later', async () => {
    const key = uniqueKey('deleted');
    // A minute's TTL, extended every ~0.4 s: only an extension that finds the key gone can fire the signal
    // within the test; the server's expiry and the local deadline are both ~60 s away.
    const ttlMs = 60_000;
    const seen = await lock.using(
      key,
      async (lease) => {
        await fx.admin.del(lock.keyOf(key));
        await new Promise((resolve) => lease.signal.addEventListener('abort', resolve, { once: true }));
        return { reason: lease.signal.reason, localValidityLeftMs: lease.validUntil - performance.now() };
      },
      { ttlMs, extendBeforeMs: ttlMs - 400 },
    );
    expect(seen.reason).toBeInstanceOf(LockLostError);
    expect(seen.reason.reason).toBe('expired'); // what an extend reports for a key that is not there
    // Fired by the store's answer, while the lease was still valid locally for most of its minute.
    expect(seen.localValidityLeftMs).toBeGreaterThan(ttlMs / 2);
  });

  it('the lost-lease signal fires on time when the store is paused past the TTL', async () => {
    const pausedLock = createLock(fx.store({ timeoutMs: 2000 }));
    const key = uniqueKey('paused');
    const ttlMs = 1000;
    const t0 = performance.now();
    const abortedAfterMs = await pausedLock.using(
      key,
      async (lease) => {
        for (const s of fx.servers) s.pause();
        try {
          await new Promise((resolve) => lease.signal.addEventListener('abort', resolve, { once: true }));
          return performance.now() - t0;
        } finally {
          for (const s of fx.servers) s.resume();
        }
      },
      { ttlMs, onError: () => {} },
    );
    // validity = ttl − drift (10 + 2 ms) from the acquire: the signal must not wait for the hung extend
    // (bounded by timeoutMs = 2000 ms, twice the TTL). Timers fire late on a loaded machine, never early.
    expect(abortedAfterMs).toBeGreaterThan(ttlMs - 50);
    expect(abortedAfterMs).toBeLessThan(ttlMs * 1.5);
  });

  it('keys of one lock share a hash tag: one slot (on a cluster: the server agrees)', async () => {
    const key = uniqueKey('slot');
    const lease = (await lock.tryAcquire(key, { ttlMs: 5000 }))!;
    const slot = keySlot(lock.keyOf(key));
    expect(keySlot(lock.fenceKeyOf(key))).toBe(slot);
    const serverSlot = async (k: string) =>
      transport === 'cluster' ? fx.admin.call('CLUSTER', 'KEYSLOT', k) : slotFromCrc(k);
    expect(await serverSlot(lock.keyOf(key))).toBe(slot);
    expect(await serverSlot(lock.fenceKeyOf(key))).toBe(slot);
    await lease.release();
  });

  it('an unreachable store fails within its timeout, never hangs', async () => {
    const port = await freePort();
    const stores: Record<typeof transport, () => Store> = {
      rest: () => upstashStore({ url: `http://127.0.0.1:${port}`, token: 'x', timeoutMs: 300 }),
      'upstash-client': () =>
        upstashClientStore(upstashClient(`http://127.0.0.1:${port}`, 'x', 300), {
          name: `upstash(127.0.0.1:${port})`,
        }),
      redis: () => redisStore({ host: '127.0.0.1', port, timeoutMs: 300 }),
      cluster: () => clusterStore({ nodes: [{ host: '127.0.0.1', port }], timeoutMs: 300 }),
    };
    const store = stores[transport]();
    const t0 = performance.now();
    const err = await createLock(store)
      .tryAcquire('k', { ttlMs: 1000 })
      .catch((e) => e);
    const tookMs = performance.now() - t0;
    await store.close();
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err.message).toContain('127.0.0.1');
    expect(tookMs).toBeLessThan(1500);
  });
});

describe('script pins', () => {
  it('each pinned SHA-1 is what SCRIPT LOAD returns', async () => {
    const server = await startRedis();
    const c = new Redis({ host: server.host, port: server.port, protocol: 2 });
    try {
      const all = (Object.values(scripts) as unknown[]).filter(
        (v): v is Script => typeof v === 'object' && v !== null && 'lua' in v && 'sha1' in v,
      );
      expect(all.length).toBeGreaterThanOrEqual(LOCK_SCRIPTS.length);
      for (const s of all) expect(await c.script('LOAD', s.lua), s.name).toBe(s.sha1);
    } finally {
      c.disconnect();
      await server.stop();
    }
  });
});

describe('credentials', () => {
  it('a wrong REST token is an auth error that does not contain the token', async () => {
    const server = await startRedis();
    const gateway = await startGateway({
      redis: { host: server.host, port: server.port },
      token: 'right-token',
    });
    const wrong = 'wrong-token-0123456789';
    try {
      const store = upstashStore({ url: gateway.url, token: wrong, timeoutMs: 1000 });
      const err = await createLock(store)
        .tryAcquire('k', { ttlMs: 1000 })
        .catch((e) => e);
      expect(err).toBeInstanceOf(StoreAuthError);
      expect(`${err.message} ${err.stack} ${JSON.stringify(err)}`).not.toContain(wrong);
    } finally {
      await gateway.close();
      await server.stop();
    }
  });

  it('a wrong Redis password is an auth error that does not contain the password', async () => {
    const server = await startRedis({ password: 'the-right-password' });
    const wrong = 'the-wrong-password-42';
    try {
      const store = redisStore({ url: `redis://:${wrong}@127.0.0.1:${server.port}`, timeoutMs: 1000 });
      const err = await createLock(store)
        .tryAcquire('k', { ttlMs: 1000 })
        .catch((e) => e);
      await store.close();
      expect(err).toBeInstanceOf(StoreAuthError);
      expect(`${err.message} ${err.stack} ${JSON.stringify(err)}`).not.toContain(wrong);
      const ok = redisStore({ url: `redis://:the-right-password@127.0.0.1:${server.port}` });
      expect(await createLock(ok).tryAcquire('k', { ttlMs: 1000 })).not.toBeNull();
      await ok.close();
    } finally {
      await server.stop();
    }
  });
});
