/**
 * Single-store locks: tryAcquire / acquire / using / status / resume / oncePerWindow, over any Store.
 *
 * Reads top to bottom: options, then the Lock class. The Lease it hands out is in lease.ts, the retry loop it
 * shares with Redlock in acquire.ts, using()'s extension loop in lease-keeper.ts, several keys at once in
 * lock-set.ts.
 */

import {
  type AcquireOptions,
  type Attempt,
  acquireLoop,
  acquireProblems,
  checkTry,
  driftOf,
  failedOn,
  fenceKeyOf,
  keyProblems,
  LOCK_DEFAULTS,
  type LockBaseOptions,
  type Locker,
  leaderKeyOf,
  lockKeyOf,
  lockOptionProblems,
  MAX_KEY_BYTES,
  newToken,
  takenOn,
  type UsingOptions,
} from './acquire.js';
import type { Clock } from './clock.js';
import { lockLost, StoreError } from './errors.js';
import {
  checkOutcome,
  extendOutcomeOf,
  type GiveBack,
  giveBack,
  Lease,
  type LeaseDriver,
  type LeaseInit,
  type ReleaseResult,
  releaseOrGiveBack,
  releaseResultOf,
  report,
  validUntil,
} from './lease.js';
import { keepLeaseWhile } from './lease-keeper.js';
import { acquireAll, isKeyList, type LockCore, tryAcquireAll } from './lock-set.js';
import {
  ACQUIRE,
  EXTEND,
  LOCK_CHECK,
  LOCK_RESUME,
  LOCK_STATUS,
  RELEASE,
  WINDOW_OPEN,
} from './scripts/lock.js';
import type { Store } from './transport/types.js';
import {
  check,
  extendBeforeProblems,
  fnProblems,
  resolveOptions,
  ttlProblems,
  unknownProblems,
} from './validate.js';

// ---------------------------------------------------------------------------------------------- options

export interface LockOptions extends LockBaseOptions {
  /**
   * Called with errors from work in the background, which nothing awaits: a lock given back after an ambiguous
   * acquire whose release failed until the lease had expired (LockNotReleasedError), a release on `await using`
   * scope exit that failed. Exceptions it throws are ignored.
   * @default errors are dropped (the key expires with its TTL)
   */
  onError?: (error: Error) => void;
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

// ------------------------------------------------------------------------------------------------ the lock

/** Locks on one store (Upstash REST, standalone Redis, or a Redis Cluster). */
export class Lock implements Locker {
  readonly store: Store;
  readonly stores: readonly Store[];
  readonly quorum = 1;
  readonly #prefix: string;
  readonly #clock: Clock;
  readonly #driver: LeaseDriver;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #fenceGraceMs: number;
  readonly #wallClock: () => number;
  readonly #core: LockCore;
  readonly #drift: (ttlMs: number) => number;

