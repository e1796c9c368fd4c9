/**
 * The servers every benchmark shares: one redis-server, the Upstash-compatible REST gateway in front of it
 * (in its own process, counting requests), independent masters for Redlock, and the counters that turn a run
 * into round trips per operation: gateway requests, a TCP proxy counting request/reply exchanges, and
 * `INFO commandstats` deltas.
 */
import { type ChildProcess, fork } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { type RedisProcess, startMasters, startRedis } from '../dev/redis-server.js';

export const TOKEN = 'bench-token';

export interface Endpoint {
  host: string;
  port: number;
}

// ----------------------------------------------------------------------------------------------- gateway

export interface GatewayProcess {
  readonly url: string;
  readonly pid: number;
  /** HTTP requests the gateway has handled so far. */
  requests(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * dev/gateway.ts in a child process (bench/gateway-child.ts): its CPU is not charged to the client under
 * test, as with a real Upstash endpoint. The count comes back over IPC.
 */
export async function startGatewayProcess(redis: Endpoint): Promise<GatewayProcess> {
  const child: ChildProcess = fork(
    fileURLToPath(new URL('./gateway-child.ts', import.meta.url)),
    [redis.host, String(redis.port), TOKEN],
    { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  const url = await new Promise<string>((resolve, reject) => {
    const onExit = (code: number | null) =>
      reject(new Error(`gateway process exited (${code}) before listening`));
    child.once('exit', onExit);
    child.once('message', (m: { url?: string }) => {
      child.off('exit', onExit);
      if (m.url) resolve(m.url);
      else reject(new Error('gateway process: no url'));
    });
  });
  let nextId = 0;
  return {
    url,
    pid: child.pid ?? -1,
    requests: () =>
      new Promise<number>((resolve) => {
        const id = ++nextId;
        const onMessage = (m: { id?: number; requests?: number }) => {
          if (m.id !== id) return;
          child.off('message', onMessage);
          resolve(m.requests ?? Number.NaN);
        };
        child.on('message', onMessage);
        child.send({ type: 'count', id });
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.disconnect();
      }),
  };
}

// ------------------------------------------------------------------------------------- round-trip proxy

/**
 * A TCP proxy that counts round trips: a client→server write that follows a server reply (or opens the
 * connection) starts a new exchange. A pipeline of ten commands written at once is one; ten commands each
 * awaited are ten. Script-internal commands are invisible here (they never cross the wire). Exact for
 * operations run one at a time, which is how the counting pass runs them.
 */
export interface RoundTripProxy extends Endpoint {
  readonly roundTrips: number;
  /** Connections the clients opened through the proxy. */
  readonly connections: number;
  close(): Promise<void>;
}

export async function startRoundTripProxy(target: Endpoint): Promise<RoundTripProxy> {
  let roundTrips = 0;
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    connections++;
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    let awaitingReply = false;
    client.on('data', (chunk) => {
      if (!awaitingReply) roundTrips++;
      awaitingReply = true;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      awaitingReply = false;
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('close', end);
      s.on('error', end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    get roundTrips() {
      return roundTrips;
    },
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// ------------------------------------------------------------------------------------------ commandstats

/** `INFO commandstats` as command → calls, minus the INFO calls themselves. */
export async function commandCalls(admin: Redis): Promise<Map<string, number>> {
  const text = String(await admin.info('commandstats'));
  const calls = new Map<string, number>();
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (m[1] === 'info') continue;
    calls.set(m[1]!, Number(m[2]));
  }
  return calls;
}

/** Per-operation command counts between two snapshots, e.g. `{ evalsha: 1, get: 1, incr: 1, set: 1 }`. */
export function perOp(
  before: Map<string, number>,
  after: Map<string, number>,
  ops: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, n] of after) {
    const d = (n - (before.get(name) ?? 0)) / ops;
    if (d > 0) out[name] = Math.round(d * 100) / 100;
  }
  return out;
}

/** `evalsha 1 · get 1 · incr 1 · set 1`, top-level commands first (evalsha, eval, then the rest). */
export function describeCommands(counts: Record<string, number>): string {
  const order = (name: string) => (name.startsWith('evalsha') ? 0 : name.startsWith('eval') ? 1 : 2);
  return Object.entries(counts)
    .sort(([a], [b]) => order(a) - order(b) || a.localeCompare(b))
    .map(([name, n]) => `${name} ${n}`)
    .join(' · ');
}

// --------------------------------------------------------------------------------------------- the stack

export interface Stack {
  readonly redis: RedisProcess;
  readonly gateway: GatewayProcess;
  /** A plain client for INFO, SCRIPT and FLUSHALL. */
  readonly admin: Redis;
  stop(): Promise<void>;
}

export async function startStack(): Promise<Stack> {
  const redis = await startRedis();
  let gateway: GatewayProcess;
  try {
    gateway = await startGatewayProcess(redis);
  } catch (err) {
    await redis.stop();
    throw err;
  }
  const admin = new Redis({ host: redis.host, port: redis.port, protocol: 2 });
  return {
    redis,
    gateway,
    admin,
    async stop() {
      admin.disconnect();
      await gateway.stop();
      await redis.stop();
    },
  };
}

export { startMasters, startRedis };
