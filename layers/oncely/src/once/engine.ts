/**
 * The run-once state machine. An invocation: identify → claim (one round trip) → run the handler while the
 * lease is auto-extended → complete (one round trip) or release. Adapters call begin() (or beginMany() for a
 * batch), then run.complete() or run.fail() (or the batch's settle()). What a claim reply means is decided in
 * outcome.ts; this file acts on it and emits its decision.
 */
import type { Context } from 'aws-lambda';
import { newToken } from '../acquire.js';
import { sleep } from '../clock.js';
import { MissingKeyError, StoreError, StoreUnavailableError } from '../errors.js';
import { type EventSource, type Identity, identify, isHttpEvent, KEY_LOCATIONS } from '../events.js';
import type { LeaseInit } from '../lease.js';
import type { CallResult, Store } from '../transport/types.js';
import { MAX_TTL_MS } from '../validate.js';
import { type Decided, Decisions } from './decisions.js';
import { httpResponseFor } from './http.js';
import { Halfway, keepAlive, RecordDriver, recordGiveBack } from './lease.js';
import type { LocalCache } from './local-cache.js';
import { type Invocation, Invocations, timedStore } from './metrics.js';

export type { Invocation } from './metrics.js';

import {
  isDisabled,
  leaseFor,
  localCacheOf,
  type OnceOptions,
  type Resolved,
  remainingOf,
  resolveOnceOptions,
  ttlFor,
} from './options.js';
import { type ClaimPolicy, type Outcome, outcomeOf } from './outcome.js';
import { type ClaimReply, completedOf, completedReply, parseClaim, payloadHash, Records } from './record.js';
import { Run, type RunHost, settleMany } from './run.js';

/** The outcome of beginning an invocation: run the handler, or answer without running it. */
export type Begin = { kind: 'run'; run: Run } | { kind: 'return'; value: unknown };

/** One record of a batch: run it, acknowledge it, or report it failed (`run`: a claim to give back). */
export type Began = Begin | { kind: 'fail'; run?: Run };

/** A begun batch: its records, and settle(), which completes or releases every claimed record at once. */
export interface BegunBatch {
  readonly items: readonly Began[];
  /** `ok[n]`: record n succeeded (with `results[n]`). Returns which records count as done in the end. */
  settle(ok: readonly boolean[], results: readonly unknown[]): Promise<boolean[]>;
}

const FAIL: Began = Object.freeze({ kind: 'fail' });

export class OnceEngine<E = unknown> implements RunHost {
  readonly options: Resolved<E>;
  readonly store: Store;
  readonly records: Records;
  readonly #decisions: Decisions;
  readonly #invocations: Invocations;
  readonly #drift = (ttlMs: number) => Math.round(ttlMs * 0.01) + 2;
  /** Set when a key or payload spec is a JMESPath expression: its package loaded and the expressions parsed. */
  readonly #ready: Promise<void> | undefined;
  /** `localCache`: completed records of this container. */
  readonly #cache: LocalCache | undefined;
  #halfway: Halfway<Run> | undefined;
  #driver: RecordDriver | undefined;

