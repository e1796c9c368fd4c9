/**
 * A held lock: the Lease (validity on a monotonic clock, a lost-lease AbortSignal, `await using`), what it asks
 * of the lock that issued it (a LeaseDriver: one store, a Redlock quorum, a key set or a run-once record), the
 * one mapping of the extend / release / check replies, and giving back a lock we may hold but will not use.
 */
import type { Clock } from './clock.js';
import {
  type LockLostError,
  type LockLostReason,
  LockNotReleasedError,
  lockLost,
  OncelyError,
  StoreError,
} from './errors.js';
import { type OwnerReply, ownerReply } from './scripts/script.js';
import { check, ttlProblems } from './validate.js';

// `await using lease = ...` looks the disposer up as Symbol.asyncDispose. Node defines it from 20.4 on (as
// Symbol.for('nodejs.asyncDispose')); define it the same way where it is missing, so leases made here and
// code compiled elsewhere agree on the one symbol.
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for('nodejs.asyncDispose');

export type ReleaseResult = 'released' | 'not-held' | 'expired';
export type ExtendOutcome = 'extended' | 'stolen' | 'expired';
export type CheckOutcome = 'held' | 'stolen' | 'expired';

/**
 * The one mapping of an owner reply (scripts.ts ownerReply: 1 ours, -1 another owner's, 0 gone) to what each
 * operation reports. `reply` is a script's raw reply, or an owner reply already worked out (a quorum's, a key
 * set's).
 */
const asOwner = (reply: unknown): OwnerReply =>
  reply === 'ours' || reply === 'theirs' || reply === 'gone' ? reply : ownerReply(reply);

/** EXTEND, ONCE_EXTEND, LOCK_EXTEND_ALL: extended, stolen, or expired. */
export function extendOutcomeOf(reply: unknown): ExtendOutcome {
  const r = asOwner(reply);
  return r === 'ours' ? 'extended' : r === 'theirs' ? 'stolen' : 'expired';
}

/** RELEASE, ONCE_RELEASE, LOCK_RELEASE_ALL: released, not-held, or expired. */
export function releaseResultOf(reply: unknown): ReleaseResult {
  const r = asOwner(reply);
  return r === 'ours' ? 'released' : r === 'theirs' ? 'not-held' : 'expired';
}

/** LOCK_CHECK: held, stolen, or expired. */
export function checkOutcome(reply: unknown): CheckOutcome {
  const r = asOwner(reply);
  return r === 'ours' ? 'held' : r === 'theirs' ? 'stolen' : 'expired';
}

// ---------------------------------------------------------------------------------------------- the lease

/**
 * The one validity formula: a lease taken (or extended) by a request sent at `startedAt` (monotonic) for `ttlMs`
 * is valid until startedAt + ttlMs − drift(ttlMs). Every "is it still valid / did the reply come too late" asks it.
 */
