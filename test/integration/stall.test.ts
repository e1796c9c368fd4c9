import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisProcess, startRedis } from '../../dev/redis-server.js';
import { type Store, StoreUnavailableError } from '../../layers/oncely/src/index.js';
import { clusterStore, redisStore } from '../../layers/oncely/src/ioredis.js';
import type { Script } from '../../layers/oncely/src/scripts.js';
import { type StallProxy, startProxiedCluster, startStallProxy } from '../support/stall-proxy.js';

// A TCP connection whose command timed out is probed (ECHOes behind the calls in flight) and not trusted again
// unless it answers in step: through a proxy that stalls a connection without closing it (no answer within the
// probe's bound), or loses a reply and keeps the connection (the ECHOes come back shifted), the store's next
// call runs on a fresh connection. Both TCP transports, warm stores (a Lambda that has served before).

const TIMEOUT_MS = 1000;

/** Replies with its argument: every call can tell its own reply from another's. */
const ECHO: Script = (() => {
  const lua = 'return ARGV[1]';
  return { name: 'echo', keys: 1, lua, sha1: createHash('sha1').update(lua).digest('hex') };
})();

interface Path {
  store: Store;
  /** The proxies the store's traffic goes through (one per node). */
  proxies: StallProxy[];
  /** The proxy in front of the node that owns `key`. */
  proxyFor(key: string): Promise<StallProxy>;
  stop(): Promise<void>;
}

async function standalonePath(): Promise<Path> {
  const server = await startRedis();
  const proxy = await startStallProxy(server);
  const store = redisStore({ host: proxy.host, port: proxy.port, timeoutMs: TIMEOUT_MS });
  return {
    store,
    proxies: [proxy],
    proxyFor: async () => proxy,
    async stop() {
      await store.close();
      await proxy.stop();
      await server.stop();
    },
  };
}

/** A 3-master cluster whose nodes announce their proxies' ports: all the store's traffic goes through them. */
async function clusterPath(): Promise<Path> {
  const cluster = await startProxiedCluster();
  const store = clusterStore({ nodes: cluster.seeds, timeoutMs: TIMEOUT_MS });
  return {
    store,
    proxies: [...cluster.proxies],
    proxyFor: async (key) => cluster.proxies[await cluster.ownerOf(key)]!,
    async stop() {
      await store.close();
      await cluster.stop();
    },
  };
}

const echo = (store: Store, key: string, value: string) => store.run(ECHO, [key], [value]);

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail');
}

describe.each([
  ['redis', standalonePath],
  ['cluster', clusterPath],
] as const)('%s store through a stalling proxy', (_name, start) => {
  let path: Path;
  beforeAll(async () => {
    path = await start();
  });
  afterAll(async () => {
    await path?.stop();
  });

  it('after a stall longer than timeoutMs, the next call succeeds on a fresh connection', async () => {
    const { store, proxies } = path;
    expect(await echo(store, 'stall-a', 'warm')).toBe('warm');
    const acceptedBefore = proxies.reduce((n, p) => n + p.accepted, 0);

    for (const p of proxies) p.stall();
    const err = await rejection(echo(store, 'stall-a', 'during'));
    expect(err).toBeInstanceOf(StoreUnavailableError);
    // Written to a connection that was ready: it may have run.
    expect((err as StoreUnavailableError).ambiguous).toBe(true);
    expect((err as Error).message).toContain(`no reply within ${TIMEOUT_MS} ms`);
    // The stall outlasts a timeout, then the path is healthy for new connections (the old ones stay dead).
    await delay(TIMEOUT_MS);
    for (const p of proxies) p.heal();

    // One timeoutMs of a healthy path is all the next call gets: the store's own bound (the call resolves
    // within timeoutMs or fails), on a connection opened after the stall.
    expect(await echo(store, 'stall-a', 'after')).toBe('after');
    expect(proxies.reduce((n, p) => n + p.accepted, 0)).toBeGreaterThan(acceptedBefore);
    // And it stays healthy.
    for (let i = 0; i < 5; i++) expect(await echo(store, `stall-${i}`, `again-${i}`)).toBe(`again-${i}`);
  });

  it('a lost reply: the timed-out call is ambiguous, and no later reply reaches the wrong call', async () => {
    const { store } = path;
    const key = 'lost-reply';
    expect(await echo(store, key, 'warm')).toBe('warm');
    const proxy = await path.proxyFor(key);
    const droppedBefore = proxy.dropped;

    proxy.dropReplies(1);
    const err = await rejection(echo(store, key, 'lost'));
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as StoreUnavailableError).ambiguous).toBe(true);
    expect(proxy.dropped).toBe(droppedBefore + 1);

    // Many calls at once, all to the same node: each gets its own reply. On the old connection the first of
    // them would get nothing (its reply answers the lost command) and each later one its neighbour's reply.
    const values = Array.from({ length: 20 }, (_, i) => `value-${i}`);
    const replies = await Promise.all(values.map((v) => echo(store, key, v)));
    expect(replies).toEqual(values);
  });
});

describe('a store you were handed keeps its client', () => {
  let server: RedisProcess;
  let proxy: StallProxy;
  beforeAll(async () => {
    server = await startRedis();
    proxy = await startStallProxy(server);
  });
  afterAll(async () => {
    await proxy?.stop();
    await server?.stop();
  });

  it('its calls are bounded by timeoutMs, but oncely never disconnects a client it does not own', async () => {
    const client = new Redis({ host: proxy.host, port: proxy.port, protocol: 2 });
    const store = redisStore(client);
    try {
      expect(await echo(store, 'k', 'warm')).toBe('warm');
      proxy.stall();
      const started = performance.now();
      expect(await rejection(echo(store, 'k', 'x'))).toBeInstanceOf(StoreUnavailableError);
      // The default timeout (2000 ms) with headroom for a busy machine.
      expect(performance.now() - started).toBeLessThan(2000 * 1.5 + 500);
      expect(client.status).toBe('ready');
    } finally {
      client.disconnect();
      await store.close();
    }
  });
});
