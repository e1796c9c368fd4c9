/**
 * Giving back a grant that may still land: a node whose answer to an acquire was late or ambiguous (it timed
 * out, the node is paused or cut off) may run that acquire whenever it comes back, and the key then stays for
 * a whole TTL from that moment unless a release runs after it.
 *
 * The rule: a release's answer is final only if that release was sent after the node had been seen answering
 * a request sent no earlier than the acquire (the acquire's own reply, or an earlier release's answer). Until
 * then a conclusive answer ('released', 'not-held', 'expired') may come from a release that overtook the
 * acquire: after a timeout the acquire can sit on a connection we dropped while the release went on a new
 * one, and a node that wakes up serves its connections in no order we choose. The node's first answer shows
 * it is serving again; a server reads what waits on each connection it serves before it answers any of them,
 * so the release sent after that answer runs after the acquire (on the same connection, behind it, in any
 * case). This assumes the acquire had reached the node by then, as it has on a paused node; one still being
 * resent by TCP across a partition could land later, and only its TTL ends it.
 *
 * The deadline is the key's life on the node, which starts when the node runs the acquire, not when we sent
 * it. While the node has answered nothing since the acquire, it may run it at any moment (a pause longer than
 * the TTL leaves it queued there): the give-back goes on past the TTL, up to the hard limit, the longer of the
 * TTL and `limitMs` (DEFAULT_GIVE_BACK_LIMIT_MS, a Redlock's `giveBackLimitMs`), counted from the start of the
 * give-back. The node's first answer ends that: a key set by the acquire lives a TTL from then at the latest,
 * so the deadline becomes a TTL after that answer.
 *
 * A give-back first waits for the acquire itself to settle (its reply makes the first release final; a failure
 * that says it was never sent ends the give-back), then keeps one release in flight at a time (bounded by the
 * store's own timeout), so a node that comes back answers the one already queued there; a failed release is
 * sent again after a backoff (GIVE_BACK_DELAY_MS doubling to GIVE_BACK_MAX_DELAY_MS, jittered, counted from
 * when the failed one was sent). Past the TTL the backoff may grow to a LATE_DELAY_DIVISORth of the time since
 * the start: a long pause then queues tens of releases on a kept connection, not hundreds, and a key set when
 * the node wakes stays at most about that long. A give-back that cannot land before its deadline is reported
 * to `onError` once, as a LockNotReleasedError, and stops. At most MAX_PENDING_GIVE_BACKS run at once per
 * lock; past that a grant is reported at once and left to its TTL. Timers never keep the process alive.
 */
import type { Clock } from './clock.js';
import { LockNotReleasedError, OncelyError, StoreError } from './errors.js';
import { isAmbiguous } from './fan-out.js';
import {
  GIVE_BACK_DELAY_MS,
  GIVE_BACK_MAX_DELAY_MS,
  type ReleaseResult,
  releaseResultOf,
  report,
} from './lease.js';
import { RELEASE, unexpectedReply } from './scripts.js';

/** How many give-backs one lock runs at once; more are reported at once and left to their TTL. */
export const MAX_PENDING_GIVE_BACKS = 1000;

/**
 * How long a give-back goes on, from its start, while the node has answered nothing since the acquire (at
 * least the TTL): 5 minutes. Longer than the stalls a node comes back from (a GC or fork pause, a VM
 * migration, a frozen container, a failover or a short partition: seconds to about a minute); short enough
 * that a node that is gone frees its slot among the MAX_PENDING_GIVE_BACKS in minutes, and that a long pause
 * costs tens of releases (see LATE_DELAY_DIVISOR).
 */
export const DEFAULT_GIVE_BACK_LIMIT_MS = 300_000;

/** Past the TTL, the backoff between releases grows to the time since the start divided by this. */
export const LATE_DELAY_DIVISOR = 10;

/** A grant that may still land on one node. */
export interface LateGrant {
  /** The lock's name and the node, for the error. */
  readonly key: string;
  readonly node: string;
  readonly ttlMs: number;
  /**
   * The acquire request itself. A reply shows the node has run it; a failure that says it was never sent
   * (not ambiguous) ends the give-back quietly.
   */
  readonly acquire: Promise<unknown>;
  /** Its reply has been seen already (the node granted in time): any release sent now is final. */
  readonly answered?: boolean;
  /** One release on that node: its conclusive answer, or a StoreError (sent again) or another error (stop). */
  readonly release: () => Promise<ReleaseResult>;
}

/** RELEASE's reply as a give-back reads it: an unexpected reply is an error (it ends the give-back). */
export function releaseOf(reply: unknown): ReleaseResult {
  const r = RELEASE.parse(reply);
  if (r === 'unexpected') throw unexpectedReply(RELEASE.name, reply);
  return releaseResultOf(r);
}

/** Resolves after `ms` without keeping the process alive for it (background work only). */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref?.());
}

