// A script's first call on a TCP connection goes as EVAL, later ones as EVALSHA (transport/connection.ts shaReady):
// against a real redis-server whose script cache is empty, as a fresh server or a promoted replica has it.
// What EVALSHA-first did: NOSCRIPT, a second round trip, and the EVAL resent behind calls issued after it.
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_FENCE_GRACE_MS, fenceKeyOf, lockKeyOf } from '../../layers/oncely/src/acquire.js';
import { createLock, StoreUnavailableError } from '../../layers/oncely/src/index.js';
import { redisStore } from '../../layers/oncely/src/ioredis.js';
import { ACQUIRE, EXTEND, RELEASE } from '../../layers/oncely/src/scripts.js';
import type { Store } from '../../layers/oncely/src/transport/types.js';
import { testToken, useRedis } from '../support/servers.js';

const redis = useRedis();
let admin: Redis;
const stores: Store[] = [];
const clients: Redis[] = [];

beforeEach(async () => {
  admin ??= new Redis({ host: redis().host, port: redis().port, protocol: 2 });
  await admin.script('FLUSH');
  await admin.config('RESETSTAT');
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const c of clients.splice(0)) c.disconnect();
});
afterAll(() => admin?.disconnect());

/** NOSCRIPT errors, EVAL and EVALSHA calls the server has seen since the last RESETSTAT. */
async function scriptStats(): Promise<{ noscript: number; eval: number; evalsha: number }> {
  const errors = (await admin.info('errorstats')) as string;
  const commands = (await admin.info('commandstats')) as string;
  const count = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
  return {
    noscript: count(errors, /^errorstat_NOSCRIPT:count=(\d+)/m),
    eval: count(commands, /^cmdstat_eval:calls=(\d+)/m),
    evalsha: count(commands, /^cmdstat_evalsha:calls=(\d+)/m),
  };
}

/** The lock's two keys for `key`, as acquire.ts lays them out. */
const keysOf = (key: string) => [lockKeyOf('oncely', key), fenceKeyOf('oncely', key)];

/**
 * With the server knowing RELEASE but not ACQUIRE: acquire `key`, then release it at once without waiting for
 * the acquire. In order, the release finds the key ours (1) and it ends up free.
 */
async function acquireThenRelease(store: Store, key: string): Promise<void> {
  const token = testToken();
  await admin.script('LOAD', RELEASE.lua);
  const acquired = store.run(ACQUIRE, keysOf(key), [
    token,
    5_000,
    5_000 + DEFAULT_FENCE_GRACE_MS,
    Date.now(),
  ]);
  const released = store.run(RELEASE, keysOf(key), [token, DEFAULT_FENCE_GRACE_MS]);
  expect((await acquired) as unknown[]).toEqual([1, expect.any(Number)]);
  expect(await released).toBe(1);
  expect(await admin.exists(keysOf(key)[0]!)).toBe(0);
}

const stores_ = {
  'its own client': () => redisStore({ host: redis().host, port: redis().port }),
  'a client you pass': () => {
    const client = new Redis({ host: redis().host, port: redis().port, protocol: 2 });
    clients.push(client);
    return redisStore(client);
  },
};

describe.each(Object.entries(stores_))('a script’s first call on a connection, over %s', (_, make) => {
  it('goes as EVAL, later ones as EVALSHA: no NOSCRIPT, one round trip each', async () => {
    const store = make();
    stores.push(store);
    const lock = createLock(store);
    for (const key of ['first-use-a', 'first-use-b', 'first-use-c']) {
      const lease = await lock.tryAcquire(`${key}-${testToken()}`, { ttlMs: 5_000 });
      expect(lease).not.toBeNull();
      expect(await lease!.release()).toBe('released');
    }
    // Acquire and release: EVAL once each, then EVALSHA (EVALSHA first: 2 NOSCRIPT, 6 EVALSHA, 2 EVAL).
    expect(await scriptStats()).toEqual({ noscript: 0, eval: 2, evalsha: 4 });
  });

  it('on a fresh store, the first grant is sent before a call issued after it', async () => {
    const store = make();
    stores.push(store);
    // The first grant reads the server's replica count ('auto'); it used to wait for that reply before
    // sending the script, and the release issued after it went first (0, and the key stayed held).
    await acquireThenRelease(store, `first-use-fresh-${testToken()}`);
  });

  it('is never sent again behind a call issued after it', async () => {
    const store = make();
    stores.push(store);
    const key = `first-use-order-${testToken()}`;
    // A first call of another script: the connection is up and its replica count known.
    expect(await store.run(EXTEND, keysOf(key), [testToken(), 5_000, 5_000 + DEFAULT_FENCE_GRACE_MS])).toBe(
      0,
    );
    // With EVALSHA first, the acquire came back NOSCRIPT, the release ran on a free key (0), then the
    // acquire's EVAL took the key and kept it.
    await acquireThenRelease(store, key);
  });

  it('goes as EVAL again once the connection has closed (the next one may reach another server)', async () => {
    const store = make();
    stores.push(store);
    const lock = createLock(store);
    const pair = async () => {
      const lease = await lock.tryAcquire(`first-use-reconnect-${testToken()}`, { ttlMs: 5_000 });
      expect(lease).not.toBeNull();
      expect(await lease!.release()).toBe('released');
    };
    await pair();
    // The server forgets its scripts and drops every client connection but this one (a restart, a failover).
    await admin.script('FLUSH');
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    await admin.config('RESETSTAT');
    // A client you pass reconnects by itself; oncely's own one is replaced on the next call. Only the killed
    // connection's own error is waited out: anything else (a wrong reply, a failed expect) fails the test.
    let done = false;
    for (let attempt = 0; attempt < 50 && !done; attempt++) {
      try {
        await pair();
        done = true;
      } catch (err) {
        if (!(err instanceof StoreUnavailableError)) throw err;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    expect(done).toBe(true);
    expect((await scriptStats()).noscript).toBe(0);
  });

  it('still falls back to EVAL when the cache is flushed under a live connection', async () => {
    const store = make();
    stores.push(store);
    const lock = createLock(store);
    const first = await lock.tryAcquire(`first-use-flush-${testToken()}`, { ttlMs: 5_000 });
    expect(await first!.release()).toBe('released');
    await admin.script('FLUSH');
    const second = await lock.tryAcquire(`first-use-flush-${testToken()}`, { ttlMs: 5_000 });
    expect(second).not.toBeNull();
    expect(await second!.release()).toBe('released');
    expect((await scriptStats()).noscript).toBe(2);
  });
});
