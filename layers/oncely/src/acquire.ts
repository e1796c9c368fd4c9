/**
 * What a single-store Lock and a Redlock share: acquire options and their validation, the owner token, and the
 * retry loop of a blocking acquire.
 */
import { randomFillSync } from 'node:crypto';
import { type Clock, monotonicClock, sleep } from './clock.js';
import {
  type AttemptRecord,
  describeNodes,
  LockNotAcquiredError,
  MAX_ATTEMPT_RECORDS,
  type NodeOutcome,
  StoreError,
} from './errors.js';
import type { Lease } from './lease.js';
import type { Store } from './transport/types.js';
import {
  check,
  type Fields,
  fenceGraceProblems,
  fieldsFit,
  fnProblems,
  isWhole,
  MAX_ATTEMPTS,
  MAX_TTL_MS,
  MIN_TTL_MS,
  prefixProblems,
  resolveOptions,
  ttlProblems,
  unknownProblems,
  wholeProblems,
} from './validate.js';

export interface RetryOptions {
  /**
   * Attempts in all, the first included. `1` fails fast.
   * @default 10
   */
  attempts?: number;
  /**
   * Base delay between attempts (shortened to the holder's remaining TTL when that is sooner).
   * @default 200
   */
  delayMs?: number;
  /**
   * Random extra delay, uniform in [0, jitterMs), so contenders do not retry in lockstep.
   * @default 100
   */
  jitterMs?: number;
  /**
   * Give up once this much time has passed since the first attempt (no attempt starts after it).
   * @default no limit beyond `attempts`
   */
  maxWaitMs?: number;
}

export interface AcquireOptions {
  /** Lease time in milliseconds: the key expires by itself after this long unless extended. */
  ttlMs: number;
  /** How to wait for a held lock. */
  retry?: RetryOptions;
  /** Aborts the wait (the pending attempt is undone if it succeeded). */
  signal?: AbortSignal;
}

export interface UsingOptions extends AcquireOptions {
  /**
   * Extend when this much validity is left.
   * @default half of ttlMs
   */
  extendBeforeMs?: number;
  /** Called with errors that using() does not throw: a failed release, a failed background extension. */
  onError?: (error: Error) => void;
}

export const DEFAULT_RETRY: Readonly<Required<Omit<RetryOptions, 'maxWaitMs'>>> = Object.freeze({
  attempts: 10,
  delayMs: 200,
  jitterMs: 100,
});
export const MAX_KEY_BYTES = 512;
/** How long a fence counter outlives the lease that last used it, by default (15 minutes). */
export const DEFAULT_FENCE_GRACE_MS = 15 * 60_000;
/** The largest fixed drift allowance a lock takes. */
const MAX_DRIFT_MS = 60_000;

/** A lock's key layout, the same on a single store and on every node of a Redlock: the owner token's key. */
export const lockKeyOf = (prefix: string, key: string): string => `${prefix}:{${key}}:lock`;
/** The fence counter's key, beside the lock's (one hash tag: one slot, one script call). */
export const fenceKeyOf = (prefix: string, key: string): string => `${prefix}:{${key}}:fence`;
/** An election's record of who holds the lock, beside it (leader.ts). */
export const leaderKeyOf = (prefix: string, key: string): string => `${prefix}:{${key}}:leader`;

