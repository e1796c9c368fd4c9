import type { Redis as UpstashRedis } from '@upstash/redis';
import { StoreError } from '../errors.js';
import { DEFAULT_TIMEOUT_MS, type Store, type TransportOptions } from './types.js';
import { clientStore } from './upstash-client.js';

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
}

/**
 * A Store over Upstash's REST API through `@upstash/redis`, the one REST client (transport/upstash-client.ts
 * runs the scripts). oncely builds the client on first use around a requester of its own
 * (transport/upstash-http.ts): `node:http(s)` with a keep-alive agent, because the client's default `fetch`
 * costs three times the latency per request (docs/benchmarks.md); raw replies; the read-your-writes sync
 * token; one timeoutMs per call (EVALSHA and the EVAL after NOSCRIPT share it); no retries, so a timed-out
 * write is reported as ambiguous, never silently sent twice. The client and the HTTP code are a chunk of
 * their own, loaded when the store is created: the TCP path never loads them.
 */
export function upstashStore(options: UpstashStoreOptions): Store {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { token } = options;
  let url: URL | undefined;
  try {
    url = new URL(options.url);
  } catch {
    url = undefined;
  }
  const name = `upstash(${url?.host ?? 'invalid-url'})`;
  // The client chunk starts loading now: a store created at module scope parses it during Lambda's init
  // phase, before the first invocation waits for it.
  const loading = import('./upstash-http.js');
  loading.catch(() => undefined);
  let ready: UpstashRedis | undefined;
  let pending: Promise<{ redis: UpstashRedis; close(): void }> | undefined;
  const connect = async () => {
    pending ??= (async () => {
      if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
        throw new StoreError(`${name}: the REST URL must be http(s)`, { store: name, ambiguous: false });
      }
      const { rawClient } = await loading;
      return rawClient(url, token, { name, timeoutMs, base64: options.base64 ?? false });
    })();
    ready = (await pending).redis;
    return ready;
  };
  return clientStore(() => ready ?? connect(), {
    name,
    secrets: [token],
    timeoutMs,
    async close() {
      (await pending?.catch(() => undefined))?.close();
    },
  });
}
