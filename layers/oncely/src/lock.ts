/**
 * Single-store locks: tryAcquire / acquire / extend / release / using, over any Store.
 *
 * Reads top to bottom: options and defaults, validation, the Lease (validity on a monotonic clock, a lost-lease
 * AbortSignal), the retry loop and using() (shared with Redlock), then the Lock class.
 */
import { randomBytes } from 'node:crypto';
import { type Clock, monotonicClock, sleep } from './clock.js';
import {
  LockLostError,
  type LockLostReason,
  LockNotAcquiredError,
  LockNotReleasedError,
  OncelyError,
  StoreError,
  ValidationError,
} from './errors.js';
import {
  ACQUIRE,
  EXTEND,
  LOCK_ACQUIRE_ALL,
  LOCK_CHECK,
  LOCK_EXTEND_ALL,
  LOCK_RELEASE_ALL,
  LOCK_RESUME,
  LOCK_STATUS,
  type OwnerReply,
  ownerReply,
  RELEASE,
  WINDOW_OPEN,
} from './scripts.js';
import { hashTag } from './sharded.js';
import type { Store } from './transport/types.js';

// `await using lease = ...` looks the disposer up as Symbol.asyncDispose. Node defines it from 20.4 on (as
// Symbol.for('nodejs.asyncDispose')); define it the same way where it is missing, so leases made here and
// code compiled elsewhere agree on the one symbol.
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for('nodejs.asyncDispose');

// ---------------------------------------------------------------------------------------------- options

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

export interface LockOptions {
  /**
   * Prefix of every key: `<prefix>:{<name>}:lock`.
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
   * Called with errors from work in the background, which nothing awaits: a lock given back after an ambiguous
   * acquire whose release failed until the lease had expired (LockNotReleasedError), a release on `await using`
   * scope exit that failed. Exceptions it throws are ignored.
   * @default errors are dropped (the key expires with its TTL)
   */
  onError?: (error: Error) => void;
  /**
   * How long a fence counter outlives the lease that last used it. Past it the counter expires (no key is left
   * per lock name) and the next holder's fence starts from the store's clock, which is above every fence the
   * counter handed out as long as that clock has not gone back by more than this: see docs/safety.md.
   * @default 900_000 (15 minutes)
   */
  fenceGraceMs?: number;
  /**
   * Wall-clock milliseconds since the epoch: the fence's time floor on a store that refuses TIME inside a
   * script (every Redis ≥ 5 allows it; the store's own clock is then used).
   * @default Date.now
   */
  wallClock?: () => number;
}

/** What `lock.status(key)` tells without holding the lock. Never the holder's token. */
export interface LockStatus {
  /** Someone holds the lock. */
  readonly held: boolean;
  /** The holder's remaining ms (server side); 0 when free. */
  readonly remainingMs: number;
  /** The holder's fence while held; when free, the last fence handed out (0 once its counter has expired). */
  readonly fence: number;
}

export interface WindowOptions {
  /** The window: `fn` starts at most once per `windowMs` for a key, across every process. */
  windowMs: number;
  /**
   * When `fn` throws, reopen the window at once so the next call can run it again (true), or keep it closed
   * until it ends (false).
   * @default true
   */
  reopenOnError?: boolean;
}

/** `oncePerWindow()`'s result: `fn`'s value, or that the window is closed and when it opens again. */
export type WindowResult<T> = { ran: true; value: T } | { ran: false; retryAfterMs: number };

export type ReleaseResult = 'released' | 'notHeld' | 'expired';
export type ExtendOutcome = 'extended' | 'stolen' | 'expired';
export type CheckOutcome = 'held' | 'stolen' | 'expired';

/** An extend script's reply (EXTEND, ONCE_EXTEND) as an ExtendOutcome. */
export function extendOutcomeOf(reply: unknown): ExtendOutcome {
  const r = ownerReply(reply);
  return r === 'ours' ? 'extended' : r === 'theirs' ? 'stolen' : 'expired';
}

/** A release script's reply (RELEASE, ONCE_RELEASE) as a ReleaseResult. */
export function releaseResultOf(reply: unknown): ReleaseResult {
  const r = ownerReply(reply);
  return r === 'ours' ? 'released' : r === 'theirs' ? 'notHeld' : 'expired';
}

export const DEFAULT_RETRY: Readonly<Required<Omit<RetryOptions, 'maxWaitMs'>>> = Object.freeze({
  attempts: 10,
  delayMs: 200,
  jitterMs: 100,
});
export const MIN_TTL_MS = 10;
/** The largest delay setTimeout accepts: a lease's expiry timer must be able to fire. */
export const MAX_TTL_MS = 2_147_483_647;
export const MAX_KEY_BYTES = 512;
/** How long a fence counter outlives the lease that last used it, by default (15 minutes). */
export const DEFAULT_FENCE_GRACE_MS = 15 * 60_000;
const MAX_ATTEMPTS = 1_000_000;

// ------------------------------------------------------------------------------------------- validation

