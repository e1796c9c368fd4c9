import { badConfig } from '../errors.js';
import { isWhole } from '../validate.js';
import { settingsOf } from './options.js';
import { MAX_REPLICAS } from './replicas.js';
import type { fromEnvAsync as FromEnvAsync, loadSecrets as LoadSecrets } from './ssm.js';
import { DEFAULT_TIMEOUT_MS, deferredStore, describeUrl, parseUrl, type Store } from './types.js';
import { upstashStoreFrom } from './upstash.js';

export type StoreConfig =
  | ({ kind: 'upstash' } & UpstashConfig)
  | ({ kind: 'cluster' } & ClusterConfig)
  | ({ kind: 'redis' } & RedisConfig);

type UpstashConfig = {
  url: string;
  token: string;
  timeoutMs?: number;
  replicas?: number | 'auto';
  replicaTimeoutMs?: number;
};
type ClusterConfig = { nodes: { host: string; port: number }[] } & TcpConfig;
type RedisConfig = { url: string } & TcpConfig;

/** What both TCP transports take from the environment besides where to connect. */
interface TcpConfig {
  username?: string;
  password?: string;
  tls?: boolean;
  timeoutMs?: number;
  replicas?: number | 'auto';
  replicaTimeoutMs?: number;
}

type Env = Record<string, string | undefined>;

const MAX_TIMEOUT_MS = 60_000;

/**
 * Reads the store configuration from the environment, checking everything at once; throws one ConfigError
 * naming every problem. Values of secrets never appear in the error.
 *
 * - `UPSTASH_REDIS_REST_URL` + `UPSTASH_REDIS_REST_TOKEN` → REST (Upstash, or the local gateway)
 * - `ONCELY_REDIS_CLUSTER_NODES` (`host:port,host:port`) → Redis Cluster over TCP
 * - `ONCELY_REDIS_URL` (`redis://` or `rediss://`) → standalone Redis over TCP
 * - shared: `ONCELY_REDIS_USERNAME`, `ONCELY_REDIS_PASSWORD`, `ONCELY_REDIS_TLS` (a flag, see envFlag),
 *   `ONCELY_TIMEOUT_MS`, `ONCELY_REDIS_REPLICAS` (`auto` or a whole number) and
 *   `ONCELY_REDIS_REPLICA_TIMEOUT_MS` (the replica wait, every transport: transport/replicas.ts)
 *
 * A rejected value is never echoed whole: a URL shows only its scheme, host and port (no user, password, path
 * or query), a cluster entry only its position, so a secret pasted into the wrong place stays out of the error.
 */