  constructor(store: Store, options: LockOptions = {}) {
    const o = resolveOptions(
      options,
      LOCK_DEFAULTS,
      (o) => [...lockOptionProblems(o), ...fnProblems('onError', o.onError)],
      'Lock options',
      { onError: true },
    );
    const { clock } = o;
    this.store = store;
    this.stores = [store];
    this.#onError = o.onError;
    this.#prefix = o.prefix;
    this.#clock = clock;
    this.#drift = driftOf(o);
    this.#fenceGraceMs = o.fenceGraceMs;
    this.#wallClock = o.wallClock;
    this.#driver = {
      extend: async (key, token, ttlMs) =>
        extendOutcomeOf(
          EXTEND.parse(
            await store.run(
              EXTEND,
              [this.keyOf(key), this.fenceKeyOf(key)],
              [token, ttlMs, ttlMs + this.#fenceGraceMs],
            ),
          ),
        ),
      release: async (key, token) =>
        releaseResultOf(
          RELEASE.parse(
            await store.run(RELEASE, [this.keyOf(key), this.fenceKeyOf(key)], [token, this.#fenceGraceMs]),
          ),
        ),
      check: async (key, token) =>
        checkOutcome(LOCK_CHECK.parse(await store.run(LOCK_CHECK, [this.keyOf(key)], [token]))),
    };
    this.#core = {
      store,
      clock,
      driver: this.#driver,
      keyOf: (k) => this.keyOf(k),
      fenceKeyOf: (k) => this.fenceKeyOf(k),
      drift: this.#drift,
      lease: (init) => this.#lease(init),
      giveBack: (k, release, ttlMs) => this.#giveBack(k, release, ttlMs),
      releaseOrGiveBack: (k, release, ttlMs) => this.#releaseOrGiveBack(k, release, ttlMs),
      fenceGraceMs: this.#fenceGraceMs,
      acquireArgs: (token, ttlMs) => this.#acquireArgs(token, ttlMs),
    };
  }

  get fenceGraceMs(): number {
    return this.#fenceGraceMs;
  }
  keyOf(key: string): string {
    return lockKeyOf(this.#prefix, key);
  }
  fenceKeyOf(key: string): string {
    return fenceKeyOf(this.#prefix, key);
  }
  leaderKeyOf(key: string): string {
    return leaderKeyOf(this.#prefix, key);
  }

  /**
   * One attempt: a lease, or null when another owner holds the lock. Store failures throw StoreError.
   * With several keys, a lease on all of them or null (see acquire).
   */
  async tryAcquire(key: string | readonly string[], options: { ttlMs: number }): Promise<Lease | null> {
    if (isKeyList(key)) return tryAcquireAll(this.#core, key, options);
    checkTry(key, options);
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
    if (isKeyList(key)) return acquireAll(this.#core, key, options);
    check([...keyProblems(key), ...acquireProblems(options)], 'acquire');
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
    check(extendBeforeProblems(options?.extendBeforeMs, options?.ttlMs), 'using');
    const lease = await this.acquire(key, options);
    return keepLeaseWhile(lease, fn, options, this.#clock);
  }

  /**
   * The lock's state without holding it, in one read-only round trip: held or free, the holder's remaining
   * ms and its fence. Never the token.
   */
  async status(key: string): Promise<LockStatus> {
    check(keyProblems(key), 'status');
    const reply = await this.store.run(LOCK_STATUS, [this.keyOf(key), this.fenceKeyOf(key)], []);
    return LOCK_STATUS.parse(reply, this.store.name);
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
    const unknown = unknownProblems(options, { ttlMs: true });
    check([...keyProblems(key), ...tokenProblems, ...ttlProblems(options?.ttlMs), ...unknown], 'resume');
    const { ttlMs } = options;
    const startedAt = this.#clock.now();
    const reply = await this.store.run(
      LOCK_RESUME,
      [this.keyOf(key), this.fenceKeyOf(key)],
      [token, ttlMs, ttlMs + this.#fenceGraceMs],
    );
    const { owner, fence } = LOCK_RESUME.parse(reply, this.store.name);
    const outcome = extendOutcomeOf(owner);
    if (outcome !== 'extended') throw lockLost(key, outcome);
    return this.#lease({ key, token, fence, ttlMs, startedAt, driver: this.#driver });
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
    const problems = [
      ...keyProblems(key),
      ...ttlProblems(options?.windowMs, 'windowMs'),
      ...unknownProblems(options, { windowMs: true, reopenOnError: true }),
    ];
    if (typeof fn !== 'function') problems.push('fn must be a function');
    if (options?.reopenOnError !== undefined && typeof options.reopenOnError !== 'boolean')
      problems.push('reopenOnError must be a boolean');
    check(problems, 'oncePerWindow');
    const windowKey = `${this.#prefix}:{${key}}:window`;
    const token = newToken();
    const reply = await this.store.run(WINDOW_OPEN, [windowKey], [token, options.windowMs]);
    const window = WINDOW_OPEN.parse(reply, this.store.name);
    if (!window.opened) return { ran: false, retryAfterMs: window.remainingMs };
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

  #lease(init: Omit<LeaseInit, 'drift' | 'clock' | 'onError'>): Lease {
    // One object literal of one shape (a spread here made every Lease's init slow to read).
    return new Lease({
      key: init.key,
      token: init.token,
      fence: init.fence,
      ttlMs: init.ttlMs,
      startedAt: init.startedAt,
      driver: init.driver,
      keys: init.keys,
      fences: init.fences,
      drift: this.#drift,
      clock: this.#clock,
      onError: this.#onError,
    });
  }

  /** The give-back of `key`'s lease of `ttlMs`, from now. */
  #job(key: string, release: () => Promise<ReleaseResult>, ttlMs: number): GiveBack {
    return { key, release, clock: this.#clock, until: this.#clock.now() + ttlMs, onError: this.#onError };
  }
  #giveBack(key: string, release: () => Promise<ReleaseResult>, ttlMs: number) {
    return giveBack(this.#job(key, release, ttlMs));
  }
  #releaseOrGiveBack(key: string, release: () => Promise<ReleaseResult>, ttlMs: number) {
    return releaseOrGiveBack(this.#job(key, release, ttlMs));
  }

  /** ACQUIRE's and LOCK_ACQUIRE_ALL's arguments: token, ttl, the counter's life, the fallback time floor. */
  #acquireArgs(token: string, ttlMs: number): (string | number)[] {
    return [token, ttlMs, ttlMs + this.#fenceGraceMs, Math.floor(this.#wallClock())];
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
      if (err instanceof StoreError)
        return { lease: null, error: err, nodes: [failedOn(this.store.name, err)] };
      throw err;
    }
    const r = ACQUIRE.parse(reply, this.store.name);
    if (r.kind === 'held')
      return {
        lease: null,
        retryAfterMs: r.remainingMs > 0 ? r.remainingMs : undefined,
        nodes: [takenOn(this.store.name, r.remainingMs)],
      };
    if (this.#clock.now() >= validUntil(startedAt, ttlMs, this.#drift)) {
      // The reply came back too late to be of use: undo and count it as a failed attempt.
      await this.#releaseOrGiveBack(key, () => this.#driver.release(key, token), ttlMs);
      return { lease: null };
    }
    return { lease: this.#lease({ key, token, fence: r.fence, ttlMs, startedAt, driver: this.#driver }) };
  }
}

/** `new Lock(store, options)`. */
export function createLock(store: Store, options?: LockOptions): Lock {
  return new Lock(store, options);
}
