/**
 * What a TCP store is made from: its options, checked at once (a bad URL is a ValidationError when the store
 * is created, not a store error at its first call), its name and its secrets. Apart from the ioredis code
 * (tcp.ts), so that fromEnv() can check and name a TCP store before the TCP transport's chunk is loaded.
 */
import type { ConnectionOptions } from 'node:tls';
import { MAX_TTL_MS, resolveOptions, wholeProblems } from '../validate.js';
import { type ReplicaOptions, replicaProblems } from './replicas.js';
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

/** A TCP store's options, checked, with its name and secrets. */
export type TcpSettings = (
  | { readonly kind: 'redis'; readonly options: Resolved<RedisStoreOptions> }
  | { readonly kind: 'cluster'; readonly options: Resolved<ClusterStoreOptions> }
) & {
  /** For errors and logs: host and port only. */
  readonly name: string;
  /** Redacted from every error: the password, and the one in the URL. */
  readonly secrets: readonly (string | undefined)[];
};

type Resolved<O> = O & { timeoutMs: number };

type CommonOptions = TransportOptions & TcpAuthOptions & ReplicaOptions;

/** Every option both TCP stores take, with its default (undefined: none). */
const COMMON: Resolved<CommonOptions> = {
  timeoutMs: DEFAULT_TIMEOUT_MS,
  username: undefined,
  password: undefined,
  tls: false,
  replicas: 'auto',
  replicaTimeoutMs: undefined,
};
const REDIS_DEFAULTS: Resolved<RedisStoreOptions> = {
  ...COMMON,
  url: undefined,
  host: undefined,
  port: undefined,
};
const CLUSTER_DEFAULTS: Resolved<ClusterStoreOptions> = { ...COMMON, nodes: [] };

/** redisStore's or clusterStore's options, checked (one ValidationError naming every problem), and named. */
export function tcpSettings(kind: 'redis', options: RedisStoreOptions): TcpSettings;
export function tcpSettings(kind: 'cluster', options: ClusterStoreOptions): TcpSettings;
export function tcpSettings(
  kind: 'redis' | 'cluster',
  options: RedisStoreOptions | ClusterStoreOptions,
): TcpSettings;
export function tcpSettings(
  kind: 'redis' | 'cluster',
  options: RedisStoreOptions | ClusterStoreOptions,
): TcpSettings {
  // Named, and its secrets listed, from what can be read before the check.
  const redis = kind === 'redis' ? (options as RedisStoreOptions) : undefined;
  const url = typeof redis?.url === 'string' && URL.canParse(redis.url) ? new URL(redis.url) : undefined;
  const name = redis
    ? `redis(${url ? `${url.hostname}:${url.port || 6379}` : `${redis.host ?? '127.0.0.1'}:${redis.port ?? 6379}`})`
    : clusterName((options as ClusterStoreOptions).nodes);
  const secrets = [options.password, passwordOf(url)];
  const check = CHECKS[kind] as { defaults: object; problems: (o: object) => string[] };
  const resolved = resolveOptions(options, check.defaults, check.problems, `${kind}Store options`);
  return { kind, name, secrets, options: resolved } as TcpSettings;
}

function redisProblems(o: Resolved<RedisStoreOptions>): string[] {
  return [
    ...(o.url === undefined ? [] : urlProblems(o.url)),
    ...(o.url !== undefined && (o.host !== undefined || o.port !== undefined)
      ? ['give url or host and port, not both']
      : []),
    ...(o.host === undefined ? [] : hostProblems('host', o.host)),
    ...(o.port === undefined ? [] : wholeProblems('port', o.port, 1, 65535)),
    ...commonProblems(o),
  ];
}

function clusterProblems(o: Resolved<ClusterStoreOptions>): string[] {
  return [...nodesProblems(o.nodes), ...commonProblems(o)];
}

const CHECKS = {
  redis: { defaults: REDIS_DEFAULTS, problems: redisProblems },
  cluster: { defaults: CLUSTER_DEFAULTS, problems: clusterProblems },
};

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

/** `cluster(host:port,…)`, from the seed nodes. */
function clusterName(nodes: readonly { host: string; port: number }[]): string {
  const first = Array.isArray(nodes) ? nodes[0] : undefined;
  return `cluster(${first ? `${first.host}:${first.port}` : '?'}${(nodes?.length ?? 0) > 1 ? ',…' : ''})`;
}

function passwordOf(url: URL | undefined): string | undefined {
  try {
    return decodeURIComponent(url?.password ?? '') || undefined;
  } catch {
    return undefined;
  }
}