export function configFromEnv(env: Env = process.env): StoreConfig {
  const problems: string[] = [];
  const get = (k: string) => {
    const v = env[k]?.trim();
    return v ? v : undefined;
  };
  const restUrl = get('UPSTASH_REDIS_REST_URL');
  const restToken = get('UPSTASH_REDIS_REST_TOKEN');
  const nodesText = get('ONCELY_REDIS_CLUSTER_NODES');
  const redisUrl = get('ONCELY_REDIS_URL');
  const username = get('ONCELY_REDIS_USERNAME');
  const password = env.ONCELY_REDIS_PASSWORD || undefined;
  // `<NAME>_SSM_PARAMETER` names an SSM parameter that only fromEnvAsync() reads (transport/ssm.ts).
  for (const name of SSM_READABLE) {
    if (get(`${name}_SSM_PARAMETER`)) {
      problems.push(
        `${name}_SSM_PARAMETER names an SSM parameter, which fromEnv() cannot read: use await fromEnvAsync()`,
      );
    }
  }

  let timeoutMs: number | undefined;
  const timeoutText = get('ONCELY_TIMEOUT_MS');
  if (timeoutText !== undefined) {
    timeoutMs = Number(timeoutText);
    if (!/^\d+$/.test(timeoutText) || !isWhole(timeoutMs, 1, MAX_TIMEOUT_MS)) {
      problems.push(`ONCELY_TIMEOUT_MS must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}`);
    }
  }
  // The replica wait (every transport): `auto` or a whole number of replicas, and WAIT's bound.
  let replicas: number | 'auto' | undefined;
  const replicasText = get('ONCELY_REDIS_REPLICAS');
  if (replicasText !== undefined) {
    replicas = replicasText.toLowerCase() === 'auto' ? 'auto' : Number(replicasText);
    if (replicas !== 'auto' && (!/^\d+$/.test(replicasText) || !isWhole(replicas, 0, MAX_REPLICAS))) {
      problems.push(`ONCELY_REDIS_REPLICAS must be auto or a whole number from 0 to ${MAX_REPLICAS}`);
    }
  }
  let replicaTimeoutMs: number | undefined;
  const replicaTimeoutText = get('ONCELY_REDIS_REPLICA_TIMEOUT_MS');
  if (replicaTimeoutText !== undefined) {
    replicaTimeoutMs = Number(replicaTimeoutText);
    const most = (timeoutMs !== undefined && timeoutMs >= 2 ? timeoutMs : DEFAULT_TIMEOUT_MS) - 1;
    if (!/^\d+$/.test(replicaTimeoutText) || !isWhole(replicaTimeoutMs, 1, most)) {
      problems.push(
        `ONCELY_REDIS_REPLICA_TIMEOUT_MS must be a whole number of milliseconds from 1 to ${most} (below ONCELY_TIMEOUT_MS)`,
      );
    }
  }
  const tlsText = get('ONCELY_REDIS_TLS');
  const tls = tlsText === undefined ? undefined : parseFlag(tlsText);
  if (tlsText !== undefined && tls === undefined) problems.push(`ONCELY_REDIS_TLS ${FLAG_SPELLINGS}`);

  const chosen = [
    restUrl || restToken ? 'UPSTASH_REDIS_REST_URL' : '',
    nodesText ? 'ONCELY_REDIS_CLUSTER_NODES' : '',
    redisUrl ? 'ONCELY_REDIS_URL' : '',
  ].filter(Boolean);
  if (chosen.length === 0) {
    problems.push(
      'no store configured: set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN (REST), ONCELY_REDIS_CLUSTER_NODES (cluster) or ONCELY_REDIS_URL (standalone)',
    );
  } else if (chosen.length > 1) {
    problems.push(`set only one store, found ${chosen.join(', ')}`);
  }

  let config: StoreConfig | undefined;
  if (restUrl || restToken) {
    if (!restUrl) problems.push('UPSTASH_REDIS_REST_URL is missing (UPSTASH_REDIS_REST_TOKEN is set)');
    if (!restToken) problems.push('UPSTASH_REDIS_REST_TOKEN is missing (UPSTASH_REDIS_REST_URL is set)');
    if (restUrl) {
      const u = parseUrl(restUrl);
      if (!u || (u.protocol !== 'https:' && u.protocol !== 'http:') || !u.hostname) {
        problems.push(`UPSTASH_REDIS_REST_URL must be an http(s) URL with a host, got ${describeUrl(u)}`);
      } else if (u.username || u.password) {
        problems.push(
          'UPSTASH_REDIS_REST_URL must not carry credentials: put the token in UPSTASH_REDIS_REST_TOKEN',
        );
      } else if (u.search) {
        problems.push(
          'UPSTASH_REDIS_REST_URL must not carry a query: put the token in UPSTASH_REDIS_REST_TOKEN',
        );
      }
    }
    if (restToken && /\s/.test(restToken)) problems.push('UPSTASH_REDIS_REST_TOKEN contains whitespace');
    if (restUrl && restToken)
      config = { kind: 'upstash', url: restUrl, token: restToken, timeoutMs, replicas, replicaTimeoutMs };
  }
  if (nodesText) {
    const nodes: { host: string; port: number }[] = [];
    const parts = nodesText.split(',').map((p) => p.trim());
    parts.forEach((part, i) => {
      const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(part);
      const port = m ? Number(m[2]) : 0;
      if (m && port >= 1 && port <= 65535) {
        nodes.push({ host: m[1]!.replace(/^\[|\]$/g, ''), port });
        return;
      }
      const which = `ONCELY_REDIS_CLUSTER_NODES entry ${i + 1} of ${parts.length}`;
      if (part.includes('@')) {
        problems.push(
          `${which} carries credentials: set ONCELY_REDIS_USERNAME and ONCELY_REDIS_PASSWORD instead`,
        );
      } else if (m) problems.push(`${which} has a port out of range (1 to 65535)`);
      else problems.push(`${which} is not host:port`);
    });
    config = { kind: 'cluster', nodes, username, password, tls, timeoutMs, replicas, replicaTimeoutMs };
  }
  if (redisUrl) {
    const u = parseUrl(redisUrl);
    const secure = u?.protocol === 'rediss:';
    if (!u || (u.protocol !== 'redis:' && !secure) || !u.hostname) {
      problems.push(
        `ONCELY_REDIS_URL must be a redis:// or rediss:// URL with a host, got ${describeUrl(u)}`,
      );
    } else if (!/^\/?\d*$/.test(u.pathname)) {
      problems.push(`ONCELY_REDIS_URL path must be a database number, got ${describeUrl(u)}/…`);
    }
    if (secure && tls === false) {
      problems.push('ONCELY_REDIS_URL is rediss:// (TLS) but ONCELY_REDIS_TLS turns TLS off: pick one');
    }
    config = {
      kind: 'redis',
      url: redisUrl,
      username,
      password,
      tls: tls ?? (secure ? true : undefined),
      timeoutMs,
      replicas,
      replicaTimeoutMs,
    };
  }
  if (problems.length > 0 || !config) throw badConfig(problems);
  return config;
}

