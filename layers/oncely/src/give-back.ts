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
 * resent by TCP across a partition could land later, and only its TTL ends it. A key set by the acquire lives
 * a TTL from when it ran, at the latest from the node's first answer: that moment moves the deadline.
 *
 * A give-back first waits for the acquire itself to settle (its reply makes the first release final; a failure
 * that says it was never sent ends the give-back), then keeps one release in flight at a time (bounded by the
 * store's own timeout), so a node that comes back answers the one already queued there; a failed release is
 * sent again after a backoff (GIVE_BACK_DELAY_MS doubling to GIVE_BACK_MAX_DELAY_MS, jittered, counted from
 * when the failed one was sent). A give-back that cannot land before the deadline is reported to `onError`
 * once, as a LockNotReleasedError, and stops. At most MAX_PENDING_GIVE_BACKS run at once per lock; past that a
 * grant is reported at once and left to its TTL. Timers never keep the process alive.
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
import { ownerReply } from './scripts.js';

/** How many give-backs one lock runs at once; more are reported at once and left to their TTL. */
export const MAX_PENDING_GIVE_BACKS = 1000;

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
  const r = ownerReply(reply);
  if (r === 'unexpected') throw new OncelyError(`unexpected release reply ${JSON.stringify(reply)}`);
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
  readonly #limit: number;
  #pending = 0;

  constructor(clock: Clock, onError: ((error: Error) => void) | undefined, limit = MAX_PENDING_GIVE_BACKS) {
    this.#clock = clock;
    this.#onError = onError;
    this.#limit = limit;
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
    if (this.#pending >= this.#limit) {
      grant.acquire.catch(() => undefined);
      this.#fail(grant, `was not given back (${this.#limit} give-backs are already running)`);
      return Promise.resolve('failed');
    }
    this.#pending++;
    return this.#run(grant).finally(() => {
      this.#pending--;
    });
  }

  async #run(grant: LateGrant): Promise<ReleaseResult | 'not-sent' | 'failed'> {
    const clock = this.#clock;
    let until = clock.now() + grant.ttlMs;
    // The node has answered a request sent no earlier than the acquire: a release sent from now on is final.
    let answered = grant.answered === true;
    const seen = () => {
      if (answered) return;
      answered = true;
      until = Math.max(until, clock.now() + grant.ttlMs);
    };
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
      acquire === undefined ? new OncelyError('the acquire got no answer within the lease time') : undefined;
    let delay = GIVE_BACK_DELAY_MS;
    while (last === undefined || last instanceof StoreError) {
      const final = answered;
      const sentAt = clock.now();
      attempts++;
      try {
        const answer = await within(grant.release(), until - sentAt);
        if (answer === undefined) {
          last = new OncelyError('no answer before the lease would have expired there');
          break;
        }
        if (final) return answer;
        seen();
        delay = GIVE_BACK_DELAY_MS;
        continue;
      } catch (err) {
        last = err; // a StoreError is sent again; anything else would fail the same way
        if (!(err instanceof StoreError)) break;
      }
      const wait = Math.round(delay / 2 + Math.random() * (delay / 2)) - (clock.now() - sentAt);
      delay = Math.min(delay * 2, GIVE_BACK_MAX_DELAY_MS);
      if (clock.now() + Math.max(0, wait) >= until) break;
      if (wait > 0) await pause(wait);
    }
    this.#fail(grant, `could not be given back after ${attempts} release attempt(s)`, attempts, last);
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
