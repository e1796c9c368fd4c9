import { StoreError } from '../errors.js';
import type { Script } from '../scripts.js';

export type StoreKind = 'upstash' | 'redis' | 'cluster';

export type ScriptArg = string | number;

export interface ScriptCall {
  readonly script: Script;
  readonly keys: readonly string[];
  readonly args: readonly ScriptArg[];
}

/** One result per call of a batch: a call can fail alone (e.g. a wrong-type key) without failing the rest. */
export type CallResult = { ok: true; value: unknown } | { ok: false; error: Error };

/**
 * The only place that knows a Redis client. Scripts run as EVALSHA with an EVAL fallback on NOSCRIPT.
 * Replies are plain RESP2 values: integers as numbers, bulk strings as strings, nil as null, arrays.
 * Failures are StoreError subclasses (StoreUnavailableError, StoreAuthError) with a redacted message.
 */
export interface Store {
  readonly kind: StoreKind;
  /** A name for errors and logs: host and port only, never a token or password. */
  readonly name: string;
  run(script: Script, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown>;
  /** Runs every call in one round trip (REST /pipeline, ioredis pipeline; one per slot group on a cluster). */
  runMany(calls: readonly ScriptCall[]): Promise<CallResult[]>;
  /**
   * For operators (the CLI's `records`), not for handlers: the keys matching a glob pattern, a page at a time,
   * from every master of a cluster. Each page is one SCAN, bounded by timeoutMs. Keys may repeat (SCAN's own
   * guarantee); a key that exists for the whole scan is returned at least once.
   */
  scan?(match: string, count: number): AsyncIterable<readonly string[]>;
  close(): Promise<void>;
}

/** Options every transport shares. */
export interface TransportOptions {
  /**
   * Upper bound of one call as a whole: connecting, a cluster's slot discovery and redirects, EVALSHA and the
   * EVAL after NOSCRIPT. Past it the call fails with StoreUnavailableError (`ambiguous` unless nothing was
   * sent). A TCP connection on which a call timed out is probed (ECHOes queued behind the calls in flight)
   * and closed only if they do not come back in step within timeoutMs; the calls beside it go on.
   * @default 2000
   */
  timeoutMs?: number;
}

export const DEFAULT_TIMEOUT_MS = 2000;

/** `text` as a URL, or undefined where it is not one. */
export function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

const KNOWN_SCHEMES = new Set(['http:', 'https:', 'redis:', 'rediss:']);

/** What an error may say about a URL: its scheme, host and port, never a user, password, path or query. */
export function describeUrl(u: URL | undefined): string {
  if (!u) return 'a value that is not a URL';
  const scheme = KNOWN_SCHEMES.has(u.protocol) ? u.protocol : 'unsupported-scheme:';
  const host = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]*)$/i.test(u.hostname) ? u.hostname : '?';
  return `"${scheme}//${host}${u.port ? `:${u.port}` : ''}"`;
}

// What every transport shares: the NOSCRIPT fallback, one call and a batch of calls.

/** True for the reply a server gives to EVALSHA of a script it has not cached. */
export function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.includes('NOSCRIPT');
}

/** The one EVALSHA-then-EVAL-on-NOSCRIPT routine every transport uses. */
export async function evalWithFallback(
  script: Script,
  keys: readonly string[],
  args: readonly ScriptArg[],
  evalsha: (sha: string, keys: readonly string[], args: readonly ScriptArg[]) => Promise<unknown>,
  evalLua: (lua: string, keys: readonly string[], args: readonly ScriptArg[]) => Promise<unknown>,
): Promise<unknown> {
  try {
    return await evalsha(script.sha1, keys, args);
  } catch (err) {
    if (!isNoScript(err)) throw err;
    return evalLua(script.lua, keys, args);
  }
}

/** Keeps an already-typed StoreError, else wraps with the given mapper. */
export function settle(value: unknown, error: unknown, mapError: (e: unknown) => Error): CallResult {
  if (error) return { ok: false, error: error instanceof StoreError ? error : mapError(error) };
  return { ok: true, value };
}

/**
 * The batch form of evalWithFallback: runs every call as EVALSHA in one round trip, then the calls that got
 * NOSCRIPT once more as EVAL (a second round trip, only after a SCRIPT FLUSH or a new server).
 */
export async function runManyWithFallback(
  calls: readonly ScriptCall[],
  pipeline: (calls: readonly ScriptCall[], useLua: boolean) => Promise<CallResult[]>,
): Promise<CallResult[]> {
  const results = await pipeline(calls, false);
  const missing = results.flatMap((r, i) => (!r.ok && isNoScript(r.error) ? [i] : []));
  if (missing.length > 0) {
    const retried = await pipeline(
      missing.map((i) => calls[i]!),
      true,
    );
    missing.forEach((i, j) => {
      results[i] = retried[j]!;
    });
  }
  return results;
}

/**
 * A store whose code is a chunk of its own: fromEnv() builds its TCP stores this way, so that the REST path
 * never parses the TCP transport. The chunk starts loading when the store is created (at module scope, that
 * is Lambda's init phase); `kind` and `name` are known at once, and a call that comes before the chunk waits
 * for it once, then goes straight to the store.
 */
export function deferredStore(known: { kind: StoreKind; name: string }, load: () => Promise<Store>): Store {
  let loaded: Store | undefined;
  let loading: Promise<Store> | undefined;
  const get = () =>
    (loading ??= load().then(
      (store) => {
        loaded = store;
        return store;
      },
      (err: unknown) => {
        loading = undefined;
        throw err;
      },
    ));
  get().catch(() => undefined); // the first call sees a failure again (and retries the load)
  return {
    kind: known.kind,
    name: known.name,
    run: (script, keys, args) =>
      loaded ? loaded.run(script, keys, args) : get().then((s) => s.run(script, keys, args)),
    runMany: (calls) => (loaded ? loaded.runMany(calls) : get().then((s) => s.runMany(calls))),
    async *scan(match, count) {
      const store = await get();
      if (store.scan) yield* store.scan(match, count);
    },
    async close() {
      if (loading) await (await loading.catch(() => undefined))?.close();
    },
  };
}
