import { isIP } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import type { Cluster, ClusterNode, Redis } from 'ioredis';
import { badConfig } from '../errors.js';
import {
  type ClusterStoreOptions,
  type RedisStoreOptions,
  settingsOf,
  type TcpAuthOptions,
  type TcpSettings,
} from './options.js';
import { type Client, TcpStore } from './tcp-store.js';
import { DEFAULT_TIMEOUT_MS, type Store } from './types.js';

export type { ClusterStoreOptions, RedisStoreOptions, TcpAuthOptions } from './options.js';

/** A standalone Redis over TCP (ioredis). Pass options, or a client you already own (you close it). */
export function redisStore(options: RedisStoreOptions | Redis): Store {
  if (isClient(options))
    return ownStore('redis', `redis(${options.options.host}:${options.options.port})`, options);
  return tcpStoreFrom(settingsOf('redis', options));
}

/** A Redis Cluster over TCP (ElastiCache / MemoryDB cluster mode). Pass options, or your own Cluster. */
export function clusterStore(options: ClusterStoreOptions | Cluster): Store {
  if (isClient(options)) return ownStore('cluster', 'cluster', options);
  return tcpStoreFrom(settingsOf('cluster', options));
}

/** The store of checked options (options.ts settingsOf): it makes its client at the first call, and owns it. */
export function tcpStoreFrom(settings: TcpSettings): Store {
  const ioredis = loadIoredis();
  const { timeoutMs } = settings.options;
  const diagnosis: TlsDiagnosis = { error: undefined, running: false };
  const connect =
    settings.kind === 'redis'
      ? () => ioredis.then((m) => connectRedis(m, settings.options, timeoutMs))
      : () => ioredis.then((m) => connectCluster(m, settings.options, timeoutMs, diagnosis));
  const { kind, name, secrets, options } = settings;
  return new TcpStore({ kind, name, connect, timeoutMs, secrets, owned: true, replicas: options, diagnosis });
}

/** Why a TLS cluster's node cannot connect, as the TLS handshake says it (see diagnoseTls). */
interface TlsDiagnosis {
  error: Error | undefined;
  running: boolean;
}

/**
 * ioredis's Cluster reports a node whose TLS handshake fails only as "Connection is closed.", so a wrong CA or
 * an expired certificate would read as an unreachable node. On such an error the store makes one handshake of
 * its own to that node with the same TLS options (one at a time) and keeps its error for the store's message.
 */
function diagnoseTls(
  diagnosis: TlsDiagnosis,
  tls: ConnectionOptions,
  address: string,
  timeoutMs: number,
): void {
  const at = address.lastIndexOf(':');
  const port = Number(address.slice(at + 1));
  if (diagnosis.running || at < 0 || !Number.isInteger(port)) return;
  diagnosis.running = true;
  const host = address.slice(0, at);
  const sni = isIP(host) ? {} : { servername: host }; // as ioredis does: no IP address as the server name
  const socket = tlsConnect({ ...sni, ...tls, host, port, timeout: timeoutMs });
  const done = (error: Error | undefined) => {
    if (!diagnosis.running) return;
    diagnosis.error = error && new Error(`TLS handshake with ${address} failed: ${error.message}`);
    diagnosis.running = false;
    socket.destroy();
  };
  socket.once('secureConnect', () => done(undefined));
  socket.on('error', done);
  socket.once('timeout', () => done(undefined));
}

/** A store over a client the caller made and closes: its calls are bounded, never probed or closed. */
function ownStore(kind: 'redis' | 'cluster', name: string, client: Client): Store {
  return new TcpStore({
    kind,
    name,
    connect: () => Promise.resolve(client),
    timeoutMs: DEFAULT_TIMEOUT_MS,
    secrets: [],
    owned: false,
    replicas: {},
  });
}

function isClient(x: unknown): x is Client {
  return typeof x === 'object' && x !== null && typeof (x as { evalsha?: unknown }).evalsha === 'function';
}

/**
 * ioredis is an optional peer dependency, loaded when a TCP store is created from options (the REST path never
 * loads it): a store created at module scope parses it during Lambda's init phase, as upstashStore does with
 * its client, rather than in the first invocation (the layer ships ioredis as published, 57 files: 55-85 ms
 * to load on the bench machine). A missing ioredis fails the first call, not the creation. The `.catch()`
 * right on the `import()` makes esbuild (serverless-esbuild, SAM, CDK NodejsFunction) leave the import in
 * place when ioredis is not installed, so a REST-only app bundles without it.
 */
