/**
 * Redlock: one lock over N independent stores (any mix of Upstash REST, standalone Redis, Redis Cluster), with
 * the same lease API as a single-store Lock: tryAcquire / acquire / using, auto-extend, the lost-lease signal
 * and a fencing token.
 *
 * Reads top to bottom: options, then the class (the fan-out helpers, per-node timeout and stop at quorum, are
 * in fan-out.ts):
 * acquire (parallel, quorum within validity, fence raise, undo on failure), extend and release on all nodes.
 * The safety argument, including why fences stay strictly increasing across different quorums, is in
 * docs/redlock.md.
 */

import {
  type AcquireOptions,
  type Attempt,
  acquireLoop,
  acquireProblems,
  checkTry,
  driftOf,
  fenceKeyOf,
  keyProblems,
  LOCK_DEFAULTS,
  type LockBaseOptions,
  type Locker,
  leaderKeyOf,
  lockKeyOf,
  lockOptionProblems,
  newToken,
  type UsingOptions,
} from './acquire.js';
import type { Clock } from './clock.js';
import { type NodeOutcome, quorumNotReached } from './errors.js';
import {
  count,
  defaultNodeTimeoutMs,
  fanOut,
  gather,
  isAmbiguous,
  MAX_DEFAULT_NODE_TIMEOUT_MS,
  MAX_NODE_TIMEOUT_MS,
  type NodeAnswer,
  type Parsed,
  parseAcquire,
} from './fan-out.js';
import { DEFAULT_GIVE_BACK_LIMIT_MS, GiveBacks, releaseOf } from './give-back.js';
import { Lease, type LeaseDriver, validUntil } from './lease.js';
import { keepLeaseWhile } from './lease-keeper.js';
import { quorumDriver } from './quorum-driver.js';
import { ACQUIRE, FENCE_RAISE, RELEASE } from './scripts.js';
import type { Store } from './transport/types.js';
import {
  check,
  extendBeforeProblems,
  fnProblems,
  isWhole,
  MAX_TTL_MS,
  resolveOptions,
  wholeProblems,
} from './validate.js';

// ---------------------------------------------------------------------------------------------- options

export interface RedlockOptions extends LockBaseOptions {
  /**
   * How many nodes must agree. At least a majority (so that any two quorums share a node), at most all.
   * @default Math.floor(stores.length / 2) + 1
   */
  quorum?: number;
  /**
   * How long to wait for one node's answer before counting it unreachable. A frozen node never delays an
   * operation by more than this. Keep it small next to the TTL: validity = ttl − elapsed − drift.
   * @default ttlMs / 10, at least 10 and at most 1000
   */
  nodeTimeoutMs?: number;
  /**
   * Called with errors from background work: a node whose grant may have been applied (a late or ambiguous
   * answer) could not be given back in time (LockNotReleasedError: a TTL after the node answered again, or
   * `giveBackLimitMs` without an answer), once per node and attempt. Exceptions it throws are ignored.
   * @default errors are dropped (the key expires with its TTL)
   */
  onError?: (error: Error) => void;
  /**
   * How long the give-back to a late node goes on while the node answers nothing (paused, cut off): it may run
   * the acquire whenever it wakes, and the key then lives a TTL from that moment. At least the TTL; past it,
   * the give-back is reported to `onError` and the key is left to its TTL. 0: stop at the TTL.
   * @default 300_000 (5 minutes)
   */
  giveBackLimitMs?: number;
}

// ------------------------------------------------------------------------------------------------ the lock

/**
 * A lock held by a quorum of independent stores. Implements the same Locker interface as Lock.
 *
 * - acquire runs on every node at once, each bounded by the per-node timeout, and decides as soon as a quorum
 *   granted (or can no longer grant): the slowest node never delays it. The lease is valid for
 *   ttl − elapsed − drift from the moment the first request was sent.
 * - a failed attempt releases every node that granted (and, in the background, any node whose answer was late
 *   or ambiguous, until a release sent after the node answered again lands: give-back.ts).
 * - extend and release run on every node; extend succeeds with a quorum inside validity.
 * - errors are QuorumErrors naming each node's outcome.
 */