  constructor(options: OnceOptions<E>, what = 'withOnce options') {
    const resolved = resolveOnceOptions(options, what);
    this.options = resolved.options;
    const { metrics, clock } = this.options;
    this.#invocations = new Invocations(
      metrics === false ? undefined : metrics,
      this.options.namespace,
      this.options.wallClock,
    );
    this.store = this.#invocations.metrics
      ? timedStore(
          resolved.store,
          () => clock.now(),
          (ms) => this.#invocations.tally().latency(ms),
        )
      : resolved.store;
    this.#ready = resolved.ready;
    this.records = new Records(this.options.prefix, this.options.namespace);
    this.#decisions = new Decisions(this.options);
    this.#cache = localCacheOf(this.options);
  }

  /** See Invocations (metrics.ts): adapters open one per Lambda invocation, run within it, and close it. */
  open(context: Partial<Context> | undefined): Invocation {
    return this.#invocations.open(context);
  }
  within<T>(invocation: Invocation, fn: () => T): T {
    return this.#invocations.within(invocation, fn);
  }
  close(invocation: Invocation): void {
    this.#invocations.close(invocation);
  }

  /**
   * Resolves once events can be identified: at once, unless a key or payload spec is a JMESPath expression;
   * then once its package has loaded, rejecting with a ValidationError when an expression does not parse.
   * begin() awaits it.
   */
  ready(): Promise<void> {
    return this.#ready ?? Promise.resolve();
  }

  /** The one timer that starts long runs' keepAlive (see Halfway). */
  get halfway(): Halfway<Run> {
    this.#halfway ??= new Halfway(this.options.clock);
    return this.#halfway;
  }

  /** Counts a decision (metrics), logs it and calls onDecision. */
  decide(d: Decided): void {
    if (this.#invocations.metrics) this.#invocations.tally().count(d.decision);
    this.#decisions.emit(d, this.#invocations.fields());
  }

  /** The record and fence-counter keys of an idempotency key. */
  keysOf(key: string): [record: string, fence: string] {
    return this.records.keysOf(key);
  }

  /**
   * Starts an invocation: identifies it, claims its record and applies the duplicate policy. Returns the Run
   * to execute, or the value to answer with (a stored result, a skip, an HTTP error answer).
   */
  begin(event: E, context: Context | undefined): Promise<Begin> {
    // One async layer on the hot path: #begin does the work (and answers HTTP errors) itself.
    if (this.#ready !== undefined) return this.#ready.then(() => this.#begin(event, context));
    return this.#begin(event, context);
  }

  async #begin(event: E, context: Context | undefined): Promise<Begin> {
    if (isDisabled()) {
      this.decide({ decision: 'disabled' });
      return { kind: 'run', run: this.#unfenced() };
    }
    const http = this.options.http === 'auto' && isHttpEvent(event);
    try {
      const o = this.options;
      const identity = identify(event, context, o.key, o.payload);
      const key = identity.key;
      if (key === undefined) {
        this.decide({ decision: 'no-key', reason: identity.problem ?? `no ${identity.source} key` });
        if (o.missingKey === 'run') return { kind: 'run', run: this.#unfenced() };
        throw new MissingKeyError(
          identity.problem ??
            `no idempotency key in the event: looked for ${KEY_LOCATIONS[identity.source as EventSource] ?? identity.source}`,
          { source: identity.source },
        );
      }
      const hash = payloadHash(identity);
      const cached = this.#cache?.get(key, hash);
      if (cached) return this.#fromCache(key, cached.text, http);
      const token = newToken();
      const waitStarted = o.clock.now();
      const waitUntil = waitStarted + Math.min(o.maxWaitMs ?? MAX_TTL_MS, remainingOf(context) - o.marginMs);
      for (;;) {
        const ttlMs = leaseFor(this.options, context);
        const call = this.records.claim(key, token, hash, ttlMs, o.wallClock());
        const startedAt = o.clock.now();
        let reply: ClaimReply;
        try {
          const raw = await this.store.run(call.script, call.keys, call.args);
          reply = parseClaim(raw, this.store.name);
          this.#cache?.remember(key, hash, completedOf(raw), startedAt);
        } catch (err) {
          if (!(err instanceof StoreError)) throw err;
          // The claim may have been applied: give the record back rather than block retries for a lease
          // (retried with backoff while the store fails; a final failure is a 'give-back-failed' decision).
          if (err.ambiguous) void recordGiveBack(this, key, token, ttlMs).giveBack();
          reply = { kind: 'failed', error: err };
        }
        const now = o.clock.now();
        const outcome = outcomeOf(reply, {
          ...this.#policy(key, ttlMs, reply.kind === 'claimed' && this.#tooLate(startedAt, ttlMs)),
          http,
          waitedMs: Math.round(now - waitStarted),
          waitLeftMs: waitUntil - now,
        });
        if (outcome.kind === 'wait') {
          await sleep(outcome.afterMs);
          continue;
        }
        if (outcome.kind === 'throw' && outcome.giveBack)
          await recordGiveBack(this, key, token, ttlMs).releaseOrGiveBack();
        this.decide(outcome.decision);
        switch (outcome.kind) {
          case 'run': {
            const run = this.#claimed(key, hash, token, outcome.fence, ttlMs, startedAt, http);
            run.keepAlive(ttlFor(this.options, context));
            return { kind: 'run', run };
          }
          case 'run-unfenced':
            return { kind: 'run', run: this.#unfenced(key) };
          case 'return':
            return { kind: 'return', value: outcome.value };
          case 'throw':
            throw outcome.error;
        }
      }
    } catch (err) {
      const answer = http ? httpResponseFor(err) : undefined;
      if (answer) return { kind: 'return', value: answer };
      throw err;
    }
  }

  /** A duplicate answered from the local cache: what the store would have answered, with no round trip. */
  #fromCache(key: string, text: unknown, http: boolean): Begin {
    const outcome = outcomeOf(completedReply(text, this.store.name), {
      ...this.#policy(key, 0, false),
      http,
      waitedMs: 0,
      waitLeftMs: 0,
    });
    if (outcome.kind !== 'return') throw new Error(`a cached record decided ${outcome.kind}`); // unreachable
    this.decide({ ...outcome.decision, reason: 'local cache' });
    return { kind: 'return', value: outcome.value };
  }

  /** A record this container completed (`sentAt`: when the completing request first went out). */
  cacheCompleted(run: Run, text: string, sentAt: number): void {
    if (run.key !== undefined) this.#cache?.put(run.key, run.hash, text, sentAt, this.options.retentionMs);
  }

  /**
   * Begins every record of a batch: identifies each, claims every keyed one in one round trip, and keeps the
   * claimed leases alive (extensions of the whole batch go out as one runMany) until settle().
   */
  async beginMany(events: readonly E[], context: Context): Promise<BegunBatch> {
    const o = this.options;
    const extendTo = ttlFor(this.options, context);
    await this.ready();
    const items: Began[] = [];
    if (isDisabled()) {
      this.decide({ decision: 'disabled' });
      for (const _ of events) items.push({ kind: 'run', run: this.#unfenced() });
    } else {
      const keyed = this.#identifyMany(events, context, items);
      if (keyed.length > 0) await this.#claimMany(keyed, context, items);
    }
    const runs = items.flatMap((b) => (b.kind !== 'return' && b.run ? [b.run] : []));
    const leases = () => runs.flatMap((r) => (r.lease ? [r.lease] : []));
    const stop = keepAlive(leases, extendTo, o.ttlMs, o.clock, (e) =>
      this.decide({ decision: 'store-error', reason: `extend: ${e.message}` }),
    );
    return {
      items,
      settle: async (ok, results) => {
        stop();
        try {
          return await settleMany(
            this,
            items.map((b) => (b.kind === 'return' ? undefined : b.run)),
            ok,
            results,
          );
        } finally {
          for (const run of runs) run.stop();
        }
      },
    };
  }

  /** Identifies every record; fills `items` for those without a key, returns those with one. */
  #identifyMany(events: readonly E[], context: Context, items: Began[]): Keyed[] {
    const o = this.options;
    const keyed: Keyed[] = [];
    events.forEach((event, n) => {
      let identity: Identity;
      try {
        identity = identify(event, context, o.key, o.payload);
      } catch (err) {
        this.decide({ decision: 'no-key', reason: (err as Error).message });
        items[n] = FAIL;
        return;
      }
      if (identity.key === undefined) {
        this.decide({ decision: 'no-key', reason: identity.problem ?? `no ${identity.source} key` });
        items[n] = o.missingKey === 'throw' ? FAIL : { kind: 'run', run: this.#unfenced() };
        return;
      }
      const hash = payloadHash(identity);
      const cached = this.#cache?.get(identity.key, hash);
      if (cached) items[n] = this.#fromCache(identity.key, cached.text, false);
      else keyed.push({ n, key: identity.key, hash, token: newToken() });
    });
    return keyed;
  }

  /** Claims every keyed record in one round trip and fills in their items. */
  async #claimMany(keyed: Keyed[], context: Context, items: Began[]): Promise<void> {
    const o = this.options;
    const ttlMs = leaseFor(this.options, context);
    const startedAt = o.clock.now();
    const calls = keyed.map((k) => this.records.claim(k.key, k.token, k.hash, ttlMs, o.wallClock()));
    let replies: CallResult[];
    try {
      replies = await this.store.runMany(calls);
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      if (o.failOpen && err instanceof StoreUnavailableError) {
        this.decide({ decision: 'fail-open', reason: err.message });
        replies = calls.map(() => ({ ok: false, error: err }));
      } else {
        this.decide({ decision: 'store-error', reason: err.message });
        // Give back whatever the claims may have taken, then fail the batch: SQS redelivers every record.
        // One round trip now; if that fails too, each record is given back in the background, retrying.
        if (err.ambiguous) {
          await this.store
            .runMany(keyed.map((k) => this.records.release(k.key, k.token)))
            .catch((e: unknown) => {
              for (const k of keyed) void recordGiveBack(this, k.key, k.token, ttlMs).giveBack(e as Error);
            });
        }
        throw err;
      }
    }
    const late = this.#tooLate(startedAt, ttlMs);
    keyed.forEach((k, i) => {
      const r = replies[i];
      const reply: ClaimReply = r?.ok
        ? parseClaim(r.value, this.store.name)
        : { kind: 'failed', error: r?.error };
      if (r?.ok) this.#cache?.remember(k.key, k.hash, completedOf(r.value), startedAt);
      const outcome: Outcome = outcomeOf(reply, {
        ...this.#policy(k.key, ttlMs, late),
        http: false,
        waitedMs: 0,
        waitLeftMs: 0,
      });
      if (outcome.kind === 'wait') return; // no waiting in a batch (its policy has no 'wait')
      this.decide(outcome.decision);
      const claimed = () =>
        this.#claimed(k.key, k.hash, k.token, (reply as { fence: number }).fence, ttlMs, startedAt, false);
      items[k.n] =
        outcome.kind === 'run'
          ? { kind: 'run', run: claimed() }
          : outcome.kind === 'run-unfenced'
            ? { kind: 'run', run: this.#unfenced(k.key) }
            : outcome.kind === 'return'
              ? { kind: 'return', value: outcome.value }
              : // a late claim is ours: released with the others at settle()
                { kind: 'fail', ...(outcome.giveBack ? { run: claimed() } : {}) };
    });
  }

  #policy(key: string, ttlMs: number, late: boolean): Omit<ClaimPolicy, 'http' | 'waitedMs' | 'waitLeftMs'> {
    const o = this.options;
    return {
      key,
      duplicate: o.duplicate,
      failOpen: o.failOpen,
      ttlMs,
      late,
      store: this.store.name,
      pollMs: o.pollMs,
    };
  }

  /** True when the claim's reply came back after the lease it took had already run out. */
  #tooLate(startedAt: number, ttlMs: number): boolean {
    return this.options.clock.now() >= startedAt + ttlMs - this.#drift(ttlMs);
  }

  /** A Run that owns no record: the handler runs without dedupe. */
  #unfenced(key?: string): Run {
    return new Run(this, { key, token: '', fence: 0, hash: '', lease: null, http: false, startedAt: 0 });
  }

  /** The Run (and the lease it will build) of a successful claim. */
  #claimed(
    key: string,
    hash: string,
    token: string,
    fence: number,
    ttlMs: number,
    startedAt: number,
    http: boolean,
  ): Run {
    // One driver for every invocation of this engine: extensions due in the same tick share a round trip.
    this.#driver ??= new RecordDriver(this.store, this.records);
    const lease: LeaseInit = {
      key,
      token,
      fence,
      ttlMs: ttlMs,
      startedAt,
      drift: this.#drift,
      clock: this.options.clock,
      driver: this.#driver,
    };
    return new Run(this, { key, token, fence, hash, lease, http, startedAt });
  }
}

type Keyed = { n: number; key: string; hash: string; token: string };