function loadIoredis(): Promise<typeof import('ioredis')> {
  const loading = import('ioredis').catch((cause: unknown) => {
    throw badConfig([ioredisLoadProblem(cause)], { cause });
  });
  loading.catch(() => undefined); // reported by the first call that awaits it
  return loading;
}

/**
 * What to do about a failed `import('ioredis')`, from the error itself: a missing package says to install it; a
 * CommonJS require inside an ES module bundle (ioredis bundled with `format: 'esm'`) says how to bundle it; any
 * other failure is named as it is (the error is the `cause`).
 */
export function ioredisLoadProblem(cause: unknown): string {
  const message = cause instanceof Error ? cause.message : String(cause);
  const code = (cause as { code?: unknown } | null)?.code;
  if (/Dynamic require of .* is not supported|require is not defined/.test(message)) {
    return `the TCP transport could not load ioredis: ${message}. ioredis is CommonJS and is bundled into an ES module bundle: add a createRequire banner (banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" }), mark ioredis external, or bundle as CommonJS`;
  }
  if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && /'ioredis'/.test(message)) {
    return 'the TCP transport needs the ioredis package: npm install ioredis (or use the Upstash REST transport)';
  }
  return `the TCP transport could not load ioredis: ${message}`;
}

function connectRedis(
  ioredis: typeof import('ioredis'),
  options: RedisStoreOptions,
  timeoutMs: number,
): Redis {
  const common = stripUndefined({
    ...tcpDefaults(timeoutMs),
    username: options.username,
    password: options.password,
    tls: tlsOption(options.tls),
  });
  const client = options.url
    ? new ioredis.Redis(options.url, common)
    : new ioredis.Redis({ ...common, host: options.host ?? '127.0.0.1', port: options.port ?? 6379 });
  client.on('error', () => {}); // reported per command; the default handler would print to stderr
  return client;
}

function connectCluster(
  ioredis: typeof import('ioredis'),
  options: ClusterStoreOptions,
  timeoutMs: number,
  diagnosis: TlsDiagnosis,
): Cluster {
  const tls = tlsOption(options.tls);
  const cluster = new ioredis.Cluster(
    options.nodes.map((n) => ({ host: n.host, port: n.port })) as ClusterNode[],
    {
      enableOfflineQueue: true,
      // The ready check asks one node, picked at random, for CLUSTER INFO: a node that does not answer
      // would hold every call until its timeout though the others serve. A cluster that is down answers
      // CLUSTERDOWN to the command itself.
      enableReadyCheck: false,
      // A third of a call: a seed that does not answer leaves time to ask the next one within timeoutMs.
      slotsRefreshTimeout: Math.max(1, Math.floor(timeoutMs / 3)),
      clusterRetryStrategy: (times) => Math.min(100 * times, 1000),
      // ElastiCache/MemoryDB TLS certificates name the configuration endpoint: do not resolve to IPs.
      ...(tls ? { dnsLookup: (address: string, cb: (e: null, a: string) => void) => cb(null, address) } : {}),
      redisOptions: stripUndefined({
        ...tcpDefaults(timeoutMs),
        username: options.username,
        password: options.password,
        tls,
      }),
    },
  );
  cluster.on('error', () => {});
  if (tls) {
    cluster.on('node error', (err: Error, address: string) => {
      if (/Connection is closed/.test(err?.message ?? '')) diagnoseTls(diagnosis, tls, address, timeoutMs);
    });
  }
  return cluster;
}

function tcpDefaults(timeoutMs: number) {
  return {
    protocol: 2 as const,
    connectTimeout: timeoutMs,
    // No commandTimeout: the store bounds each whole call (connection.ts), one timer per call.
    maxRetriesPerRequest: 1,
    // A command left without a reply on a dropped connection is never sent again by itself: it may have run.
    autoResendUnfulfilledCommands: false,
    enableOfflineQueue: true,
    retryStrategy: (times: number) => Math.min(50 * times, 1000),
  };
}

function tlsOption(tls: TcpAuthOptions['tls']): ConnectionOptions | undefined {
  if (!tls) return undefined;
  return tls === true ? {} : tls;
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