export const validUntil = (startedAt: number, ttlMs: number, drift: (ttlMs: number) => number): number =>
  startedAt + ttlMs - drift(ttlMs);

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
  /** Made when first read (the hot path of a lock pair never reads them). */
  #keys: readonly string[] | undefined;
  #fences: readonly number[] | undefined;
  #validUntil: number;
  #ttlMs: number;
  #state: 'held' | 'released' | 'lost' = 'held';
  /** Why the lease was lost, once it is. */
  #lost: LockLostError | undefined;
  /**
   * The signal's controller and the expiry timer exist only once someone reads `signal` (the hot path of a
   * lock pair never does): until then `held`, `remainingMs`, `extend` and `release` look at the deadline
   * themselves, and a signal read later starts out aborted if the lease was lost by then.
   */
  #controller: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #init: LeaseInit;

  constructor(init: LeaseInit) {
    this.#init = init;
    this.key = init.key;
    this.token = init.token;
    this.fence = init.fence;
    // The caller's lists are copied now: what the lease holds must not change with them.
    if (init.keys) this.#keys = Object.freeze([...init.keys]);
    if (init.fences) this.#fences = Object.freeze([...init.fences]);
    this.#ttlMs = init.ttlMs;
    this.#validUntil = validUntil(init.startedAt, init.ttlMs, init.drift);
    if (this.#validUntil <= init.clock.now()) this.#lose('expired');
  }

  /** Every lock this lease holds: `[key]`, or the keys of `acquire([k1, k2, ...])` in the order given. */
  get keys(): readonly string[] {
    this.#keys ??= Object.freeze([this.key]);
    return this.#keys;
  }
  /** One fence per key of `keys` (each key's own counter); `fence` is the first. */
  get fences(): readonly number[] {
    this.#fences ??= Object.freeze([this.fence]);
    return this.#fences;
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
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#lost) this.#controller.abort(this.#lost);
      else if (this.#state === 'held') this.#arm();
    }
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
    if (this.#state === 'released') throw lockLost(this.key, 'released');
    if (this.#state === 'lost' || this.remainingMs <= 0) throw this.#lose('expired');
    const { clock, driver, drift } = this.#init;
    const startedAt = clock.now();
    const outcome = await driver.extend(this.key, this.token, ttlMs);
    if (outcome !== 'extended') throw this.#lose(outcome);
    if (this.#state !== 'held') throw this.#lost ?? lockLost(this.key, 'released');
    this.#ttlMs = ttlMs;
    this.#validUntil = validUntil(startedAt, ttlMs, drift);
    if (this.#controller) this.#arm();
  }

  /** Deletes the key if it is still ours: `released`, `not-held` (another owner has it) or `expired`. */
  async release(): Promise<ReleaseResult> {
    // Past the deadline the lease was lost before this release (as its expiry timer would have said).
    if (this.#state === 'held' && this.remainingMs <= 0) this.#lose('expired');
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
    await releaseOrGiveBack({
      key: this.key,
      release: () => this.release(),
      clock: this.#init.clock,
      until,
      onError: this.#init.onError,
    });
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
    if (this.#state === 'lost') return this.#lost!;
    const err = lockLost(this.key, reason);
    if (this.#state === 'held') {
      this.#state = 'lost';
      this.#lost = err;
      clearTimeout(this.#timer);
      this.#controller?.abort(err);
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

export function report(onError: ((error: Error) => void) | undefined, err: unknown): void {
  try {
    onError?.(asError(err));
  } catch {
    // the reporter's own failure must not escape background work
  }
}

/** A release to send until it is done: what giveBack() and releaseOrGiveBack() take. */
export interface GiveBack {
  /** The lock's name, for the error. */
  readonly key: string;
  readonly release: () => Promise<ReleaseResult>;
  readonly clock: Clock;
  /** The monotonic time by which the key has expired by itself: past it, a retry is pointless. */
  readonly until: number;
  readonly onError: ((error: Error) => void) | undefined;
}

/**
 * Gives back a lock we may hold but will not use (an acquire that gave up after an ambiguous reply, a release
 * that failed): sends `release` until it succeeds, the store says the key is not ours (`not-held`, `expired`),
 * or the monotonic time `until` has passed, by which the key has expired by itself. Store failures are retried
 * with backoff (GIVE_BACK_DELAY_MS doubling to GIVE_BACK_MAX_DELAY_MS, jittered); a final failure is reported
 * to `onError` as a LockNotReleasedError whose cause is the last store error. Never throws.
 *
 * `firstError`: the first release has already been sent and failed with it; start with a pause.
 */
export async function giveBack(job: GiveBack, firstError?: Error): Promise<ReleaseResult | 'failed'> {
  const { key, release, clock, until, onError } = job;
  let attempts = firstError ? 1 : 0;
  let last: unknown = firstError;
  let delay = GIVE_BACK_DELAY_MS;
  for (;;) {
    if (last !== undefined) {
      if (!(last instanceof StoreError)) break; // not the network: a retry would fail the same way
      const wait = Math.round(delay / 2 + Math.random() * (delay / 2));
      if (clock.now() + wait >= until) break;
      await pause(wait);
      delay = Math.min(delay * 2, GIVE_BACK_MAX_DELAY_MS);
    }
    attempts++;
    try {
      return await release();
    } catch (err) {
      last = err;
    }
  }
  report(
    onError,
    new LockNotReleasedError(
      `lock "${key}" could not be given back after ${attempts} release attempt(s); it expired by itself`,
      { key, attempts, cause: last },
    ),
  );
  return 'failed';
}

/** One release now; if the store failed, the rest of giveBack() in the background. Never throws. */
export async function releaseOrGiveBack(job: GiveBack): Promise<void> {
  try {
    await job.release();
  } catch (err) {
    if (err instanceof StoreError) void giveBack(job, err);
    else report(job.onError, err);
  }
}