/** `request`'s answer, or `undefined` once `ms` have passed first (the request goes on, unheard). */
function within<T>(request: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise<T | undefined>((resolve, reject) => {
    const timer = setTimeout(resolve, Math.max(0, ms), undefined);
    timer.unref?.();
    request.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** The give-backs of one lock (a Redlock's late nodes): started in the background, bounded, counted. */
export class GiveBacks {
  readonly #clock: Clock;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #maxPending: number;
  readonly #limitMs: number;
  #pending = 0;

  /**
   * `limitMs`: how long a give-back goes on while its node answers nothing (at least the TTL);
   * `maxPending`: how many run at once.
   */
  constructor(
    clock: Clock,
    onError: ((error: Error) => void) | undefined,
    { limitMs = DEFAULT_GIVE_BACK_LIMIT_MS, maxPending = MAX_PENDING_GIVE_BACKS } = {},
  ) {
    this.#clock = clock;
    this.#onError = onError;
    this.#maxPending = maxPending;
    this.#limitMs = limitMs;
  }

  /** Give-backs still running (each holds at most one timer, never one that keeps the process alive). */
  get pending(): number {
    return this.#pending;
  }

  /**
   * Starts giving back `grant` in the background. Never throws; the promise (for tests) settles with the final
   * answer, 'not-sent' when the acquire turned out never to have been sent, or 'failed' once reported.
   */
  start(grant: LateGrant): Promise<ReleaseResult | 'not-sent' | 'failed'> {
    if (this.#pending >= this.#maxPending) {
      grant.acquire.catch(() => undefined);
      this.#fail(grant, `was not given back (${this.#maxPending} give-backs are already running)`);
      return Promise.resolve('failed');
    }
    this.#pending++;
    return this.#run(grant).finally(() => {
      this.#pending--;
    });
  }

  async #run(grant: LateGrant): Promise<ReleaseResult | 'not-sent' | 'failed'> {
    const clock = this.#clock;
    const startedAt = clock.now();
    const limitMs = Math.max(grant.ttlMs, this.#limitMs);
    // Nothing heard since the acquire: the node may run it at any moment, up to the hard limit.
    let until = startedAt + limitMs;
    // The node has answered a request sent no earlier than the acquire: a release sent from now on is final,
    // and a key the acquire set lives a TTL from now at the latest.
    let answered = false;
    const seen = () => {
      if (answered) return;
      answered = true;
      until = clock.now() + grant.ttlMs;
    };
    if (grant.answered === true) seen();
    // First the acquire itself: its reply (the usual late node) makes the first release final; a failure that
    // says it was never sent ends here. Ambiguous, or no end to it: releases from now on.
    const acquire = await within(
      grant.acquire.then(
        () => 'replied' as const,
        (err: unknown) => (isAmbiguous(err) ? ('ambiguous' as const) : ('not-sent' as const)),
      ),
      until - clock.now(),
    );
    if (acquire === 'not-sent') return 'not-sent';
    if (acquire === 'replied') seen();
    let attempts = 0;
    let last: unknown =
      acquire === undefined ? new OncelyError(`the acquire got no answer within ${limitMs} ms`) : undefined;
    let delay = GIVE_BACK_DELAY_MS;
    let why = ` (the node answered nothing within ${limitMs} ms)`;
    while (last === undefined || last instanceof StoreError) {
      const final = answered;
      const sentAt = clock.now();
      attempts++;
      try {
        const answer = await within(grant.release(), until - sentAt);
        if (answer === undefined) {
          last = new OncelyError('no answer before the deadline');
          break;
        }
        if (final) return answer;
        seen();
        delay = GIVE_BACK_DELAY_MS;
        continue;
      } catch (err) {
        last = err; // a StoreError is sent again; anything else would fail the same way
        if (!(err instanceof StoreError)) {
          why = ''; // not the deadline
          break;
        }
      }
      let wait = Math.round(delay / 2 + Math.random() * (delay / 2)) - (clock.now() - sentAt);
      // A long backoff is cut short: a last release goes out a second before the deadline.
      const lastCallMs = until - clock.now() - GIVE_BACK_MAX_DELAY_MS;
      if (wait > lastCallMs && lastCallMs > 0) wait = lastCallMs;
      const elapsedMs = clock.now() - startedAt;
      // Past the TTL with nothing heard, a paused node: fewer releases queued on it, each waking noticed soon.
      const capMs =
        answered || elapsedMs < grant.ttlMs
          ? GIVE_BACK_MAX_DELAY_MS
          : Math.max(GIVE_BACK_MAX_DELAY_MS, elapsedMs / LATE_DELAY_DIVISOR);
      delay = Math.min(delay * 2, capMs);
      if (clock.now() + Math.max(0, wait) >= until) break;
      if (wait > 0) await pause(wait);
    }
    if (answered) why = '';
    this.#fail(grant, `could not be given back after ${attempts} release attempt(s)${why}`, attempts, last);
    return 'failed';
  }

  #fail(grant: LateGrant, what: string, attempts = 0, cause?: unknown): void {
    report(
      this.#onError,
      new LockNotReleasedError(
        `lock "${grant.key}" on node "${grant.node}" ${what}; it expires there by itself`,
        {
          key: grant.key,
          attempts,
          ...(cause !== undefined ? { cause } : {}),
        },
      ),
    );
  }
}
