import type { Redis as UpstashRedis } from '@upstash/redis';
import { settingsOf, type UpstashSettings, type UpstashStoreOptions } from './options.js';
import type { Store } from './types.js';
import { clientStore, RequestSlots } from './upstash-client.js';

export { DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS, type UpstashStoreOptions } from './options.js';

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
  return upstashStoreFrom(settingsOf('upstash', options));
}

/** The store of checked options (options.ts settingsOf). */
export function upstashStoreFrom(settings: UpstashSettings): Store {
  const { name, secrets } = settings;
  const { url, token, timeoutMs, maxConnections, base64 } = settings.options;
  const slots = new RequestSlots(maxConnections);
  const origin = new URL(url);
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
    secrets,
    timeoutMs,
    slots,
    async close() {
      (await pending?.catch(() => undefined))?.close();
    },
  });
}