/** The options every lock (a single-store Lock, a Redlock) takes, and their defaults. */
export interface LockBaseOptions {
  /**
   * Prefix of every key: `<prefix>:{<name>}:lock` and `:fence` (on every node of a Redlock).
   * @default 'oncely'
   */
  prefix?: string;
  /**
   * Clock drift allowance as a fraction of the TTL; validity = ttl − elapsed − (ttl·driftFactor + driftMs).
   * @default 0.01
   */
  driftFactor?: number;
  /**
   * Fixed part of the drift allowance.
   * @default 2
   */
  driftMs?: number;
  /** The monotonic clock lease validity is measured on. @default performance.now */
  clock?: Clock;
  /**
   * How long a fence counter outlives the lease that last used it. Past it the counter expires (no key is left
   * per lock name) and the next holder's fence starts from the store's clock, which is above every fence the
   * counter handed out as long as that clock has not gone back by more than this: see docs/safety.md.
   * @default 900_000 (15 minutes)
   */
  fenceGraceMs?: number;
  /**
   * Wall-clock milliseconds since the epoch: the fence's time floor where a store refuses TIME inside a script
   * (every Redis ≥ 5 allows it; the store's own clock is then used). A Redlock floors every node at it, so that
   * the nodes of a quorum hand out the same fence: see docs/redlock.md.
   * @default Date.now
   */
  wallClock?: () => number;
}

export const LOCK_DEFAULTS: Readonly<Required<LockBaseOptions>> = Object.freeze({
  prefix: 'oncely',
  driftFactor: 0.01,
  driftMs: 2,
  clock: monotonicClock,
  fenceGraceMs: DEFAULT_FENCE_GRACE_MS,
  wallClock: Date.now,
});

/** What is wrong with a lock's base options (resolved over LOCK_DEFAULTS). */
export function lockOptionProblems(o: Required<LockBaseOptions>): string[] {
  const p = [...prefixProblems('prefix', o.prefix), ...fenceGraceProblems(o.fenceGraceMs)];
  if (typeof o.driftFactor !== 'number' || !(o.driftFactor >= 0 && o.driftFactor < 0.5))
    p.push(`driftFactor must be a number in [0, 0.5), got ${String(o.driftFactor)}`);
  p.push(...wholeProblems('driftMs', o.driftMs, 0, MAX_DRIFT_MS, 'ms'));
  p.push(...fnProblems('wallClock', o.wallClock));
  return p;
}

/** The drift allowance for a TTL: ttl·driftFactor + driftMs. */
export function driftOf(o: Required<LockBaseOptions>): (ttlMs: number) => number {
  return (ttlMs) => Math.round(ttlMs * o.driftFactor) + o.driftMs;
}

/** keyProblems(key) is empty: the check of every call, without allocating (a UTF-16 unit is ≤ 3 UTF-8 bytes). */
export function keyFits(key: unknown): key is string {
  return (
    typeof key === 'string' &&
    key.length > 0 &&
    (key.length * 3 <= MAX_KEY_BYTES || Buffer.byteLength(key, 'utf8') <= MAX_KEY_BYTES)
  );
}

export function keyProblems(key: unknown): string[] {
  if (typeof key !== 'string') return [`key must be a string, got ${typeof key}`];
  if (key.length === 0) return ['key must not be empty'];
  const bytes = Buffer.byteLength(key, 'utf8');
  return bytes > MAX_KEY_BYTES ? [`key is ${bytes} bytes, the limit is ${MAX_KEY_BYTES}`] : [];
}

const RETRY_FIELDS: Fields<RetryOptions> = { attempts: true, delayMs: true, jitterMs: true, maxWaitMs: true };
/** acquire() takes using()'s options too (using() hands them on). */
const USING_FIELDS: Fields<UsingOptions> = {
  ttlMs: true,
  retry: true,
  signal: true,
  extendBeforeMs: true,
  onError: true,
};

const TRY_FIELDS = { ttlMs: true } as const;

/** tryAcquire()'s check of every call: allocates nothing when the key and options are good. */
export function checkTry(key: unknown, options: { ttlMs: number } | undefined): void {
  if (keyFits(key) && isWhole(options?.ttlMs, MIN_TTL_MS, MAX_TTL_MS) && fieldsFit(options, TRY_FIELDS))
    return;
  check(
    [...keyProblems(key), ...ttlProblems(options?.ttlMs), ...unknownProblems(options, TRY_FIELDS)],
    'tryAcquire',
  );
}

