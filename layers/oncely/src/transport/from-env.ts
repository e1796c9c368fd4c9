import { ConfigError, redact } from '../errors.js';
import { clusterStore, redisStore } from './ioredis.js';
import type { Store } from './types.js';
import { upstashStore } from './upstash.js';

export type StoreConfig =
  | { kind: 'upstash'; url: string; token: string; timeoutMs?: number }
  | {
      kind: 'cluster';
      nodes: { host: string; port: number }[];
      username?: string;
      password?: string;
      tls?: boolean;
      timeoutMs?: number;
    }
  | { kind: 'redis'; url: string; username?: string; password?: string; tls?: boolean; timeoutMs?: number };

type Env = Record<string, string | undefined>;

const MAX_TIMEOUT_MS = 60_000;

/**
 * Reads the store configuration from the environment, checking everything at once; throws one ConfigError
 * naming every problem. Values of secrets never appear in the error.
 *
 * - `UPSTASH_REDIS_REST_URL` + `UPSTASH_REDIS_REST_TOKEN` → REST (Upstash, or the local gateway)
 * - `ONCELY_REDIS_CLUSTER_NODES` (`host:port,host:port`) → Redis Cluster over TCP
 * - `ONCELY_REDIS_URL` (`redis://` or `rediss://`) → standalone Redis over TCP
 * - shared: `ONCELY_REDIS_USERNAME`, `ONCELY_REDIS_PASSWORD`, `ONCELY_REDIS_TLS` (true/false), `ONCELY_TIMEOUT_MS`
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
  const secrets = [restToken, password];

  let timeoutMs: number | undefined;
  const timeoutText = get('ONCELY_TIMEOUT_MS');
  if (timeoutText !== undefined) {
    timeoutMs = Number(timeoutText);
    if (!/^\d+$/.test(timeoutText) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) {
      problems.push(`ONCELY_TIMEOUT_MS must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}`);
    }
  }
  let tls: boolean | undefined;
  const tlsText = get('ONCELY_REDIS_TLS');
  if (tlsText !== undefined) {
    if (/^(true|1|yes)$/i.test(tlsText)) tls = true;
    else if (/^(false|0|no)$/i.test(tlsText)) tls = false;
    else problems.push('ONCELY_REDIS_TLS must be true or false');
  }

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
      if (!u || (u.protocol !== 'https:' && u.protocol !== 'http:')) {
        problems.push(`UPSTASH_REDIS_REST_URL must be an http(s) URL, got "${redact(restUrl, secrets)}"`);
      } else if (u.username || u.password) {
        problems.push(
          'UPSTASH_REDIS_REST_URL must not carry credentials: put the token in UPSTASH_REDIS_REST_TOKEN',
        );
      }
    }
    if (restToken && /\s/.test(restToken)) problems.push('UPSTASH_REDIS_REST_TOKEN contains whitespace');
    if (restUrl && restToken) config = { kind: 'upstash', url: restUrl, token: restToken, timeoutMs };
  }
  if (nodesText) {
    const nodes: { host: string; port: number }[] = [];
    for (const part of nodesText.split(',').map((s) => s.trim())) {
      const m = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(part);
      const port = m ? Number(m[2]) : 0;
      if (!m || port < 1 || port > 65535) {
        problems.push(`ONCELY_REDIS_CLUSTER_NODES entry "${redact(part, secrets)}" is not host:port`);
      } else nodes.push({ host: m[1]!.replace(/^\[|\]$/g, ''), port });
    }
    config = { kind: 'cluster', nodes, username, password, tls, timeoutMs };
  }
  if (redisUrl) {
    const u = parseUrl(redisUrl);
    if (!u || (u.protocol !== 'redis:' && u.protocol !== 'rediss:')) {
      problems.push(
        `ONCELY_REDIS_URL must be a redis:// or rediss:// URL, got "${redact(redisUrl, secrets)}"`,
      );
    }
    config = {
      kind: 'redis',
      url: redisUrl,
      username,
      password,
      tls: tls ?? (u?.protocol === 'rediss:' ? true : undefined),
      timeoutMs,
    };
  }
  if (problems.length > 0 || !config) throw new ConfigError(problems);
  return config;
}

function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

/** Builds a Store from a StoreConfig (see configFromEnv). */
export function storeFromConfig(config: StoreConfig): Store {
  switch (config.kind) {
    case 'upstash':
      return upstashStore(config);
    case 'cluster':
      return clusterStore(config);
    case 'redis':
      return redisStore(config);
  }
}

/** `storeFromConfig(configFromEnv(env))`: call once at module scope (cold start) and reuse the store. */
export function fromEnv(env: Env = process.env): Store {
  return storeFromConfig(configFromEnv(env));
}
