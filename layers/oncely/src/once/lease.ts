/**
 * Keeping records' leases alive while handlers run: the lease driver for records (extensions due in the same
 * tick go out as one runMany), the loop that extends, and the one timer per engine that starts it at half a
 * lease.
 */
import type { Clock } from '../clock.js';
import {
  type ExtendOutcome,
  extendOutcomeOf,
  giveBack,
  type Lease,
  type LeaseDriver,
  type ReleaseResult,
  releaseOrGiveBack,
  releaseResultOf,
} from '../lease.js';
import { EXTEND_WHEN_LEFT, keepLeases } from '../lease-keeper.js';
import type { ScriptCall, Store } from '../transport/types.js';
import type { Decided } from './decisions.js';
import type { Records } from './record.js';

/**
 * A lease driver for records. Extensions requested in the same tick (a batch's leases all come due together)
 * go to the store as one runMany.
 */
export class RecordDriver implements LeaseDriver {
  #queue: { call: ScriptCall; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  constructor(
    readonly store: Store,
    readonly records: Records,
  ) {}

  extend(key: string, token: string, ttlMs: number): Promise<ExtendOutcome> {
    const call = this.records.extend(key, token, ttlMs);
    return new Promise<unknown>((resolve, reject) => {
      this.#queue.push({ call, resolve, reject });
      if (this.#queue.length === 1) queueMicrotask(() => this.#flush());
    }).then(extendOutcomeOf);
  }

  async release(key: string, token: string): Promise<ReleaseResult> {
    const c = this.records.release(key, token);
    return releaseResultOf(await this.store.run(c.script, c.keys, c.args));
  }

  async #flush(): Promise<void> {
    const batch = this.#queue;
    this.#queue = [];
    const store = this.store;
    try {
      if (batch.length === 1) {
        const only = batch[0]!;
        only.resolve(await store.run(only.call.script, only.call.keys, only.call.args));
        return;
      }
      const results = await store.runMany(batch.map((b) => b.call));
      batch.forEach((b, i) => {
        const r = results[i];
        if (r?.ok) b.resolve(r.value);
        else b.reject(r?.error ?? new Error('no reply'));
      });
    } catch (err) {
      for (const b of batch) b.reject(err);
    }
  }
}

/**
 * Keeps records' `leases` alive (the one lease-keeping loop, lease-keeper.ts): extends them together when half
 * their lease is left, to `ttlFor()` (ttlMs, or less near the invocation's deadline). Once an extension has
 * reached the deadline no later one could move it, so it stops there (the lease then runs out marginMs before
 * Lambda would stop the invocation), or when stopped.
 */
export function keepAlive(
  leases: () => Lease[],
  ttlFor: () => number,
  ttlMs: number,
  clock: Clock,
  onError: (e: Error) => void,
  now = false,
): () => void {
  return keepLeases({
    leases,
    dueInMs: (l) => l.validUntil - l.ttlMs * EXTEND_WHEN_LEFT - clock.now(),
    ttlMs: ttlFor,
    last: (ttl) => ttl < ttlMs,
    onError,
    now,
  });
}

/**
 * Starts each run's keepAlive when half its lease is left, on one timer per engine: a run that is done sooner
 * (most are) adds itself to a map and leaves it, where it would otherwise arm and clear a timer of its own.
 * The timer is armed for the earliest due run and re-armed for the next one when it fires.
 */
export class Halfway<T> {
  readonly #runs = new Map<T, { due: number; ttlFor: () => number; start: HalfwayStart<T> }>();
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (clock units); Infinity when none is armed. */
  #at = Number.POSITIVE_INFINITY;
  readonly #fire = () => this.#run();
  constructor(readonly clock: Clock) {}

  add(run: T, due: number, ttlFor: () => number, start: HalfwayStart<T>): void {
    this.#runs.set(run, { due, ttlFor, start });
    if (due < this.#at) {
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#arm(due);
    }
  }

  delete(run: T): void {
    this.#runs.delete(run);
  }

  #arm(due: number): void {
    this.#at = due;
    this.#timer = setTimeout(this.#fire, Math.max(0, due - this.clock.now()));
    this.#timer.unref?.();
  }

  #run(): void {
    this.#timer = undefined;
    this.#at = Number.POSITIVE_INFINITY;
    // Within a millisecond counts as due: timers fire on whole milliseconds, a monotonic clock has fractions.
    const now = this.clock.now() + 1;
    let next = Number.POSITIVE_INFINITY;
    for (const [run, r] of this.#runs) {
      if (r.due <= now) {
        this.#runs.delete(run);
        r.start(run, r.ttlFor);
      } else if (r.due < next) next = r.due;
    }
    if (next !== Number.POSITIVE_INFINITY && next < this.#at) this.#arm(next);
  }
}

export type HalfwayStart<T> = (run: T, ttlFor: () => number) => void;

/** What a record's give-back needs of its engine. */
interface GiveBackHost {
  readonly store: Store;
  readonly records: Records;
  readonly options: { readonly clock: Clock };
  decide(d: Decided): void;
}

/**
 * Giving back a record we may have claimed but will not use (lease.ts giveBack, as locks do): retried with
 * backoff until released, not ours, or past the lease (`ttlMs` from now); a final failure becomes a
 * 'give-back-failed' decision.
 */
export function recordGiveBack(host: GiveBackHost, key: string, token: string, ttlMs: number) {
  const c = host.records.release(key, token);
  const release = async () => releaseResultOf(await host.store.run(c.script, c.keys, c.args));
  const until = host.options.clock.now() + ttlMs;
  const failed = (e: Error) =>
    host.decide({
      decision: 'give-back-failed',
      key,
      reason: `${e.message}: ${e.cause instanceof Error ? e.cause.message : 'no cause'}`,
    });
  const job = { key, release, clock: host.options.clock, until, onError: failed };
  return {
    giveBack: (firstError?: Error) => giveBack(job, firstError),
    releaseOrGiveBack: () => releaseOrGiveBack(job),
  };
}