/** Everything wrong with the options of an acquire() or a using(), besides the key. */
export function acquireProblems(options: UsingOptions | undefined): string[] {
  return [
    ...unknownProblems(options, USING_FIELDS),
    ...ttlProblems(options?.ttlMs),
    ...retryProblems(options?.retry),
  ];
}

export function retryProblems(retry: RetryOptions | undefined): string[] {
  if (retry === undefined) return [];
  if (typeof retry !== 'object' || retry === null) return ['retry must be an object'];
  const p = unknownProblems(retry, RETRY_FIELDS).map((u) => `retry: ${u}`);
  if (retry.attempts !== undefined && !isWhole(retry.attempts, 1, MAX_ATTEMPTS))
    p.push(`retry.attempts must be a whole number from 1 to ${MAX_ATTEMPTS}, got ${String(retry.attempts)}`);
  for (const f of ['delayMs', 'jitterMs', 'maxWaitMs'] as const) {
    const v = retry[f];
    if (v !== undefined && !isWhole(v, 0, MAX_TTL_MS))
      p.push(`retry.${f} must be a whole number of milliseconds from 0 to ${MAX_TTL_MS}, got ${String(v)}`);
  }
  return p;
}

/** Tokens drawn per CSPRNG call: one draw of up to 1 KiB costs what a draw of 16 bytes does (about 1.4 µs). */
const POOLED_TOKENS = 64;
/**
 * A pool older than this (wall clock) is dropped unused. A process restored from a snapshot (Lambda SnapStart)
 * or a clock stepped back never hands out bytes it drew before: a restore comes long after its snapshot.
 */
export const TOKEN_POOL_MAX_AGE_MS = 100;
const tokenPool = Buffer.alloc(16 * POOLED_TOKENS);
let pooledAt = Number.NEGATIVE_INFINITY;
let pooled = tokenPool.length;

/**
 * 128 random bits (node:crypto), base64url. Each token is 16 bytes of its own, read once from a pool drawn from
 * the CSPRNG in one call for 64 tokens (a draw per token was the largest part of oncely's own CPU per lock pair,
 * and node's randomUUID pools the same way), and never older than TOKEN_POOL_MAX_AGE_MS.
 *
 * Why the age bound: a pool captured in a snapshot would hand two restored clones the same tokens, and acquire
 * treats "the lock holds my token" as "already mine". OpenSSL's own generator state is captured too and
 * reseeds on a fork (a new pid) or on its minutes-long time interval, not on a restore, so a fresh draw per
 * token would not be safer: the bound keeps the pool to bytes drawn within the last 100 ms.
 */
export function newToken(): string {
  const now = Date.now();
  if (pooled === tokenPool.length || now - pooledAt > TOKEN_POOL_MAX_AGE_MS || now < pooledAt) {
    randomFillSync(tokenPool);
    pooledAt = now;
    pooled = 0;
  }
  const token = tokenPool.toString('base64url', pooled, pooled + 16);
  pooled += 16;
  return token;
}

/**
 * What a single-store lock and a Redlock both offer, and where their locks live (an election reads it): the
 * stores, how many of them must agree, and the key layout, the same on every store.
 */
export interface Locker {
  tryAcquire(key: string, options: { ttlMs: number }): Promise<Lease | null>;
  acquire(key: string, options: AcquireOptions): Promise<Lease>;
  using<T>(key: string, fn: (lease: Lease) => Promise<T>, options: UsingOptions): Promise<T>;
  /** One store for a Lock; every node of a Redlock. */
  readonly stores: readonly Store[];
  /** How many of `stores` must agree: 1 for a Lock, the quorum of a Redlock. */
  readonly quorum: number;
  /** How long a fence counter (and a leader's record) outlives its lease: the `fenceGraceMs` option. */
  readonly fenceGraceMs: number;
  /** The key of `key`'s owner token. Every key of one lock shares the hash tag `{key}`. */
  keyOf(key: string): string;
  /** The key of `key`'s fence counter. */
  fenceKeyOf(key: string): string;
  /** The key of an election's record of who holds `key` (leader.ts). */
  leaderKeyOf(key: string): string;
}