export class Redlock implements Locker {
  readonly stores: readonly Store[];
  readonly quorum: number;
  readonly #prefix: string;
  readonly #clock: Clock;
  readonly #nodeTimeoutMs: number | undefined;
  readonly #nodes: readonly string[];
  readonly #giveBacks: GiveBacks;
  readonly #fenceGraceMs: number;
  readonly #wallClock: () => number;
  readonly #drift: (ttlMs: number) => number;
  readonly #driver: LeaseDriver;
  /** gather()'s reader and tests of an acquire, made once (not per attempt). */
  readonly #parseAcquire = (i: number, a: NodeAnswer) => parseAcquire(this.stores[i]!, a);
  /** Decided at quorum, or as soon as the nodes still out cannot make one. */
  readonly #acquireDecided = (r: readonly (Parsed | undefined)[]) => {
    const ok = count(r, 'ok');
    return ok >= this.quorum || ok + count(r, undefined) < this.quorum;
  };
  /** A split (another holder has a node): the nodes still out get a short wait, not the node timeout. */
  readonly #split = (r: readonly (Parsed | undefined)[]) => count(r, 'taken') > 0;

  constructor(stores: readonly Store[], options: RedlockOptions = {}) {
    const list = Array.isArray(stores) ? stores : [];
    const majority = Math.floor(list.length / 2) + 1;
    const o = resolveOptions(
      options,
      { ...LOCK_DEFAULTS, quorum: majority, giveBackLimitMs: DEFAULT_GIVE_BACK_LIMIT_MS },
      (o) => {
        const p = lockOptionProblems(o);
        if (list.length === 0) p.push('stores must be a non-empty array of Stores');
        if (new Set(list).size !== list.length) p.push('stores must not list the same Store twice');
        if (!isWhole(o.quorum, majority, Math.max(list.length, 1)))
          p.push(
            `quorum must be a whole number from ${majority} (a majority: two quorums must share a node) to ` +
              `${list.length}, got ${String(o.quorum)}`,
          );
        if (o.nodeTimeoutMs !== undefined)
          p.push(...wholeProblems('nodeTimeoutMs', o.nodeTimeoutMs, 1, MAX_NODE_TIMEOUT_MS, 'ms'));
        p.push(...fnProblems('onError', o.onError));
        p.push(...wholeProblems('giveBackLimitMs', o.giveBackLimitMs, 0, MAX_TTL_MS, 'ms'));
        return p;
      },
      'Redlock options',
      { nodeTimeoutMs: true, onError: true },
    );
    this.stores = [...list];
    this.quorum = o.quorum;
    this.#prefix = o.prefix;
    this.#clock = o.clock;
    this.#drift = driftOf(o);
    this.#nodeTimeoutMs = o.nodeTimeoutMs;
    this.#fenceGraceMs = o.fenceGraceMs;
    this.#wallClock = o.wallClock;
    this.#giveBacks = new GiveBacks(o.clock, o.onError, { limitMs: o.giveBackLimitMs });
    this.#nodes = list.map((s, i) => `#${i} ${s.name}`);
    this.#driver = quorumDriver({
      stores: this.stores,
      quorum: this.quorum,
      fenceGraceMs: this.#fenceGraceMs,
      releaseTimeoutMs: this.#releaseTimeoutMs,
      keyOf: (k) => this.keyOf(k),
      fenceKeyOf: (k) => this.fenceKeyOf(k),
      nodeTimeoutMs: (ttlMs) => this.nodeTimeoutMs(ttlMs),
      outcomes: (results) => this.#outcomes(results),
    });
  }

  get fenceGraceMs(): number {
    return this.#fenceGraceMs;
  }
  /** Give-backs to late or ambiguous nodes still running in the background (see `onError`). */
  get pendingGiveBacks(): number {
    return this.#giveBacks.pending;
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
  /** Release does not know the lease's TTL: the configured node timeout, else the default's upper bound. */
  get #releaseTimeoutMs(): number {
    return this.#nodeTimeoutMs ?? MAX_DEFAULT_NODE_TIMEOUT_MS;
  }
  /** The per-node timeout used for a lease of `ttlMs`. */
  nodeTimeoutMs(ttlMs: number): number {
    return this.#nodeTimeoutMs ?? defaultNodeTimeoutMs(ttlMs);
  }

  /**
   * One attempt. A lease; null when other holders have the lock on so many nodes that no quorum is possible;
   * otherwise (unreachable nodes, quorum reached too late) a QuorumError naming every node's outcome.
   */
  async tryAcquire(key: string, options: { ttlMs: number }): Promise<Lease | null> {
    checkTry(key, options);
    const result = await this.#attempt(key, options.ttlMs, newToken());
    if (result.lease) return result.lease;
    if (result.held) return null;
    throw result.error;
  }

  /**
   * Waits for the lock per `retry` (default 10 attempts, 200 ms ± 100 ms apart; `{ attempts: 1 }` fails fast).
   * Throws LockNotAcquiredError whose cause is the last attempt's QuorumError.
   */
  async acquire(key: string, options: AcquireOptions): Promise<Lease> {
    check([...keyProblems(key), ...acquireProblems(options)], 'acquire');
    // A token per attempt: a failed attempt's give-back (which may run on after it) cannot take a later
    // attempt's grant on the same node.
    return acquireLoop(key, () => this.#attempt(key, options.ttlMs, newToken()), options, this.#clock);
  }

  /** acquire(), then run `fn` with the lease, auto-extending it on a quorum, and always release. */
  async using<T>(key: string, fn: (lease: Lease) => Promise<T>, options: UsingOptions): Promise<T> {
    check(extendBeforeProblems(options?.extendBeforeMs, options?.ttlMs), 'using');
    const lease = await this.acquire(key, options);
    return keepLeaseWhile(lease, fn, options, this.#clock);
  }

  // ------------------------------------------------------------------------------------------- acquire

  async #attempt(
    key: string,
    ttlMs: number,
    token: string,
  ): Promise<Attempt & { error?: Error; held?: boolean }> {
    const startedAt = this.#clock.now();
    const timeoutMs = this.nodeTimeoutMs(ttlMs);
    const q = this.quorum;
    const { decided, heard, raw } = gather(
      this.stores,
      ACQUIRE,
      [this.keyOf(key), this.fenceKeyOf(key)],
      // One floor for every node (the client's clock): a quorum's fences then agree and need no raise.
      [token, ttlMs, ttlMs + this.#fenceGraceMs, Math.floor(this.#wallClock()), 'client'],
      timeoutMs,
      this.#parseAcquire,
      this.#acquireDecided,
      this.#split,
    );
    const results = await decided;

    let detail: string | undefined;
    const granted: { i: number; fence: number }[] = [];
    for (let i = 0; i < results.length; i++) {
      const r = results[i];
      if (r?.status === 'ok') granted.push({ i, fence: r.value ?? 0 });
    }
    if (granted.length >= q) {
      // Usually the quorum's counters agree (one floor for every node) and no raise is needed: no await then.
      const fence = this.#agreedFence(granted) ?? (await this.#raiseFence(key, granted, ttlMs, timeoutMs));
      const elapsedMs = this.#clock.now() - startedAt;
      if (fence === undefined) detail = 'the fence could not be raised on a quorum';
      else if (startedAt + elapsedMs >= validUntil(startedAt, ttlMs, this.#drift))
        detail = `quorum reached after ${Math.round(elapsedMs)} ms, past the lease validity`;
      else
        return {
          lease: new Lease({
            key,
            token,
            fence,
            ttlMs,
            startedAt,
            drift: this.#drift,
            clock: this.#clock,
            driver: this.#driver,
          }),
        };
    }

    await this.#undo(key, token, results, raw, timeoutMs, ttlMs);
    // Taken after the undo: nodes that answered while it ran are named too, not left `pending`.
    const outcomes = this.#outcomes(results.map((r, i) => r ?? heard[i]));
    const taken = results.filter((r) => r?.status === 'taken');
    const pttls = taken.map((r) => r?.value ?? 0).filter((v) => v > 0);
    return {
      lease: null,
      // Held: the other holders alone leave fewer free nodes than a quorum (whatever the rest answer).
      held: detail === undefined && taken.length > this.stores.length - q,
      retryAfterMs: pttls.length > 0 ? Math.min(...pttls) : undefined,
      error: quorumNotReached(key, 'acquire', q, outcomes, detail),
      nodes: outcomes,
    };
  }

  /** The quorum's fence when enough granting nodes already hold it (nothing to raise), else undefined. */
  #agreedFence(granted: readonly { i: number; fence: number }[]): number | undefined {
    let fence = 0;
    for (const g of granted) if (g.fence > fence) fence = g.fence;
    let atTop = 0;
    for (const g of granted) if (g.fence === fence) atTop++;
    return atTop >= this.quorum ? fence : undefined;
  }

  /**
   * The fence of a new lease, strictly greater than any fence handed out before it.
   *
   * Each granting node INCRed its own counter, and the counters differ when earlier quorums were different
   * subsets. We hand out F = the largest fence of this quorum, but only after a quorum of the granting nodes
   * holds a counter ≥ F: those whose INCR already gave F, plus those we raise to F (FENCE_RAISE, max(cur, F)).
   *
   * Why that makes fences strictly increasing: any later holder needs a quorum too, and two quorums share a
   * node m. While our key lives on m (we raise inside validity, our key outlives it), nobody else can INCR
   * m's counter; afterwards, whoever takes m INCRs a counter that is already ≥ F, so gets > F, and its own
   * fence (the maximum over its quorum) is > F. This needs each node's counter to survive restarts
   * (persistence on), as Redlock's mutual exclusion needs its keys to.
   *
   * Returns undefined when fewer than a quorum could be brought to F (the attempt then fails).
   */
  async #raiseFence(
    key: string,
    granted: readonly { i: number; fence: number }[],
    ttlMs: number,
    timeoutMs: number,
  ): Promise<number | undefined> {
    const fence = Math.max(...granted.map((g) => g.fence));
    const low = granted.filter((g) => g.fence < fence);
    const need = this.quorum - (granted.length - low.length);
    if (need <= 0) return fence;
    const ok = (a: NodeAnswer | undefined) => a?.ok === true && FENCE_RAISE.parse(a.value) >= fence;
    const results = await gather(
      low.map((g) => this.stores[g.i]!),
      FENCE_RAISE,
      [this.fenceKeyOf(key)],
      [fence, ttlMs + this.#fenceGraceMs],
      timeoutMs,
      (_, a) => a,
      (r) => {
        const raised = r.filter(ok).length;
        return raised >= need || raised + r.filter((a) => a === undefined).length < need;
      },
    ).decided;
    return results.filter(ok).length >= need ? fence : undefined;
  }

  /**
   * Gives back a failed attempt's partial acquisitions: awaited on the nodes that granted; on nodes whose answer
   * was late or ambiguous (and granted nodes whose release failed), in the background until a release lands
   * after the acquire (give-back.ts). A key we cannot reach expires with its TTL.
   */
  async #undo(
    key: string,
    token: string,
    results: readonly (Parsed | undefined)[],
    raw: readonly Promise<unknown>[],
    timeoutMs: number,
    ttlMs: number,
  ): Promise<void> {
    const keys = [this.keyOf(key), this.fenceKeyOf(key)];
    const args = [token, this.#fenceGraceMs];
    const giveBack = (i: number, acquire: Promise<unknown>, answered: boolean) =>
      void this.#giveBacks.start({
        key,
        node: this.#nodes[i]!,
        ttlMs,
        acquire,
        answered,
        release: async () => releaseOf(await this.stores[i]!.run(RELEASE, keys, args)),
      });
    const waits: Promise<unknown>[] = [];
    results.forEach((r, i) => {
      if (r?.status === 'ok') {
        const { answers } = fanOut([this.stores[i]!], RELEASE, keys, args, timeoutMs);
        // Granted: a release that failed leaves our key there, whatever the failure.
        waits.push(answers[0]!.then((a) => a.ok || giveBack(i, raw[i]!, true)));
      } else if (r === undefined || (r.status === 'unreachable' && isAmbiguous(r.cause))) {
        giveBack(i, raw[i]!, false);
      }
    });
    await Promise.all(waits);
  }

  #outcomes(results: readonly (Parsed | undefined)[]): NodeOutcome[] {
    return results.map((r, i) => ({
      node: this.#nodes[i]!,
      status: r?.status ?? 'pending',
      ...(r?.cause ? { cause: r.cause } : {}),
      ...(r?.status === 'taken' && r.value !== undefined && r.value > 0 ? { holderTtlMs: r.value } : {}),
    }));
  }
}

/** `new Redlock(stores, options)`. */
export function createRedlock(stores: readonly Store[], options?: RedlockOptions): Redlock {
  return new Redlock(stores, options);
}