/** The store variables whose value may come from SSM at run time (`<NAME>_SSM_PARAMETER`). */
const SSM_READABLE = [
  'UPSTASH_REDIS_REST_URL',
  'UPSTASH_REDIS_REST_TOKEN',
  'ONCELY_REDIS_URL',
  'ONCELY_REDIS_CLUSTER_NODES',
  'ONCELY_REDIS_USERNAME',
  'ONCELY_REDIS_PASSWORD',
];

const FLAG_SPELLINGS = 'must be true or false (also 1/0, yes/no, any case)';

/** `true`/`1`/`yes` → true, `false`/`0`/`no` → false (any case, spaces trimmed); anything else → undefined. */
export function parseFlag(text: string): boolean | undefined {
  const t = text.trim().toLowerCase();
  if (t === 'true' || t === '1' || t === 'yes') return true;
  if (t === 'false' || t === '0' || t === 'no') return false;
  return undefined;
}

/**
 * A boolean environment variable (`ONCELY_DISABLED`, `ONCELY_REDIS_TLS`): unset or empty → `fallback`; one of
 * the spellings of parseFlag → its value; anything else → ConfigError (a typo never silently means false).
 */
export function envFlag(name: string, env: Env = process.env, fallback = false): boolean {
  const text = env[name]?.trim();
  if (!text) return fallback;
  const value = parseFlag(text);
  if (value === undefined) throw badConfig([`${name} ${FLAG_SPELLINGS}`]);
  return value;
}

/** `storeFromConfig(configFromEnv(env))`: call once at module scope (cold start) and reuse the store. */
export function fromEnv(env: Env = process.env): Store {
  const config = configFromEnv(env);
  return storeFromConfig(config);
}

/**
 * Builds a Store from a StoreConfig (see configFromEnv); a ValidationError if the config is wrong. A TCP
 * store's code is a chunk of its own, loaded in the background (types.ts deferredStore): the REST path never
 * parses it.
 */
export function storeFromConfig(config: StoreConfig): Store {
  const options = optionsOf(config) as UpstashConfig | RedisConfig | ClusterConfig;
  const settings = settingsOf(config.kind, options);
  if (settings.kind === 'upstash') return upstashStoreFrom(settings);
  return deferredStore(settings, () => import('./tcp.js').then((m) => m.tcpStoreFrom(settings)));
}

/** A config without its `kind`: the options of its kind of store. */
function optionsOf(config: StoreConfig): Omit<StoreConfig, 'kind'> {
  const options: Partial<StoreConfig> = { ...config };
  delete options.kind;
  return options;
}

/**
 * loadSecrets and fromEnvAsync as the entry points export them: ssm.ts loads on the first call (both are
 * async, so nothing a caller sees changes), and a function that takes its store from fromEnv() or options
 * never loads it. Here rather than in a module of their own: a module reached by its own set of entry points
 * is a chunk of its own in the layer, one more file for every cold start to open.
 */
export const loadSecrets: typeof LoadSecrets = async (...args) =>
  (await import('./ssm.js')).loadSecrets(...args);

export const fromEnvAsync: typeof FromEnvAsync = async (...args) =>
  (await import('./ssm.js')).fromEnvAsync(...args);
