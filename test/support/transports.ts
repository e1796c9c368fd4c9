import { Redis as UpstashRedis } from '@upstash/redis';
import { Cluster, Redis } from 'ioredis';
import { type Gateway, startGateway } from '../../dev/gateway.js';
import { type RedisProcess, startCluster, startRedis } from '../../dev/redis-server.js';
import { type Store, upstashClientStore, upstashStore } from '../../layers/oncely/src/index.js';
import { clusterStore, redisStore } from '../../layers/oncely/src/ioredis.js';

export type TransportName = 'rest' | 'redis' | 'cluster' | 'upstash-client';
export const TRANSPORTS: readonly TransportName[] = ['rest', 'redis', 'cluster'];
/** The lock conformance suite also runs over a user's own `@upstash/redis` client (upstashClientStore). */
/** A reply with every numeric string made a number (REST and TCP give a Lua string or number alike). */
export const norm = (reply: unknown): unknown =>
  Array.isArray(reply)
    ? reply.map(norm)
    : typeof reply === 'string' && /^-?\d+$/.test(reply)
      ? Number(reply)
      : reply;

export const LOCK_TRANSPORTS: readonly TransportName[] = [...TRANSPORTS, 'upstash-client'];

/** An `@upstash/redis` client configured the way upstashClientStore asks. */
export function upstashClient(url: string, token: string, timeoutMs = 2000): UpstashRedis {
  return new UpstashRedis({
    url,
    token,
    automaticDeserialization: false,
    retry: false,
    enableTelemetry: false,
    signal: () => AbortSignal.timeout(timeoutMs),
  });
}

/**
 * One transport over real servers, for `describe.each(TRANSPORTS)`: REST through the local Upstash-compatible
 * gateway in front of a redis-server, a standalone redis-server over TCP, or a 3-master cluster over TCP.
 */
export interface TransportFixture {
  readonly name: TransportName;
  /** A new Store on this transport (the test closes it, or `stop()` does). */
  store(options?: { timeoutMs?: number }): Store;
  /** The redis-server processes behind it (to pause, kill, flush scripts). */
  readonly servers: readonly RedisProcess[];
  /** A plain client for looking behind the store's back (a Cluster for the cluster). */
  readonly admin: Redis | Cluster;
  readonly gateway?: Gateway;
  /** Runs a command on every server (e.g. SCRIPT FLUSH). */
  everyServer(...command: string[]): Promise<void>;
  stop(): Promise<void>;
}

export async function startTransport(name: TransportName): Promise<TransportFixture> {
  const stores: Store[] = [];
  const track = (s: Store) => {
    stores.push(s);
    return s;
  };
  let servers: RedisProcess[];
  let stopServers: () => Promise<void>;
  let admin: Redis | Cluster;
  let gateway: Gateway | undefined;
  let make: (timeoutMs?: number) => Store;

  if (name === 'cluster') {
    const cluster = await startCluster({ masters: 3 });
    servers = cluster.nodes;
    stopServers = () => cluster.stop();
    admin = new Cluster(cluster.seeds, { redisOptions: { protocol: 2 } });
    make = (timeoutMs) => clusterStore({ nodes: cluster.seeds, timeoutMs });
  } else {
    const server = await startRedis();
    servers = [server];
    stopServers = () => server.stop();
    admin = new Redis({ host: server.host, port: server.port, protocol: 2 });
    if (name === 'rest' || name === 'upstash-client') {
      try {
        gateway = await startGateway({
          redis: { host: server.host, port: server.port },
          token: 'test-token-rest',
        });
      } catch (err) {
        await server.stop();
        throw err;
      }
      const g = gateway;
      make =
        name === 'rest'
          ? (timeoutMs) => upstashStore({ url: g.url, token: g.token, timeoutMs })
          : (timeoutMs) => upstashClientStore(upstashClient(g.url, g.token, timeoutMs));
    } else {
      make = (timeoutMs) => redisStore({ host: server.host, port: server.port, timeoutMs });
    }
  }

  return {
    name,
    servers,
    admin,
    gateway,
    store: (options) => track(make(options?.timeoutMs)),
    async everyServer(...command) {
      await Promise.all(
        servers.map(async (s) => {
          const c = new Redis({ host: s.host, port: s.port, protocol: 2, lazyConnect: true });
          try {
            await c.call(command[0]!, ...command.slice(1));
          } finally {
            c.disconnect();
          }
        }),
      );
    },
    async stop() {
      await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
      admin.disconnect();
      await gateway?.close();
      await stopServers();
    },
  };
}
