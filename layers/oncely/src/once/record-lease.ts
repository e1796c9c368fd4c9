/**
 * Records' leases: the lease driver for records (calls made in the same tick go out as one runMany), keeping
 * the leases of one invocation's claimed records alive (keepLeases, started at half a lease by one timer per
 * engine), and giving back a record we may have claimed but will not use.
 */
import type { Clock } from '../clock.js';
import {
  type ExtendOutcome,
  extendOutcomeOf,
  type LeaseDriver,
  type ReleaseResult,
  releaseOrGiveBack,
  releaseResultOf,
  validUntil,
} from '../lease.js';
import { EXTEND_WHEN_LEFT, keepLeases } from '../lease-keeper.js';
import type { CallResult, ScriptCall, Store } from '../transport/types.js';
import type { Decision } from './decisions.js';
import type { Records } from './record.js';
import type { Run } from './run.js';

/** One round trip for `calls`: one run for a single call, one runMany for more. Rejects when it fails. */
export async function roundTrip(store: Store, calls: readonly ScriptCall[]): Promise<CallResult[]> {
  if (calls.length !== 1) return store.runMany(calls);
  const { script, keys, args } = calls[0]!;
  return [{ ok: true, value: await store.run(script, keys, args) }];
}

/**
 * A lease driver for records. Calls made in the same tick (a batch's extensions all come due together, a
 * batch's give-backs start together) go to the store as one runMany; a call alone goes as one run.
 */
export class RecordDriver implements LeaseDriver {
  #queue: { call: ScriptCall; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  constructor(
    readonly store: Store,
    readonly records: Records,
  ) {}

  extend(key: string, token: string, ttlMs: number): Promise<ExtendOutcome> {
    return this.#send(this.records.extend(key, token, ttlMs)).then(extendOutcomeOf);
  }

  release(key: string, token: string): Promise<ReleaseResult> {
    return this.#send(this.records.release(key, token)).then(releaseResultOf);
  }

  #send(call: ScriptCall): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      this.#queue.push({ call, resolve, reject });
      if (this.#queue.length === 1) queueMicrotask(() => this.#flush());
    });
  }

  async #flush(): Promise<void> {
    const batch = this.#queue;
    this.#queue = [];
    try {
      const results = await roundTrip(
        this.store,
        batch.map((b) => b.call),
      );
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

/** One invocation's claimed records, kept alive together (a single event: one record). */
interface Kept {
  readonly runs: readonly Run[];
  /** When the first extension is due (monotonic): half the lease left. */
  readonly due: number;
  /** The TTL each extension asks for: ttlMs, less near the invocation's deadline. */
  readonly ttlFor: () => number;
  /** The claim's TTL: an extension shorter than it reached the invocation's deadline, and is the last. */
  readonly ttlMs: number;
  /** Store failures of an extension (the key: of a single record). */
  readonly onError: (e: Error) => void;
}

/**
 * Keeps invocations' records alive, on one timer per engine: keepLeases starts for an invocation's records
 * when half their lease is left, and extends them together (one runMany through the RecordDriver). Until then
 * an invocation is an entry in a map, and one that is done sooner (most are) leaves it having armed no timer
 * of its own and built no Lease. Once an extension has reached the invocation's deadline no later one could
 * move it, so keeping stops there (the lease then runs out marginMs before Lambda would stop the invocation).
 */
export class Keeper {
  readonly #kept = new Map<Kept, (() => void) | undefined>();
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (clock units); Infinity when none is armed. */
  #at = Number.POSITIVE_INFINITY;
  readonly #fire = () => this.#run();
  constructor(readonly clock: Clock) {}

  /** Keeps `runs` alive from half their lease; returns the function that stops it. */
  keep(
    runs: readonly Run[],
    ttlFor: () => number,
    ttlMs: number,
    onError: (key: string | undefined) => (e: Error) => void,
  ): () => void {
    let due = Number.POSITIVE_INFINITY;
    for (const { leaseInit: l } of runs) {
      if (l) due = Math.min(due, validUntil(l.startedAt, l.ttlMs, l.drift) - l.ttlMs * EXTEND_WHEN_LEFT);
    }
    const kept: Kept = {
      runs,
      due,
      ttlFor,
      ttlMs,
      onError: onError(runs.length === 1 ? runs[0]!.key : undefined),
    };
    this.#kept.set(kept, undefined);
    if (kept.due < this.#at) {
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#arm(kept.due);
    }
    return () => {
      this.#kept.get(kept)?.();
      this.#kept.delete(kept);
    };
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
    for (const [kept, stop] of this.#kept) {
      if (stop) continue;
      if (kept.due <= now) this.#kept.set(kept, this.#start(kept));
      else if (kept.due < next) next = kept.due;
    }
    if (next !== Number.POSITIVE_INFINITY && next < this.#at) this.#arm(next);
  }

  #start(kept: Kept): () => void {
    const { clock } = this;
    return keepLeases({
      leases: () => kept.runs.map((r) => r.lease!),
      dueInMs: (l) => l.validUntil - l.ttlMs * EXTEND_WHEN_LEFT - clock.now(),
      ttlMs: kept.ttlFor,
      last: (ttl) => ttl < kept.ttlMs,
      onError: kept.onError,
      now: true,
    });
  }
}

/** What a record's give-back needs of its engine. */
interface GiveBackHost {
  readonly driver: RecordDriver;
  readonly options: { readonly clock: Clock; readonly namespace: string };
  decide(d: Decision): void;
}

/**
 * Gives back a record we may have claimed but will not use (lease.ts releaseOrGiveBack, as locks do): one
 * release now (those started in the same tick share a round trip); if the store fails, retried in the
 * background with backoff until released, not ours, or past the lease (`ttlMs` from now). A final failure
 * becomes a 'give-back-failed' decision. Never throws.
 */
export function giveBackRecord(host: GiveBackHost, key: string, token: string, ttlMs: number): Promise<void> {
  const failed = (e: Error) =>
    host.decide({
      namespace: host.options.namespace,
      decision: 'give-back-failed',
      key,
      reason: `${e.message}: ${e.cause instanceof Error ? e.cause.message : 'no cause'}`,
    });
  return releaseOrGiveBack({
    key,
    release: () => host.driver.release(key, token),
    clock: host.options.clock,
    until: host.options.clock.now() + ttlMs,
    onError: failed,
  });
}
