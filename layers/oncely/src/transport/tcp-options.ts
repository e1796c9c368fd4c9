/**
 * What a TCP store is made from: its options, checked at once (a bad URL is a ValidationError when the store
 * is created, not a store error at its first call), and its name. Apart from the ioredis code (tcp.ts), so
 * that fromEnv() can check and name a TCP store before the TCP transport's chunk is loaded.
 */
import type { ConnectionOptions } from 'node:tls';
import { MAX_TTL_MS, resolveOptions, wholeProblems } from '../validate.js';
import { type ReplicaOptions, type ReplicaWait, replicaProblems, replicaWaitOf } from './replicas.js';
import { DEFAULT_TIMEOUT_MS, describeUrl, parseUrl, type TransportOptions } from './types.js';

export interface TcpAuthOptions {
  /** ACL user (Redis 6+, ElastiCache RBAC, MemoryDB ACLs). */
  username?: string;
  /** Password or AUTH token. Never logged, never part of an error. */
  password?: string;
  /**
   * TLS: `true` for defaults (ElastiCache in-transit encryption, MemoryDB), or node:tls options.
   * @default false
   */
  tls?: boolean | ConnectionOptions;
}

export interface RedisStoreOptions extends TransportOptions, TcpAuthOptions, ReplicaOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://…` (TLS). Either this or host/port. */
  url?: string;
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 6379 */
  port?: number;
}

export interface ClusterStoreOptions extends TransportOptions, TcpAuthOptions, ReplicaOptions {
  /** Seed nodes; the rest of the topology is discovered. */
  nodes: readonly { host: string; port: number }[];
}

/** A TCP store's options, checked, with what the store makes of them. */
export type TcpSettings = (
  | { readonly kind: 'redis'; readonly options: RedisStoreOptions }
  | { readonly kind: 'cluster'; readonly options: ClusterStoreOptions }
) & {
  readonly name: string;
  readonly timeoutMs: number;
  /** Redacted from every error: the password, and the one in the URL. */
  readonly secrets: readonly (string | undefined)[];
  readonly wait: ReplicaWait;
};

type CommonOptions = TransportOptions & TcpAuthOptions & ReplicaOptions;

/** Every option both TCP stores take, with its default (undefined: none). */
const COMMON: CommonOptions & { timeoutMs: number } = {
  timeoutMs: DEFAULT_TIMEOUT_MS,
  username: undefined,
  password: undefined,
  tls: false,
  replicas: 'auto',
  replicaTimeoutMs: undefined,
};
const REDIS_DEFAULTS: RedisStoreOptions & { timeoutMs: number } = {
  ...COMMON,
  url: undefined,
  host: undefined,
  port: undefined,
};
const CLUSTER_DEFAULTS: ClusterStoreOptions & { timeoutMs: number } = { ...COMMON, nodes: [] };

/** redisStore's options, checked (one ValidationError naming every problem), its name and settings. */
export function redisSettings(options: RedisStoreOptions): TcpSettings {
  const resolved = resolveOptions(
    options,
    REDIS_DEFAULTS,
    (o) => [
      ...(o.url === undefined ? [] : urlProblems(o.url)),
      ...(o.url !== undefined && (o.host !== undefined || o.port !== undefined)
        ? ['give url or host and port, not both']
        : []),
      ...(o.host === undefined ? [] : hostProblems('host', o.host)),
      ...(o.port === undefined ? [] : wholeProblems('port', o.port, 1, 65535)),
      ...commonProblems(o),
    ],
    'redisStore options',
  );
  return settings('redis', resolved, redisName(resolved), [resolved.password, passwordOf(resolved.url)]);
}

/** clusterStore's options, checked (one ValidationError naming every problem), its name and settings. */
export function clusterSettings(options: ClusterStoreOptions): TcpSettings {
  const resolved = resolveOptions(
    options,
    CLUSTER_DEFAULTS,
    (o) => [...nodesProblems(o.nodes), ...commonProblems(o)],
    'clusterStore options',
  );
  return settings('cluster', resolved, clusterName(resolved.nodes), [resolved.password]);
}

function settings(
  kind: 'redis' | 'cluster',
  options: RedisStoreOptions | ClusterStoreOptions,
  name: string,
  secrets: (string | undefined)[],
): TcpSettings {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const common = { name, timeoutMs, secrets, wait: replicaWaitOf(options, timeoutMs) };
  return kind === 'redis'
    ? { kind, options: options as RedisStoreOptions, ...common }
    : { kind, options: options as ClusterStoreOptions, ...common };
}

function commonProblems(o: CommonOptions): string[] {
  const timeoutMs = wholeProblems('timeoutMs', o.timeoutMs, 1, MAX_TTL_MS, 'ms');
  return [
    ...timeoutMs,
    // replicaTimeoutMs is bounded by timeoutMs: by the default one while timeoutMs itself is wrong.
    ...replicaProblems(o, timeoutMs.length === 0 ? (o.timeoutMs ?? DEFAULT_TIMEOUT_MS) : DEFAULT_TIMEOUT_MS),
    ...(o.username === undefined || typeof o.username === 'string' ? [] : ['username must be a string']),
    ...(o.password === undefined || typeof o.password === 'string' ? [] : ['password must be a string']),
    ...(typeof o.tls === 'boolean' || (typeof o.tls === 'object' && o.tls !== null)
      ? []
      : ['tls must be true, false or node:tls options']),
  ];
}

/** What an error may say of a URL: its scheme, host and port (types.ts describeUrl), never a password. */
function urlProblems(url: unknown): string[] {
  const u = typeof url === 'string' ? parseUrl(url) : undefined;
  if (u && (u.protocol === 'redis:' || u.protocol === 'rediss:') && u.hostname) return [];
  return [`url must be a redis:// or rediss:// URL with a host, got ${describeUrl(u)}`];
}

function hostProblems(field: string, host: unknown): string[] {
  return typeof host === 'string' && host.length > 0 ? [] : [`${field} must be a non-empty string`];
}

function nodesProblems(nodes: unknown): string[] {
  if (!Array.isArray(nodes) || nodes.length === 0)
    return ['nodes must list at least one seed node as { host, port }'];
  return nodes.flatMap((n: { host?: unknown; port?: unknown } | null, i) => [
    ...hostProblems(`nodes[${i}].host`, n?.host),
    ...wholeProblems(`nodes[${i}].port`, n?.port, 1, 65535),
  ]);
}

/** `redis(host:port)`, from a URL or host and port: for errors and logs. */
function redisName(options: RedisStoreOptions): string {
  const u = options.url === undefined ? undefined : parseUrl(options.url);
  const where = u
    ? `${u.hostname}:${u.port || 6379}`
    : `${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`;
  return `redis(${where})`;
}

/** `cluster(host:port,…)`, from the seed nodes. */
function clusterName(nodes: readonly { host: string; port: number }[]): string {
  const first = nodes[0];
  return `cluster(${first ? `${first.host}:${first.port}` : '?'}${nodes.length > 1 ? ',…' : ''})`;
}

function passwordOf(url: string | undefined): string | undefined {
  try {
    return decodeURIComponent(parseUrl(url ?? '')?.password ?? '') || undefined;
  } catch {
    return undefined;
  }
}
