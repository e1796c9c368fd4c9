/**
 * What each store is made from: its options with their defaults, checked at once through validate.ts
 * resolveOptions (a bad URL is a ValidationError when the store is created, not a store error at its first
 * call), its name and its secrets: settingsOf(). Apart from the stores' code (upstash.ts, tcp.ts), so that
 * fromEnv() checks and names a store before the chunk of its transport is loaded.
 */
import type { ConnectionOptions } from 'node:tls';
import { MAX_TTL_MS, resolveOptions, wholeProblems } from '../validate.js';
import { type ReplicaOptions, replicaProblems } from './replicas.js';
import { DEFAULT_TIMEOUT_MS, describeUrl, parseUrl, type StoreKind, type TransportOptions } from './types.js';

export interface UpstashStoreOptions extends TransportOptions {
  /** The database's REST URL (`UPSTASH_REDIS_REST_URL`). */
  url: string;
  /** The REST token (`UPSTASH_REDIS_REST_TOKEN`). Never logged, never part of an error. */
  token: string;
  /**
   * Ask the server to base64-encode string replies (Upstash's default, safe for binary values).
   * @default false (our replies are integers and UTF-8 JSON, and decoding costs time)
   */
  base64?: boolean;
  /**
   * Most requests in flight (and keep-alive sockets) to the REST endpoint at a time, for this store. Calls
   * made while all of them are busy wait and then travel together, as one `/pipeline` request, when one frees:
   * a burst of a thousand concurrent calls costs a few fuller requests, not a thousand sockets. The wait
   * counts against `timeoutMs`; a call that was never sent fails with StoreUnavailableError, `ambiguous: false`.
   * @default 8 (docs/benchmarks.md, "REST connection pool")
   */
  maxConnections?: number;
}

/** upstashStore's default maxConnections. */
export const DEFAULT_MAX_CONNECTIONS = 8;
/** The most maxConnections upstashStore accepts. */
export const MAX_CONNECTIONS = 1024;

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

/** A store's options, checked, with its name and secrets. */
export type StoreSettings = UpstashSettings | TcpSettings;
export type UpstashSettings = {
  readonly kind: 'upstash';
  readonly options: Required<UpstashStoreOptions>;
} & Named;
export type TcpSettings = (
  | { readonly kind: 'redis'; readonly options: Resolved<RedisStoreOptions> }
  | { readonly kind: 'cluster'; readonly options: Resolved<ClusterStoreOptions> }
) &
  Named;
interface Named {
  /** For errors and logs: host and port only. */
  readonly name: string;
  /** Redacted from every error: the password, and the one in the URL. */
  readonly secrets: readonly (string | undefined)[];
}

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
/** Every option upstashStore takes, with its default (undefined: none, the option is required). */
const UPSTASH_DEFAULTS: Omit<Required<UpstashStoreOptions>, 'url' | 'token'> & {
  url: string | undefined;
  token: string | undefined;
} = {
  url: undefined,
  token: undefined,
  timeoutMs: DEFAULT_TIMEOUT_MS,
  maxConnections: DEFAULT_MAX_CONNECTIONS,
  base64: false,
};

/**
 * A store's options, checked (one ValidationError naming every problem), with the defaults of those not
 * given, and the store's name and secrets.
 */
export function settingsOf(kind: 'upstash', options: UpstashStoreOptions): UpstashSettings;
export function settingsOf(kind: 'redis', options: RedisStoreOptions): TcpSettings;
export function settingsOf(kind: 'cluster', options: ClusterStoreOptions): TcpSettings;
export function settingsOf(kind: StoreKind, options: AnyOptions): StoreSettings;
export function settingsOf(kind: StoreKind, options: AnyOptions): StoreSettings {
  const check = CHECKS[kind] as unknown as Check;
  const given: { url?: unknown } = (options as { url?: unknown } | undefined) ?? {};
  // Named, and its secrets listed, from what can be read before the check.
  const url = typeof given.url === 'string' && URL.canParse(given.url) ? new URL(given.url) : undefined;
  const { name, secrets } = check.named(given, url);
  // Every field has an entry in the kind's defaults (undefined where it has no default): no other fields.
  const resolved = resolveOptions<object, object>(
    given,
    check.defaults,
    check.problems,
    `${kind}Store options`,
    {},
  );
  return { kind, name, secrets, options: resolved } as StoreSettings;
}

type AnyOptions = UpstashStoreOptions | RedisStoreOptions | ClusterStoreOptions;

/** What CHECKS holds for each kind of store. */
interface Check {
  readonly defaults: object;
  problems(resolved: object): string[];
  named(given: object, url: URL | undefined): Pick<Named, 'name' | 'secrets'>;
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

/** The token is a secret: a problem names it, never shows it. */
function upstashProblems(o: typeof UPSTASH_DEFAULTS): string[] {
  const u = typeof o.url === 'string' ? parseUrl(o.url) : undefined;
  return [
    ...(u && (u.protocol === 'https:' || u.protocol === 'http:') && u.hostname
      ? []
      : [`url must be an http(s) URL with a host, got ${describeUrl(u)}`]),
    ...(typeof o.token === 'string' && o.token.length > 0 ? [] : ['token must be a non-empty string']),
    ...wholeProblems('timeoutMs', o.timeoutMs, 1, MAX_TTL_MS, 'ms'),
    ...wholeProblems('maxConnections', o.maxConnections, 1, MAX_CONNECTIONS),
    ...(typeof o.base64 === 'boolean' ? [] : ['base64 must be true or false']),
  ];
}

/** Per kind of store: its defaults, its problems, and its name and secrets (from unchecked options). */
const CHECKS = {
  upstash: {
    defaults: UPSTASH_DEFAULTS,
    problems: upstashProblems,
    named: (o: UpstashStoreOptions, url: URL | undefined) => ({
      name: `upstash(${url?.host ?? 'invalid-url'})`,
      secrets: [o.token],
    }),
  },
  redis: {
    defaults: REDIS_DEFAULTS,
    problems: redisProblems,
    named: (o: RedisStoreOptions, url: URL | undefined) => ({
      name: `redis(${url ? `${url.hostname}:${url.port || 6379}` : `${o.host ?? '127.0.0.1'}:${o.port ?? 6379}`})`,
      secrets: [o.password, passwordOf(url)],
    }),
  },
  cluster: {
    defaults: CLUSTER_DEFAULTS,
    problems: clusterProblems,
    named: (o: ClusterStoreOptions) => ({ name: clusterName(o.nodes), secrets: [o.password] }),
  },
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
