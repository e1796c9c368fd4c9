/**
 * Real servers for a test file: each `use*()` registers a `beforeAll` that starts them and an `afterAll` that
 * stops them by PID (afterAll runs even when a test or a later beforeAll failed), and returns a getter.
 * Call `use*()` at the top of a file or a describe block; call the getter inside hooks and tests.
 *
 *   const redis = useRedis();
 *   const gateway = useGateway(redis);           // after useRedis: hooks run in order, and stop in reverse
 *   it('...', async () => { new Redis({ url: gateway().url, token: gateway().token }) ... });
 *
 * Anything still running when the worker exits is SIGKILLed by dev/redis-server.ts' exit hook.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { type Gateway, startGateway } from '../../dev/gateway.js';
import {
  type RedisCluster,
  type RedisMasters,
  type RedisProcess,
  type StartClusterOptions,
  type StartRedisOptions,
  startCluster,
  startMasters,
  startRedis,
} from '../../dev/redis-server.js';

export type { Gateway } from '../../dev/gateway.js';
export type { RedisCluster, RedisMasters, RedisProcess } from '../../dev/redis-server.js';

/** What `@upstash/redis` needs to reach a gateway. */
export interface UpstashEndpoint {
  url: string;
  token: string;
}

/**
 * Starts a resource in `beforeAll`, disposes of it in `afterAll`, and returns a getter that fails loudly when
 * called before the resource exists (at collection time, or after its setup failed).
 */
function useResource<T>(
  what: string,
  start: () => Promise<T>,
  dispose: (value: T) => Promise<void>,
): () => T {
  let value: T | undefined;
  let started = false;
  beforeAll(async () => {
    value = await start();
    started = true;
  });
  afterAll(async () => {
    if (!started) return;
    started = false;
    const v = value as T;
    value = undefined;
    await dispose(v);
  });
  return () => {
    if (!started)
      throw new Error(`${what} is not running: call the getter inside a test or hook, after its setup`);
    return value as T;
  };
}

/** A fresh random token, so no test can pass by guessing a constant. */
export function testToken(): string {
  return `test-${randomBytes(16).toString('base64url')}`;
}

/** One standalone redis-server for the file (or describe block). */
export function useRedis(opts?: StartRedisOptions): () => RedisProcess {
  return useResource(
    'useRedis() server',
    () => startRedis(opts),
    async (server) => {
      await closeGatewaysOf([server]);
      await server.stop();
    },
  );
}

/** A 3-master (by default) Redis Cluster, ready: every node `cluster_state:ok` and agreeing on the slots. */
export function useCluster(opts?: StartClusterOptions): () => RedisCluster {
  return useResource(
    'useCluster() cluster',
    () => startCluster(opts),
    async (cluster) => {
      await closeGatewaysOf(cluster.nodes);
      await cluster.stop();
    },
  );
}

/** `n` independent standalone servers (Redlock). */
export function useMasters(n: number, opts?: Omit<StartRedisOptions, 'port'>): () => RedisProcess[] {
  const masters = useResource(
    `useMasters(${n}) servers`,
    () => startMasters(n, opts),
    async (group: RedisMasters) => {
      await closeGatewaysOf(group.nodes);
      await group.stop();
    },
  );
  return () => masters().nodes;
}

/**
 * The REST gateway in front of a server from `useRedis()` (or any getter), with a random token. Register it
 * after the server's `use*()`; it closes before the server stops.
 */
export function useGateway(redis: () => RedisProcess, opts: { token?: string } = {}): () => Gateway {
  return useResource(
    'useGateway() gateway',
    () =>
      startGateway({
        redis: { host: redis().host, port: redis().port, password: redis().password },
        token: opts.token ?? testToken(),
      }),
    (gateway) => gateway.close(),
  );
}

// A gateway per server, on demand; closed by the afterAll of the use*() that started the server, or by the
// file-level afterAll below for servers started some other way.
const gateways = new Map<RedisProcess, Promise<Gateway>>();

async function closeGatewaysOf(servers: readonly RedisProcess[]): Promise<void> {
  await Promise.allSettled(
    servers.map(async (server) => {
      const gateway = gateways.get(server);
      gateways.delete(server);
      await (await gateway)?.close();
    }),
  );
}

afterAll(async () => {
  await closeGatewaysOf([...gateways.keys()]);
});

/**
 * `{ url, token }` for `@upstash/redis`, reaching `redis` through a REST gateway started on first use (one
 * per server). Use inside hooks or tests.
 */
export async function gatewayFor(redis: RedisProcess): Promise<UpstashEndpoint> {
  let gateway = gateways.get(redis);
  if (!gateway) {
    gateway = startGateway({
      redis: { host: redis.host, port: redis.port, password: redis.password },
      token: testToken(),
    });
    gateways.set(redis, gateway);
    gateway.catch(() => gateways.delete(redis));
  }
  const { url, token } = await gateway;
  return { url, token };
}
