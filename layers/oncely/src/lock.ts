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
  OncelyError,
  StoreError,
  ValidationError,
} from './errors.js';
import { ACQUIRE, EXTEND, ownerReply, RELEASE } from './scripts.js';
import type { Store } from './transport/types.js';

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
}

export type ReleaseResult = 'released' | 'notHeld' | 'expired';
export type ExtendOutcome = 'extended' | 'stolen' | 'expired';

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
  readonly #drift = (ttlMs: number) => Math.round(ttlMs * this.#driftFactor) + this.#driftMs;

  constructor(store: Store, options: LockOptions = {}) {
    const problems: string[] = [];
    const { prefix = 'oncely', driftFactor = 0.01, driftMs = 2, clock = monotonicClock } = options;
    if (typeof prefix !== 'string' || prefix.length === 0 || /[{}]/.test(prefix))
      problems.push('prefix must be a non-empty string without { or }');
    if (typeof driftFactor !== 'number' || !(driftFactor >= 0 && driftFactor < 0.5))
      problems.push(`driftFactor must be a number in [0, 0.5), got ${String(driftFactor)}`);
    if (!isWholeMs(driftMs, 0, 60_000)) problems.push(`driftMs must be a whole number from 0 to 60000`);
    check(problems, 'Lock options');
    this.store = store;
    this.#prefix = prefix;
    this.#clock = clock;
    this.#driftFactor = driftFactor;
    this.#driftMs = driftMs;
    this.#driver = {
      extend: async (key, token, ttlMs) =>
        extendOutcomeOf(await store.run(EXTEND, [this.keyOf(key)], [token, ttlMs])),
      release: async (key, token) => releaseResultOf(await store.run(RELEASE, [this.keyOf(key)], [token])),
    };
  }

  /** The Redis key holding `key`'s owner token. Every key of one lock shares the hash tag `{key}`. */
  keyOf(key: string): string {
    return `${this.#prefix}:{${key}}:lock`;
  }
  fenceKeyOf(key: string): string {
    return `${this.#prefix}:{${key}}:fence`;
  }

  /** One attempt: a lease, or null when another owner holds the lock. Store failures throw StoreError. */
  async tryAcquire(key: string, options: { ttlMs: number }): Promise<Lease | null> {
    check([...keyProblems(key), ...ttlProblems(options?.ttlMs)], 'tryAcquire');
    const token = newToken();
    const result = await this.#attempt(key, options.ttlMs, token);
    if (result.error) {
      // An ambiguous failure may have left the lock ours: give it back in the background.
      if (result.error instanceof StoreError && result.error.ambiguous) {
        void this.#driver.release(key, token).catch(() => undefined);
      }
      throw result.error;
    }
    return result.lease;
  }

  /** Waits for the lock per `retry` (default 10 attempts, 200 ms ± 100 ms apart). Throws LockNotAcquiredError. */
  async acquire(key: string, options: AcquireOptions): Promise<Lease> {
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
      // An ambiguous failure may have left the lock ours: give it back rather than block others for a TTL.
      if (maybeOurs) await this.#driver.release(key, token).catch(() => undefined);
      throw err;
    }
  }

  /** acquire(), then run `fn` with the lease, auto-extending it, and always release. */
  async using<T>(key: string, fn: (lease: Lease) => Promise<T>, options: UsingOptions): Promise<T> {
    if (options?.extendBeforeMs !== undefined && !isWholeMs(options.extendBeforeMs, 1, options.ttlMs - 1))
      check([`extendBeforeMs must be a whole number from 1 to ttlMs − 1`], 'using');
    const lease = await this.acquire(key, options);
    return usingLease(lease, fn, options, this.#clock);
  }

  async #attempt(key: string, ttlMs: number, token: string): Promise<Attempt & { error?: Error }> {
    const startedAt = this.#clock.now();
    let reply: unknown;
    try {
      reply = await this.store.run(ACQUIRE, [this.keyOf(key), this.fenceKeyOf(key)], [token, ttlMs]);
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
      await this.#driver.release(key, token).catch(() => undefined);
      return { lease: null };
    }
    return {
      lease: new Lease({
        key,
        token,
        fence: value,
        ttlMs,
        startedAt,
        drift: this.#drift,
        clock: this.#clock,
        driver: this.#driver,
      }),
    };
  }
}

/** `new Lock(store, options)`. */
export function createLock(store: Store, options?: LockOptions): Lock {
  return new Lock(store, options);
}
