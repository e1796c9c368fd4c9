import type { Redis as UpstashRedis } from '@upstash/redis';
import { invalid } from '../errors.js';
import { resolveOptions } from '../validate.js';
import { settingsOf, type UpstashSettings, type UpstashStoreOptions } from './options.js';
import { type ReplicaOptions, replicaProblems, replicaWait } from './replicas.js';
import { DEFAULT_TIMEOUT_MS, deferredStore, type Store } from './types.js';

export { DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS, type UpstashStoreOptions } from './options.js';

/**
 * A Store over Upstash's REST API through `@upstash/redis`, the one REST client (transport/upstash-client.ts
 * runs the scripts). oncely builds the client on first use around a requester of its own
 * (transport/upstash-http.ts): `node:http(s)` with a keep-alive agent, because the client's default `fetch`
 * costs three times the latency per request (docs/benchmarks.md); raw replies; the read-your-writes sync
 * token; at most `maxConnections` requests in flight, calls queued behind them coalesced; one timeoutMs per
 * call (the wait for a connection, EVALSHA and the EVAL after NOSCRIPT share it); no retries, so a timed-out
 * write is reported as ambiguous, never silently sent twice; a granting write followed, in its own request, by
 * a WAIT for the `replicas` option (transport/upstash-replicas.ts).
 *
 * Options are checked here, when the store is created; the REST store's code (upstash-client.ts with the
 * replica wait, and the client with the HTTP code) is in chunks of their own, loaded from the store's
 * creation on (types.ts deferredStore): the TCP path never loads them, and a store created at module scope
 * parses them during Lambda's init phase, before the first invocation waits for them.
 */
export function upstashStore(options: UpstashStoreOptions): Store {
  return upstashStoreFrom(settingsOf('upstash', options));
}

/** The store of checked options (options.ts settingsOf). */
export function upstashStoreFrom(settings: UpstashSettings): Store {
  // Both chunks load at once: the store's, and the client's that it builds on first use.
  const http = import('./upstash-http.js');
  http.catch(() => undefined);
  return deferredStore(settings, () =>
    import('./upstash-client.js').then((m) => m.requesterStore(settings, http)),
  );
}

/**
 * A Store over an `@upstash/redis` client you already have (its own fetch, retries, timeout `signal` and
 * telemetry settings apply). Create it with `automaticDeserialization: false` — oncely's replies are raw
 * strings and integers — and preferably `retry: false` and `signal: () => AbortSignal.timeout(ms)`.
 *
 * `upstashStore({ url, token })` runs the same code on a client oncely builds itself, over a keep-alive
 * `node:http(s)` requester with per-request timeouts and no retries. Use this one to share a client your
 * code already configures. The replica wait (`replicas`, `replicaTimeoutMs`: transport/replicas.ts) works
 * as on upstashStore; replicaTimeoutMs is at most 1999 ms here (give the client's own timeout more).
 *
 * The client and the options are checked here; the store's code (upstash-client.ts) loads from now on, as
 * upstashStore's does.
 */
export function upstashClientStore(
  redis: UpstashRedis,
  options: { name?: string } & ReplicaOptions = {},
): Store {
  const opts = (redis as unknown as { opts?: { automaticDeserialization?: boolean } }).opts;
  if (typeof redis?.evalsha !== 'function' || typeof redis.pipeline !== 'function') {
    throw invalid(['redis must be an @upstash/redis Redis instance'], 'upstashClientStore');
  }
  if (opts?.automaticDeserialization !== false) {
    throw invalid(
      ['create the @upstash/redis client with automaticDeserialization: false (oncely reads raw replies)'],
      'upstashClientStore',
    );
  }
  const { name, ...wait } = resolveOptions(
    options,
    { name: 'upstash(client)' },
    (o) => [
      ...(typeof o.name === 'string' && o.name !== '' ? [] : ['name must be a non-empty string']),
      ...replicaProblems(o, DEFAULT_TIMEOUT_MS),
    ],
    'upstashClientStore options',
    { replicas: true, replicaTimeoutMs: true },
  );
  const replicas = replicaWait(wait, DEFAULT_TIMEOUT_MS);
  return deferredStore({ kind: 'upstash', name }, () =>
    import('./upstash-client.js').then((m) => m.clientStore(() => redis, { name, replicas })),
  );
}

/** One call of a store with a timeoutMs: EVALSHA and the EVAL after NOSCRIPT share its deadline. */
export interface CallDeadline {
  /** When the call was made (performance.now()); for a batch, when its oldest call was. */
  readonly startedAt: number;
  /** The store took a request slot for the call's first request (RequestSlots); the requester uses it. */
  holdsSlot?: boolean;
}

/**
 * The call a request belongs to, for oncely's own requester (upstash-http.ts): each request, waiting for a
 * connection included, takes at most what is left of `startedAt + timeoutMs`, so the time a call waits to be
 * sent, its EVALSHA and the EVAL after NOSCRIPT together take at most one timeoutMs. (Loading the client,
 * once per process and at init when the store is created at module scope, is not counted.) The client passes no per-call option through to its
 * requester, but it calls the requester synchronously from the command (Command.exec and Pipeline.exec call
 * `client.request` before their first await), so `current` is set around that call only (sendWithin). Not an
 * AsyncLocalStorage: on Node 20 and 22 its first run() turns on promise hooks for the whole process, which
 * slows every promise of the function that uses oncely, REST or not.
 */
// Here, on the lock path, rather than in upstash-client.ts: both REST chunks (the store's, the client's)
// share it without one of them loading the other.
export const callDeadline: { current: CallDeadline | undefined } = { current: undefined };