// ------------------------------------------------------------------------------------------ the retry loop

/** One attempt's outcome: a lease, or "held" with how long the holder has left (if known). */
export type Attempt =
  | { lease: Lease }
  | { lease: null; retryAfterMs?: number; error?: Error; nodes?: readonly NodeOutcome[] };

/** A store's part in a failed attempt: another owner holds the lock (with its remaining ms, when known). */
export function takenOn(store: string, pttl: number, key?: string): NodeOutcome {
  return {
    node: store,
    status: 'taken',
    ...(pttl > 0 ? { holderTtlMs: pttl } : {}),
    ...(key !== undefined ? { key } : {}),
  };
}

/** A store's part in a failed attempt: it failed (the cause is a StoreError). */
export function failedOn(store: string, cause: Error, key?: string): NodeOutcome {
  return { node: store, status: 'unreachable', cause, ...(key !== undefined ? { key } : {}) };
}

/**
 * Calls `attempt` until it yields a lease, bounded by retry.attempts, retry.maxWaitMs and the signal.
 * Throws LockNotAcquiredError; its cause is the last store error when the last attempt failed on the store.
 */
export async function acquireLoop(
  key: string,
  attempt: () => Promise<Attempt>,
  options: AcquireOptions,
  clock: Clock,
): Promise<Lease> {
  // Checked by the caller (acquireProblems); a field given as undefined takes its default.
  const retry = resolveOptions(options.retry, DEFAULT_RETRY, () => [], 'retry', RETRY_FIELDS);
  const { signal } = options;
  const started = clock.now();
  let lastError: Error | undefined;
  const history: AttemptRecord[] = [];
  /** The error for giving up after `n` attempts: the history, and the last attempt's nodes in the message. */
  const giveUp = (n: number, why: string, cause: unknown) => {
    const last = history.at(-1);
    const nodes = last && last.nodes.length > 0 ? `; last attempt: ${describeNodes(last.nodes)}` : '';
    return new LockNotAcquiredError(`lock "${key}" ${why}${nodes}`, {
      key,
      attempts: n,
      ...(cause !== undefined ? { cause } : {}),
      history,
    });
  };
  for (let n = 1; ; n++) {
    if (signal?.aborted) throw giveUp(n - 1, `acquire aborted after ${n - 1} attempt(s)`, signal.reason);
    const atMs = Math.round(clock.now() - started);
    const result = await attempt();
    if (result.lease) {
      if (signal?.aborted) {
        await result.lease.release().catch(() => undefined);
        throw giveUp(n, `acquire aborted after ${n} attempt(s)`, signal.reason);
      }
      return result.lease;
    }
    history.push({ attempt: n, atMs, nodes: result.nodes ?? [] });
    if (history.length > MAX_ATTEMPT_RECORDS) history.shift();
    lastError = result.error;
    const base = Math.min(retry.delayMs, result.retryAfterMs ?? retry.delayMs);
    const wait = Math.max(0, base) + Math.floor(Math.random() * retry.jitterMs);
    const elapsed = clock.now() - started;
    const outOfTime = retry.maxWaitMs !== undefined && elapsed + wait > retry.maxWaitMs;
    if (n >= retry.attempts || outOfTime) {
      const why = !lastError
        ? 'held by another owner'
        : lastError instanceof StoreError
          ? `the store failed: ${lastError.message}`
          : lastError.message;
      throw giveUp(n, `not acquired after ${n} attempt(s) in ${Math.round(elapsed)} ms (${why})`, lastError);
    }
    try {
      await sleep(wait, signal);
    } catch {
      throw giveUp(n, `acquire aborted after ${n} attempt(s)`, signal?.reason);
    }
  }
}
