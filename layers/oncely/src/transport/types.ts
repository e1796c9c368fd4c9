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