function isWholeMs(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

export function keyProblems(key: unknown): string[] {
  if (typeof key !== 'string') return [`key must be a string, got ${typeof key}`];
  if (key.length === 0) return ['key must not be empty'];
  const bytes = Buffer.byteLength(key, 'utf8');
  return bytes > MAX_KEY_BYTES ? [`key is ${bytes} bytes, the limit is ${MAX_KEY_BYTES}`] : [];
}

export function ttlProblems(ttlMs: unknown, field = 'ttlMs'): string[] {
  return isWholeMs(ttlMs, MIN_TTL_MS, MAX_TTL_MS)
    ? []
    : [
        `${field} must be a whole number of milliseconds from ${MIN_TTL_MS} to ${MAX_TTL_MS}, got ${String(ttlMs)}`,
      ];
}

export function retryProblems(retry: RetryOptions | undefined): string[] {
  if (retry === undefined) return [];
  if (typeof retry !== 'object' || retry === null) return ['retry must be an object'];
  const p: string[] = [];
  if (retry.attempts !== undefined && !isWholeMs(retry.attempts, 1, MAX_ATTEMPTS))
    p.push(`retry.attempts must be a whole number from 1 to ${MAX_ATTEMPTS}, got ${String(retry.attempts)}`);
  for (const f of ['delayMs', 'jitterMs', 'maxWaitMs'] as const) {
    const v = retry[f];
    if (v !== undefined && !isWholeMs(v, 0, MAX_TTL_MS))
      p.push(`retry.${f} must be a whole number of milliseconds from 0 to ${MAX_TTL_MS}, got ${String(v)}`);
  }
  return p;
}

export function fenceGraceProblems(fenceGraceMs: unknown): string[] {
  return fenceGraceMs === undefined || isWholeMs(fenceGraceMs, 1, MAX_TTL_MS)
    ? []
    : [
        `fenceGraceMs must be a whole number of milliseconds from 1 to ${MAX_TTL_MS}, got ${String(fenceGraceMs)}`,
      ];
}

export function check(problems: string[], what: string): void {
  if (problems.length > 0) throw new ValidationError(problems, what);
}

/**
 * 128 random bits (node:crypto), base64url. Drawn fresh for every lease, never from a pre-filled pool: a pool
 * captured in a restored snapshot (Lambda SnapStart, a forked process) would hand two holders the same token,
 * and acquire treats "the lock holds my token" as "already mine".
 */
export function newToken(): string {
  return randomBytes(16).toString('base64url');
}

// ---------------------------------------------------------------------------------------------- the lease

/** What a lease needs from the lock that issued it (a single store, or a Redlock quorum). */
export interface LeaseDriver {
  extend(key: string, token: string, ttlMs: number): Promise<ExtendOutcome>;
  release(key: string, token: string): Promise<ReleaseResult>;
  /** Read-only: does the store still hold the token? */
  check?(key: string, token: string): Promise<CheckOutcome>;
}

export interface LeaseInit {
  key: string;
  token: string;
  fence: number;
  ttlMs: number;
  /** Monotonic time the acquiring request was sent. */
  startedAt: number;
  /** The drift allowance for a TTL (ttl·driftFactor + driftMs). */
  drift: (ttlMs: number) => number;
  clock: Clock;
  driver: LeaseDriver;
  /** Several locks held as one (`acquire([k1, k2])`): the keys and one fence each, in the caller's order. */
  keys?: readonly string[];
  fences?: readonly number[];
  /** Where a release that failed on `await using` scope exit is reported (LockOptions.onError). */
  onError?: (error: Error) => void;
}

/**
 * A held lock. `signal` aborts (reason: a LockLostError) when the lease is lost — an extend found another
 * owner or no owner — or when its validity runs out without a successful extension, even if an extend call
 * is still hanging. Releasing does not abort it.
 */
export class Lease {
  readonly key: string;
  /** 128-bit random owner token. */
  readonly token: string;
  /** Fencing token: strictly increasing across holders of this key. Pass it to the resource you protect. */
  readonly fence: number;
  /** Every lock this lease holds: `[key]`, or the keys of `acquire([k1, k2, ...])` in the order given. */
  readonly keys: readonly string[];
  /** One fence per key of `keys` (each key's own counter); `fence` is the first. */
  readonly fences: readonly number[];
  #validUntil: number;
  #ttlMs: number;
  #state: 'held' | 'released' | 'lost' = 'held';
  readonly #controller = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  readonly #init: LeaseInit;

  constructor(init: LeaseInit) {
    this.#init = init;
    this.key = init.key;
    this.token = init.token;
    this.fence = init.fence;
    this.keys = Object.freeze([...(init.keys ?? [init.key])]);
    this.fences = Object.freeze([...(init.fences ?? [init.fence])]);
    this.#ttlMs = init.ttlMs;
    this.#validUntil = init.startedAt + init.ttlMs - init.drift(init.ttlMs);
    this.#arm();
  }

  /** Monotonic deadline (clock.now() units): start + ttl − drift, moved by each successful extend. */
  get validUntil(): number {
    return this.#validUntil;
  }
  /** Milliseconds of validity left (0 when lost or expired). */
  get remainingMs(): number {
    return this.#state === 'lost' ? 0 : Math.max(0, this.#validUntil - this.#init.clock.now());
  }
  get ttlMs(): number {
    return this.#ttlMs;
  }
  /** Reading it past the deadline aborts it on the spot, as `held` does (a resumed process may run before its timers). */
  get signal(): AbortSignal {
    if (this.#state === 'held' && this.remainingMs <= 0) this.#lose('expired');
    return this.#controller.signal;
  }
  /**
   * True while the lease is held and valid. Looking past the deadline aborts the signal there and then, so a
   * process that was paused past its lease (its expiry timer not yet run) learns it on its next check.
   */
  get held(): boolean {
    if (this.#state === 'held' && this.remainingMs <= 0) this.#lose('expired');
    return this.#state === 'held';
  }

  /**
   * Resets the expiry to `ttlMs` (default: the acquire TTL) from now. Throws LockLostError when the lease is
   * already lost, expired, released, or now held by another owner; StoreError when the store failed (the lease
   * may still be valid: `remainingMs` tells).
   */
  async extend(ttlMs: number = this.#ttlMs): Promise<void> {
    check(ttlProblems(ttlMs), 'extend');
    if (this.#state === 'released') throw new LockLostError(this.key, 'released');
    if (this.#state === 'lost' || this.remainingMs <= 0) throw this.#lose('expired');
    const { clock, driver, drift } = this.#init;
    const startedAt = clock.now();
    const outcome = await driver.extend(this.key, this.token, ttlMs);
    if (outcome !== 'extended') throw this.#lose(outcome);
    if (this.#state !== 'held')
      throw this.#controller.signal.reason ?? new LockLostError(this.key, 'released');
    this.#ttlMs = ttlMs;
    this.#validUntil = startedAt + ttlMs - drift(ttlMs);
    this.#arm();
  }

  /** Deletes the key if it is still ours: `released`, `notHeld` (another owner has it) or `expired`. */
  async release(): Promise<ReleaseResult> {
    if (this.#state === 'held') this.#state = 'released';
    clearTimeout(this.#timer);
    return this.#init.driver.release(this.key, this.token);
  }

  /**
   * Asks the store, in one round trip, whether the lease is still ours. True while it is; false once it is
   * not (another owner has the key, it expired, or we released it), and then `held` is false and `signal` has
   * fired. Throws StoreError when the store cannot tell (the lease stays as it was).
   */
  async check(): Promise<boolean> {
    if (!this.held) return false;
    const { driver } = this.#init;
    if (!driver.check) throw new OncelyError(`lock "${this.key}": this lease cannot be checked on its store`);
    const outcome = await driver.check(this.key, this.token);
    if (outcome !== 'held') this.#lose(outcome);
    return this.held;
  }

  /**
   * `await using lease = await lock.acquire(...)`: releases the lease when the scope exits. Never throws, so
   * it cannot hide the scope's own result or error: a release that fails on the store is retried in the
   * background until it succeeds or the lease has expired by itself, and a final failure goes to the lock's
   * `onError`. A lease released already is left alone.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state === 'released') return;
    const until = this.#validUntil + this.#init.drift(this.#ttlMs);
    await releaseOrGiveBack(this.key, () => this.release(), this.#init.clock, until, this.#init.onError);
  }

  #arm(): void {
    clearTimeout(this.#timer);
    const delay = this.#validUntil - this.#init.clock.now();
    if (delay <= 0) {
      this.#lose('expired');
      return;
    }
    this.#timer = setTimeout(() => {
      if (this.#state === 'held' && this.#init.clock.now() >= this.#validUntil) this.#lose('expired');
      else if (this.#state === 'held') this.#arm();
    }, delay);
    this.#timer.unref?.();
  }

  #lose(reason: LockLostReason): LockLostError {
    if (this.#state === 'lost') return this.#controller.signal.reason as LockLostError;
    const err = new LockLostError(this.key, reason);
    if (this.#state === 'held') {
      this.#state = 'lost';
      clearTimeout(this.#timer);
      this.#controller.abort(err);
    }
    return err;
  }
}

// ------------------------------------------------------------------------------ giving back a lock we may hold

/** First retry delay of a give-back release; it doubles up to GIVE_BACK_MAX_DELAY_MS, with jitter. */
export const GIVE_BACK_DELAY_MS = 50;
export const GIVE_BACK_MAX_DELAY_MS = 1000;

/** Resolves after `ms` without keeping the process alive for it (background work only). */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref?.());
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function report(onError: ((error: Error) => void) | undefined, err: unknown): void {
  try {
    onError?.(asError(err));
  } catch {
    // the reporter's own failure must not escape background work
  }
}

/**
 * Gives back a lock we may hold but will not use (an acquire that gave up after an ambiguous reply, a release
 * that failed): sends `release` until it succeeds, the store says the key is not ours (`notHeld`, `expired`),
 * or the monotonic time `until` has passed, by which the key has expired by itself. Store failures are retried
 * with backoff (GIVE_BACK_DELAY_MS doubling to GIVE_BACK_MAX_DELAY_MS, jittered); a final failure is reported
 * to `onError` as a LockNotReleasedError whose cause is the last store error. Never throws.
 *
 * `firstError`: the first release has already been sent and failed with it; start with a pause.
 */
export async function giveBack(
  key: string,
  release: () => Promise<ReleaseResult>,
  clock: Clock,
  until: number,
  onError: ((error: Error) => void) | undefined,
  firstError?: Error,
): Promise<ReleaseResult | 'failed'> {
  let attempts = firstError ? 1 : 0;
  let last: unknown = firstError;
  for (let delay = GIVE_BACK_DELAY_MS; ; delay = Math.min(delay * 2, GIVE_BACK_MAX_DELAY_MS)) {
    if (last !== undefined) {
      if (!(last instanceof StoreError)) break; // not the network: a retry would fail the same way
      const wait = Math.round(delay / 2 + Math.random() * (delay / 2));
      if (clock.now() + wait >= until) break;
      await pause(wait);
    }
    attempts++;
    try {
      return await release();
    } catch (err) {
      last = err;
    }
  }
  report(onError, new LockNotReleasedError(key, attempts, { cause: last }));
  return 'failed';
}

/** One release now; if the store failed, the rest of giveBack() in the background. Never throws. */
export async function releaseOrGiveBack(
  key: string,
  release: () => Promise<ReleaseResult>,
  clock: Clock,
  until: number,
  onError: ((error: Error) => void) | undefined,
): Promise<void> {
  try {
    await release();
  } catch (err) {
    if (err instanceof StoreError) void giveBack(key, release, clock, until, onError, err);
    else report(onError, err);
  }
}

// ------------------------------------------------------------------------- retry loop and using(), shared

/** One attempt's outcome: a lease, or "held" with how long the holder has left (if known). */
export type Attempt = { lease: Lease } | { lease: null; retryAfterMs?: number; error?: Error };

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
  const retry = { ...DEFAULT_RETRY, ...options.retry };
  const { signal } = options;
  const started = clock.now();
  let lastError: Error | undefined;
  for (let n = 1; ; n++) {
    if (signal?.aborted) {
      throw new LockNotAcquiredError(key, n - 1, `lock "${key}": acquire aborted`, { cause: signal.reason });
    }
    const result = await attempt();
    if (result.lease) {
      if (signal?.aborted) {
        await result.lease.release().catch(() => undefined);
        throw new LockNotAcquiredError(key, n, `lock "${key}": acquire aborted`, { cause: signal.reason });
      }
      return result.lease;
    }
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
      throw new LockNotAcquiredError(
        key,
        n,
        `lock "${key}" not acquired after ${n} attempt(s) in ${Math.round(elapsed)} ms (${why})`,
        lastError ? { cause: lastError } : undefined,
      );
    }
    try {
      await sleep(wait, signal);
    } catch {
      throw new LockNotAcquiredError(key, n, `lock "${key}": acquire aborted`, { cause: signal?.reason });
    }
  }
}

/**
 * Runs `fn` while holding the lease, extending it in the background before it expires, then releases it.
 * `fn`'s result or error always wins: a release failure goes to `onError`, never replaces them.
 */
export async function usingLease<T>(
  lease: Lease,
  fn: (lease: Lease) => Promise<T>,
  options: UsingOptions,
  clock: Clock,
): Promise<T> {
  const ttlMs = options.ttlMs;
  const extendBeforeMs = options.extendBeforeMs ?? Math.floor(ttlMs / 2);
  const report = (e: unknown) => options.onError?.(e instanceof Error ? e : new Error(String(e)));
  let done = false;
  let timer: NodeJS.Timeout | undefined;

  const schedule = (delayMs: number) => {
    if (done || !lease.held) return;
    timer = setTimeout(tick, Math.max(0, delayMs));
    timer.unref?.();
  };
  const tick = async () => {
    try {
      await lease.extend(ttlMs);
      schedule(lease.validUntil - clock.now() - extendBeforeMs);
    } catch (err) {
      if (err instanceof LockLostError) return; // the signal has fired; fn decides what to do
      report(err);
      // A transient store failure: try again while the lease is still valid.
      schedule(Math.min(lease.remainingMs / 4, 1000));
    }
  };
  schedule(lease.validUntil - clock.now() - extendBeforeMs);

  try {
    return await fn(lease);
  } finally {
    done = true;
    clearTimeout(timer);
    try {
      await lease.release();
    } catch (err) {
      report(err);
    }
  }
}

// ------------------------------------------------------------------------------------------------ the lock

/** What a single-store lock and a Redlock both offer. */
export interface Locker {
  tryAcquire(key: string, options: { ttlMs: number }): Promise<Lease | null>;
  acquire(key: string, options: AcquireOptions): Promise<Lease>;
  using<T>(key: string, fn: (lease: Lease) => Promise<T>, options: UsingOptions): Promise<T>;
}

/** Locks on one store (Upstash REST, standalone Redis, or a Redis Cluster). */
export class Lock implements Locker {
  readonly store: Store;
  readonly #prefix: string;
  readonly #clock: Clock;
  readonly #driftFactor: number;
  readonly #driftMs: number;
  readonly #driver: LeaseDriver;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #fenceGraceMs: number;
  readonly #wallClock: () => number;
  readonly #drift = (ttlMs: number) => Math.round(ttlMs * this.#driftFactor) + this.#driftMs;

  constructor(store: Store, options: LockOptions = {}) {
    const problems: string[] = [...fenceGraceProblems(options.fenceGraceMs)];
    const { prefix = 'oncely', driftFactor = 0.01, driftMs = 2, clock = monotonicClock } = options;
    if (options.wallClock !== undefined && typeof options.wallClock !== 'function')
      problems.push('wallClock must be a function returning epoch milliseconds');
    if (typeof prefix !== 'string' || prefix.length === 0 || /[{}]/.test(prefix))
      problems.push('prefix must be a non-empty string without { or }');
    if (typeof driftFactor !== 'number' || !(driftFactor >= 0 && driftFactor < 0.5))
      problems.push(`driftFactor must be a number in [0, 0.5), got ${String(driftFactor)}`);
    if (!isWholeMs(driftMs, 0, 60_000)) problems.push(`driftMs must be a whole number from 0 to 60000`);
    if (options.onError !== undefined && typeof options.onError !== 'function')
      problems.push('onError must be a function');
    check(problems, 'Lock options');
    this.store = store;
    this.#onError = options.onError;
    this.#prefix = prefix;
    this.#clock = clock;
    this.#driftFactor = driftFactor;
    this.#driftMs = driftMs;
    this.#fenceGraceMs = options.fenceGraceMs ?? DEFAULT_FENCE_GRACE_MS;
    this.#wallClock = options.wallClock ?? Date.now;
    this.#driver = {
      extend: async (key, token, ttlMs) =>
        extendOutcomeOf(
          await store.run(
            EXTEND,
            [this.keyOf(key), this.fenceKeyOf(key)],
            [token, ttlMs, ttlMs + this.#fenceGraceMs],
          ),
        ),
      release: async (key, token) =>
        releaseResultOf(
          await store.run(RELEASE, [this.keyOf(key), this.fenceKeyOf(key)], [token, this.#fenceGraceMs]),
        ),
      check: async (key, token) => checkOutcome(await store.run(LOCK_CHECK, [this.keyOf(key)], [token])),
    };
  }

  /** The Redis key holding `key`'s owner token. Every key of one lock shares the hash tag `{key}`. */
  keyOf(key: string): string {
    return `${this.#prefix}:{${key}}:lock`;
  }
  fenceKeyOf(key: string): string {
    return `${this.#prefix}:{${key}}:fence`;
  }

  /**
   * One attempt: a lease, or null when another owner holds the lock. Store failures throw StoreError.
   * With several keys, a lease on all of them or null (see acquire).
   */
  async tryAcquire(key: string | readonly string[], options: { ttlMs: number }): Promise<Lease | null> {
    if (isKeyList(key)) return this.#tryAcquireAll(key, options);
    check([...keyProblems(key), ...ttlProblems(options?.ttlMs)], 'tryAcquire');
    const token = newToken();
    const result = await this.#attempt(key, options.ttlMs, token);
    if (result.error) {
      // An ambiguous failure may have left the lock ours: give it back in the background, retrying.
      if (result.error instanceof StoreError && result.error.ambiguous) {
        void this.#giveBack(key, () => this.#driver.release(key, token), options.ttlMs);
      }
      throw result.error;
    }
    return result.lease;
  }

  /**
   * Waits for the lock per `retry` (default 10 attempts, 200 ms ± 100 ms apart). Throws LockNotAcquiredError.
   *
   * With several keys (`acquire([k1, k2, ...])`) the lease holds all of them or none: one script when every
   * key shares a hash tag (one cluster slot), otherwise key by key in sorted order, releasing the keys taken
   * so far when one is held by another owner, so two contenders for overlapping sets never deadlock. Each key
   * keeps its own fence (`lease.fences`, in the order given).
   */
  async acquire(key: string | readonly string[], options: AcquireOptions): Promise<Lease> {
    if (isKeyList(key)) return this.#acquireAll(key, options);
    check([...keyProblems(key), ...ttlProblems(options?.ttlMs), ...retryProblems(options?.retry)], 'acquire');
    // One token for every attempt: if an attempt's reply was lost, the next one finds the lock already ours.
    const token = newToken();
    let maybeOurs = false;
    try {
      return await acquireLoop(
        key,
        async () => {
          const r = await this.#attempt(key, options.ttlMs, token);
          if (r.error instanceof StoreError && r.error.ambiguous) maybeOurs = true;
          return r;
        },
        options,
        this.#clock,
      );
    } catch (err) {
      // An ambiguous failure may have left the lock ours: give it back rather than block others for a TTL
      // (one release now, retried in the background while the store fails).
      if (maybeOurs)
        await this.#releaseOrGiveBack(key, () => this.#driver.release(key, token), options.ttlMs);
      throw err;
    }
  }

  /** acquire(), then run `fn` with the lease, auto-extending it, and always release. */
  async using<T>(
    key: string | readonly string[],
    fn: (lease: Lease) => Promise<T>,
    options: UsingOptions,
  ): Promise<T> {
    if (options?.extendBeforeMs !== undefined && !isWholeMs(options.extendBeforeMs, 1, options.ttlMs - 1))
      check([`extendBeforeMs must be a whole number from 1 to ttlMs − 1`], 'using');
    const lease = await this.acquire(key, options);
    return usingLease(lease, fn, options, this.#clock);
  }

  /**
   * The lock's state without holding it, in one read-only round trip: held or free, the holder's remaining
   * ms and its fence. Never the token.
   */
  async status(key: string): Promise<LockStatus> {
    check(keyProblems(key), 'status');
    const reply = await this.store.run(LOCK_STATUS, [this.keyOf(key), this.fenceKeyOf(key)], []);
    if (!Array.isArray(reply) || reply.length !== 3) throw this.#unexpected('status', reply);
    const [held, pttl, fence] = reply.map(Number) as [number, number, number];
    return { held: held === 1, remainingMs: held === 1 ? Math.max(0, pttl) : 0, fence };
  }

  /**
   * Rebuilds a lease from a token handed over by its holder (e.g. passed to a worker in an async invoke): the
   * lock's expiry is reset to `ttlMs` and the lease carries the holder's fence. Throws LockLostError (`stolen`
   * or `expired`) when the token no longer holds the key. Both processes now hold the same lease: let one of
   * them stop using it.
   */
  async resume(key: string, token: string, options: { ttlMs: number }): Promise<Lease> {
    const tokenProblems =
      typeof token !== 'string' || token.length === 0 || token.length > MAX_KEY_BYTES
        ? [`token must be a non-empty string of at most ${MAX_KEY_BYTES} characters`]
        : [];
    check([...keyProblems(key), ...tokenProblems, ...ttlProblems(options?.ttlMs)], 'resume');
    const { ttlMs } = options;
    const startedAt = this.#clock.now();
    const reply = await this.store.run(
      LOCK_RESUME,
      [this.keyOf(key), this.fenceKeyOf(key)],
      [token, ttlMs, ttlMs + this.#fenceGraceMs],
    );
    if (!Array.isArray(reply) || reply.length === 0) throw this.#unexpected('resume', reply);
    const [ok, fence] = reply.map(Number) as [number, number | undefined];
    if (ok !== 1) throw new LockLostError(key, ok === -1 ? 'stolen' : 'expired');
    return this.#lease({ key, token, fence: fence ?? 0, ttlMs, startedAt, driver: this.#driver });
  }

  /**
   * Runs `fn` at most once per `windowMs` for `key`, across every process sharing the store ("rebuild the
   * cache at most once a minute, however many events arrive"). The first call of a window runs `fn` and gets
   * `{ ran: true, value }`; the others get `{ ran: false, retryAfterMs }` at once, without waiting. The window
   * counts from the start of the run: a run longer than the window may overlap the next one (hold a lock
   * inside `fn` if that matters). If `fn` throws, the window reopens (see `reopenOnError`) and the error is
   * rethrown. The key is `<prefix>:{<key>}:window`, apart from the lock of the same name.
   */
  async oncePerWindow<T>(
    key: string,
    fn: () => Promise<T>,
    options: WindowOptions,
  ): Promise<WindowResult<T>> {
    const problems = [...keyProblems(key), ...ttlProblems(options?.windowMs, 'windowMs')];
    if (typeof fn !== 'function') problems.push('fn must be a function');
    if (options?.reopenOnError !== undefined && typeof options.reopenOnError !== 'boolean')
      problems.push('reopenOnError must be a boolean');
    check(problems, 'oncePerWindow');
    const windowKey = `${this.#prefix}:{${key}}:window`;
    const token = newToken();
    const reply = await this.store.run(WINDOW_OPEN, [windowKey], [token, options.windowMs]);
    if (!Array.isArray(reply) || reply.length !== 2) throw this.#unexpected('window', reply);
    const [opened, pttl] = reply.map(Number) as [number, number];
    if (opened !== 1) return { ran: false, retryAfterMs: Math.max(0, pttl) };
    try {
      return { ran: true, value: await fn() };
    } catch (err) {
      if (options.reopenOnError ?? true) {
        try {
          await this.store.run(RELEASE, [windowKey], [token]);
        } catch (releaseError) {
          report(this.#onError, releaseError); // the window stays closed until it ends; fn's error wins
        }
      }
      throw err;
    }
  }

  // ------------------------------------------------------------------------------- several keys at once

  async #tryAcquireAll(keys: readonly string[], options: { ttlMs: number }): Promise<Lease | null> {
    const set = this.#keySet(keys, [...ttlProblems(options?.ttlMs)], 'tryAcquire');
    const token = newToken();
    const result = await this.#attemptAll(set, options.ttlMs, token);
    if (result.error) {
      if (result.error instanceof StoreError && result.error.ambiguous) {
        void this.#giveBack(set.label, () => set.driver.release(set.label, token), options.ttlMs);
      }
      throw result.error;
    }
    return result.lease;
  }

  async #acquireAll(keys: readonly string[], options: AcquireOptions): Promise<Lease> {
    const set = this.#keySet(
      keys,
      [...ttlProblems(options?.ttlMs), ...retryProblems(options?.retry)],
      'acquire',
    );
    const token = newToken();
    let maybeOurs = false;
    try {
      return await acquireLoop(
        set.label,
        async () => {
          const r = await this.#attemptAll(set, options.ttlMs, token);
          if (r.error instanceof StoreError && r.error.ambiguous) maybeOurs = true;
          return r;
        },
        options,
        this.#clock,
      );
    } catch (err) {
      if (maybeOurs)
        await this.#releaseOrGiveBack(set.label, () => set.driver.release(set.label, token), options.ttlMs);
      throw err;
    }
  }

  /** Validates a key set; its sorted order, whether one script can take it, and a driver for the lease. */
  #keySet(keys: readonly string[], more: string[], what: string): KeySet {
    const problems = keys.length === 0 ? ['keys must not be empty'] : [];
    keys.forEach((k, i) => {
      for (const p of keyProblems(k)) problems.push(`keys[${i}]: ${p}`);
    });
    if (new Set(keys).size !== keys.length) problems.push('keys must not repeat a key');
    check([...problems, ...more], what);
    const given = [...keys];
    const sorted = [...keys].sort();
    const locks = sorted.map((k) => this.keyOf(k));
    const pairs = sorted.flatMap((k) => [this.keyOf(k), this.fenceKeyOf(k)]);
    const grace = this.#fenceGraceMs;
    const oneSlot = new Set(locks.map(hashTag)).size === 1;
    const store = this.store;
    // Each script's 1 / -1 / 0 reply, per key (runMany: one round trip, one per slot group on a cluster).
    const each = async (script: typeof EXTEND, token: string, args: (string | number)[]) => {
      const results = await store.runMany(
        sorted.map((k) => ({ script, keys: [this.keyOf(k), this.fenceKeyOf(k)], args: [token, ...args] })),
      );
      return results.map((r) => {
        if (!r.ok) throw r.error;
        return ownerReply(r.value);
      });
    };
    // A set is ours while every key is; another owner on any key means stolen.
    const all = (r: OwnerReply[]) =>
      r.includes('theirs') ? 'theirs' : r.every((x) => x === 'ours') ? 'ours' : 'gone';
    const driver: LeaseDriver = {
      extend: async (_label, token, ttlMs) => {
        const r = oneSlot
          ? ownerReply(await store.run(LOCK_EXTEND_ALL, pairs, [token, ttlMs, ttlMs + grace]))
          : all(await each(EXTEND, token, [ttlMs, ttlMs + grace]));
        return r === 'ours' ? 'extended' : r === 'theirs' ? 'stolen' : 'expired';
      },
      release: async (_label, token) => {
        const r = oneSlot
          ? [ownerReply(await store.run(LOCK_RELEASE_ALL, pairs, [token, grace]))]
          : await each(RELEASE, token, [grace]);
        return r.includes('ours') ? 'released' : r.includes('theirs') ? 'notHeld' : 'expired';
      },
      check: async (_label, token) => {
        const r = all(await each(LOCK_CHECK, token, []));
        return r === 'ours' ? 'held' : r === 'theirs' ? 'stolen' : 'expired';
      },
    };
    return { label: given.join(', '), given, sorted, oneSlot, driver };
  }

  async #attemptAll(set: KeySet, ttlMs: number, token: string): Promise<Attempt & { error?: Error }> {
    const startedAt = this.#clock.now();
    const fenceOf = new Map<string, number>();
    try {
      if (set.oneSlot) {
        const keys = set.sorted.flatMap((k) => [this.keyOf(k), this.fenceKeyOf(k)]);
        const reply = await this.store.run(LOCK_ACQUIRE_ALL, keys, this.#acquireArgs(token, ttlMs));
        if (!Array.isArray(reply) || reply.length < 2) throw this.#unexpected('acquire', reply);
        const r = reply.map(Number);
        if (r[0] !== 1) return { lease: null, retryAfterMs: (r[2] ?? 0) > 0 ? r[2] : undefined };
        set.sorted.forEach((k, i) => {
          fenceOf.set(k, r[i + 1] ?? 0);
        });
      } else {
        // Key by key in sorted order: a contender for an overlapping set waits on the same first key.
        for (const k of set.sorted) {
          const reply = await this.store.run(
            ACQUIRE,
            [this.keyOf(k), this.fenceKeyOf(k)],
            this.#acquireArgs(token, ttlMs),
          );
          if (!Array.isArray(reply) || reply.length !== 2) throw this.#unexpected('acquire', reply);
          const [ok, value] = reply.map(Number) as [number, number];
          if (ok !== 1) {
            await this.#rollBack(fenceOf, token, ttlMs);
            return { lease: null, retryAfterMs: value > 0 ? value : undefined };
          }
          fenceOf.set(k, value);
        }
      }
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      // Give back what this attempt took (all of it when the failing call may have been applied).
      if (fenceOf.size > 0 && !err.ambiguous) await this.#rollBack(fenceOf, token, ttlMs);
      return { lease: null, error: err };
    }
    if (this.#clock.now() >= startedAt + ttlMs - this.#drift(ttlMs)) {
      await this.#releaseOrGiveBack(set.label, () => set.driver.release(set.label, token), ttlMs);
      return { lease: null };
    }
    const fences = set.given.map((k) => fenceOf.get(k) ?? 0);
    return {
      lease: this.#lease({
        key: set.label,
        keys: set.given,
        fences,
        fence: fences[0] ?? 0,
        token,
        ttlMs,
        startedAt,
        driver: set.driver,
      }),
    };
  }

  /** Releases the keys of `taken` (an attempt that cannot complete), retrying in the background if need be. */
  async #rollBack(taken: Map<string, number>, token: string, ttlMs: number): Promise<void> {
    await Promise.all(
      [...taken.keys()].map((k) => this.#releaseOrGiveBack(k, () => this.#driver.release(k, token), ttlMs)),
    );
  }

  #lease(init: Omit<LeaseInit, 'drift' | 'clock' | 'onError'>): Lease {
    return new Lease({ ...init, drift: this.#drift, clock: this.#clock, onError: this.#onError });
  }

  #giveBack(key: string, release: () => Promise<ReleaseResult>, ttlMs: number) {
    return giveBack(key, release, this.#clock, this.#clock.now() + ttlMs, this.#onError);
  }
  #releaseOrGiveBack(key: string, release: () => Promise<ReleaseResult>, ttlMs: number) {
    return releaseOrGiveBack(key, release, this.#clock, this.#clock.now() + ttlMs, this.#onError);
  }

  /** ACQUIRE's and LOCK_ACQUIRE_ALL's arguments: token, ttl, the counter's life, the fallback time floor. */
  #acquireArgs(token: string, ttlMs: number): (string | number)[] {
    return [token, ttlMs, ttlMs + this.#fenceGraceMs, Math.floor(this.#wallClock())];
  }

  #unexpected(what: string, reply: unknown): OncelyError {
    return new OncelyError(`${this.store.name}: unexpected ${what} reply ${JSON.stringify(reply)}`);
  }

  async #attempt(key: string, ttlMs: number, token: string): Promise<Attempt & { error?: Error }> {
    const startedAt = this.#clock.now();
    let reply: unknown;
    try {
      reply = await this.store.run(
        ACQUIRE,
        [this.keyOf(key), this.fenceKeyOf(key)],
        this.#acquireArgs(token, ttlMs),
      );
    } catch (err) {
      if (err instanceof StoreError) return { lease: null, error: err };
      throw err;
    }
    if (!Array.isArray(reply) || reply.length !== 2) {
      throw new OncelyError(`${this.store.name}: unexpected acquire reply ${JSON.stringify(reply)}`);
    }
    const [ok, value] = reply.map(Number) as [number, number];
    if (ok !== 1) return { lease: null, retryAfterMs: value > 0 ? value : undefined };
    if (this.#clock.now() >= startedAt + ttlMs - this.#drift(ttlMs)) {
      // The reply came back too late to be of use: undo and count it as a failed attempt.
      await this.#releaseOrGiveBack(key, () => this.#driver.release(key, token), ttlMs);
      return { lease: null };
    }
    return { lease: this.#lease({ key, token, fence: value, ttlMs, startedAt, driver: this.#driver }) };
  }
}

/** Several keys held as one lease (Lock.acquire([k1, k2, ...])). */
interface KeySet {
  /** The keys in the caller's order, joined: the lease's `key` and the name in errors. */
  readonly label: string;
  readonly given: readonly string[];
  readonly sorted: readonly string[];
  /** Every key shares one hash tag: one script takes, extends and releases them all. */
  readonly oneSlot: boolean;
  readonly driver: LeaseDriver;
}

/** `acquire([k1, k2])` rather than `acquire(k)` (Array.isArray does not narrow a readonly array). */
function isKeyList(key: string | readonly string[]): key is readonly string[] {
  return Array.isArray(key);
}

/** LOCK_CHECK's reply: 1 ours, -1 another owner's, 0 nobody's. */
function checkOutcome(reply: unknown): CheckOutcome {
  const r = ownerReply(reply);
  return r === 'ours' ? 'held' : r === 'theirs' ? 'stolen' : 'expired';
}

/** `new Lock(store, options)`. */
export function createLock(store: Store, options?: LockOptions): Lock {
  return new Lock(store, options);
}
