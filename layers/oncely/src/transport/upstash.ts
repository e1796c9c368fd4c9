import type { Redis as UpstashRedis } from '@upstash/redis';
import { MAX_TTL_MS, resolveOptions, wholeProblems } from '../validate.js';
import { DEFAULT_TIMEOUT_MS, describeUrl, parseUrl, type Store, type TransportOptions } from './types.js';
import { clientStore, RequestSlots } from './upstash-client.js';

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

/**
 * A Store over Upstash's REST API through `@upstash/redis`, the one REST client (transport/upstash-client.ts
 * runs the scripts). oncely builds the client on first use around a requester of its own
 * (transport/upstash-http.ts): `node:http(s)` with a keep-alive agent, because the client's default `fetch`
 * costs three times the latency per request (docs/benchmarks.md); raw replies; the read-your-writes sync
 * token; at most `maxConnections` requests in flight, calls queued behind them coalesced; one timeoutMs per
 * call (the wait for a connection, EVALSHA and the EVAL after NOSCRIPT share it); no retries, so a timed-out
 * write is reported as ambiguous, never silently sent twice. The client and the HTTP code are a chunk of
 * their own, loaded when the store is created: the TCP path never loads them.
 */
export function upstashStore(options: UpstashStoreOptions): Store {
  const { url, token, timeoutMs, maxConnections, base64 } = resolveOptions(
    options,
    DEFAULTS,
    upstashProblems,
    'upstashStore options',
  );
  const slots = new RequestSlots(maxConnections);
  const origin = new URL(url);
  const name = `upstash(${origin.host})`;
  // The client chunk starts loading now: a store created at module scope parses it during Lambda's init
  // phase, before the first invocation waits for it.
  const loading = import('./upstash-http.js');
  loading.catch(() => undefined);
  let ready: UpstashRedis | undefined;
  let pending: Promise<{ redis: UpstashRedis; close(): void }> | undefined;
  const connect = async () => {
    pending ??= loading.then(({ rawClient }) => rawClient(origin, token, slots, { name, timeoutMs, base64 }));
    ready = (await pending).redis;
    return ready;
  };
  return clientStore(() => ready ?? connect(), {
    name,
    secrets: [token],
    timeoutMs,
    slots,
    async close() {
      (await pending?.catch(() => undefined))?.close();
    },
  });
}

/** Every option upstashStore takes, with its default (undefined: none, the option is required). */
const DEFAULTS: Omit<UpstashStoreOptions, 'url' | 'token'> & {
  url: string | undefined;
  token: string | undefined;
  timeoutMs: number;
  maxConnections: number;
  base64: boolean;
} = {
  url: undefined,
  token: undefined,
  timeoutMs: DEFAULT_TIMEOUT_MS,
  maxConnections: DEFAULT_MAX_CONNECTIONS,
  base64: false,
};

/** The token is a secret: a problem names it, never shows it. */
function upstashProblems(o: typeof DEFAULTS): string[] {
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
