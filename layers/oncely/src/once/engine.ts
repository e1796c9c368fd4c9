/**
 * The run-once state machine. An invocation: identify → claim (one round trip) → run the handler while the
 * lease is auto-extended → complete (one round trip) or release. Adapters call begin() (or beginMany() for a
 * batch), then run.complete() or run.fail() (or the batch's settle()). What a claim reply means is decided in
 * outcome.ts; this file acts on it and emits its decision.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Context } from 'aws-lambda';
import { newToken } from '../acquire.js';
import { sleep } from '../clock.js';
import { MissingKeyError, StoreError, StoreUnavailableError } from '../errors.js';
import { type EventSource, type Identity, identify, isHttpEvent, KEY_LOCATIONS } from '../events.js';
import { giveBack, type LeaseInit, releaseOrGiveBack, releaseResultOf } from '../lease.js';
import type { CallResult, ScriptCall, Store } from '../transport/types.js';
import { MAX_TTL_MS, MIN_TTL_MS } from '../validate.js';
import { type Decided, Decisions, type InvocationFields, invocationFields } from './decisions.js';
import { httpResponseFor } from './http.js';
import { Halfway, keepAlive, RecordDriver } from './lease.js';
import type { LocalCache } from './local-cache.js';
import { type MetricsOption, publish, Tally, timedStore } from './metrics.js';
import {
  isDisabled,
  localCacheOf,
  type OnceOptions,
  type Resolved,
  remainingOf,
  resolveOnceOptions,
} from './options.js';
import { type ClaimPolicy, type Outcome, outcomeOf } from './outcome.js';
import {
  type ClaimReply,
  completedOf,
  completedReply,
  parseClaim,
  parseComplete,
  payloadHash,
  Records,
} from './record.js';
import { Run, type RunHost } from './run.js';

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

/** One invocation (or batch) in progress: the Lambda fields its log lines carry, and what it counted. */
export interface Invocation {
  readonly fields: InvocationFields;
  /** Set when metrics are on. */
  readonly tally: Tally | undefined;
  closed: boolean;
}

export class OnceEngine<E = unknown> implements RunHost {
  readonly options: Resolved<E>;
  readonly store: Store;
  readonly records: Records;
  readonly #decisions: Decisions;
  /** Where metrics go, when they are on. */
  readonly #metrics: Exclude<MetricsOption, false> | undefined;
  /** The invocation a decision or a store call belongs to (concurrent invocations in one process stay apart). */
  readonly #current = new AsyncLocalStorage<Invocation>();
  /**
   * The one open invocation that runs outside #current: in Lambda a container runs one invocation at a time,
   * and on Node 20 the first AsyncLocalStorage.run() turns on promise hooks for the whole process (measured:
   * about a third of withOnce's client CPU per call). Only an invocation that opens while another is open runs
   * in #current; code outside it finds no store and so belongs to the solo one.
   */
  #solo: Invocation | undefined;
  /** What was counted outside any open invocation (a background give-back): goes into the next document. */
  readonly #stray = new Tally();
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
    this.#metrics = metrics === false ? undefined : metrics;
    this.store = this.#metrics
      ? timedStore(
          resolved.store,
          () => clock.now(),
          (ms) => this.#tally().latency(ms),
        )
      : resolved.store;
    this.#ready = resolved.ready;
    this.records = new Records(this.options.prefix, this.options.namespace);
    this.#decisions = new Decisions(this.options);
    this.#cache = localCacheOf(this.options);
  }

  /**
   * An invocation (or a batch) opens: its request id, function name, cold start and trace id go on the decision
   * lines made within() it; its metrics are counted until close(). Adapters open one per Lambda invocation.
   */
  open(context: Partial<Context> | undefined): Invocation {
    return {
      fields: invocationFields(context),
      tally: this.#metrics ? new Tally() : undefined,
      closed: false,
    };
  }

  /** Runs `fn` (and everything it starts) as part of `invocation`. */
  within<T>(invocation: Invocation, fn: () => T): T {
    if (this.#current.getStore() === undefined && (this.#solo === undefined || this.#solo === invocation)) {
      if (!invocation.closed) this.#solo = invocation;
      return fn();
    }
    return this.#current.run(invocation, fn);
  }

  /** The open invocation the running code belongs to. */
  #invocation(): Invocation | undefined {
    return this.#current.getStore() ?? this.#solo;
  }

  /** The invocation is over: its metrics (when on) are written as one document. Closing twice does nothing. */
  close(invocation: Invocation): void {
    if (invocation.closed) return;
    invocation.closed = true;
    if (this.#solo === invocation) this.#solo = undefined;
    const { tally } = invocation;
    if (!tally || !this.#metrics) return;
    tally.absorb(this.#stray);
    const o = this.options;
    publish(tally, this.#metrics, o.namespace, invocation.fields.function_name, o.wallClock());
  }

  /** The tally a count goes to: the open invocation's, else the stray one. */
  #tally(): Tally {
    const invocation = this.#invocation();
    return invocation?.tally && !invocation.closed ? invocation.tally : this.#stray;
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
    if (this.#metrics) this.#tally().count(d.decision);
    this.#decisions.emit(d, this.#invocation()?.fields);
  }

  /** The record and fence-counter keys of an idempotency key. */
  keysOf(key: string): [record: string, fence: string] {
    return this.records.keysOf(key);
  }

  /**
   * Starts an invocation: identifies it, claims its record and applies the duplicate policy. Returns the Run
   * to execute, or the value to answer with (a stored result, a skip, an HTTP error answer).
   */
  async begin(event: E, context: Context | undefined): Promise<Begin> {
    if (this.#ready !== undefined) await this.#ready;
    if (isDisabled()) {
      this.decide({ decision: 'disabled' });
      return { kind: 'run', run: this.#unfenced() };
    }
    const http = this.options.http === 'auto' && isHttpEvent(event);
    try {
      return await this.#begin(event, context, http);
    } catch (err) {
      const answer = http ? httpResponseFor(err) : undefined;
      if (answer) return { kind: 'return', value: answer };
      throw err;
    }
  }

  async #begin(event: E, context: Context | undefined, http: boolean): Promise<Begin> {
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
      const ttlMs = this.#leaseFor(context);
      const call = this.records.claim(key, token, hash, ttlMs, o.wallClock());
      const startedAt = o.clock.now();
      let reply: ClaimReply;
      try {
        const raw = await this.store.run(call.script, call.keys, call.args);
        reply = parseClaim(raw, this.store.name);
        if (this.#cache) this.#remember(key, hash, raw, startedAt);
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        // The claim may have been applied: give the record back rather than block retries for a lease
        // (retried with backoff while the store fails; a final failure is a 'give-back-failed' decision).
        if (err.ambiguous) void this.#giveBack(key, token, ttlMs);
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
      if (outcome.kind === 'throw' && outcome.giveBack) await this.#releaseOrGiveBack(key, token, ttlMs);
      this.decide(outcome.decision);
      switch (outcome.kind) {
        case 'run': {
          const run = this.#claimed(key, hash, token, outcome.fence, ttlMs, startedAt, http);
          run.keepAlive(this.#ttlFor(context));
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

  /** Keeps a claim's reply in the local cache when it found the record completed (and forgets it otherwise). */
  #remember(key: string, hash: string, raw: unknown, sentAt: number): void {
    const done = completedOf(raw);
    if (done?.leftMs === undefined) this.#cache?.delete(key);
    else this.#cache?.put(key, hash, done.text, sentAt, done.leftMs);
  }

  /** A record this container completed (`sentAt`: when the completing request first went out). */
  cacheCompleted(run: Run, text: string, sentAt: number): void {
    if (this.#cache && run.key !== undefined)
      this.#cache.put(run.key, run.hash, text, sentAt, this.options.retentionMs);
  }

  /**
   * Begins every record of a batch: identifies each, claims every keyed one in one round trip, and keeps the
   * claimed leases alive (extensions of the whole batch go out as one runMany) until settle().
   */
  async beginMany(events: readonly E[], context: Context): Promise<BegunBatch> {
    const o = this.options;
    const ttlFor = this.#ttlFor(context);
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
    const stop = keepAlive(leases, ttlFor, o.ttlMs, o.clock, (e) =>
      this.decide({ decision: 'store-error', reason: `extend: ${e.message}` }),
    );
    return {
      items,
      settle: async (ok, results) => {
        stop();
        try {
          return await this.#settleMany(items, ok, results);
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
    const ttlMs = this.#leaseFor(context);
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
              for (const k of keyed) void this.#giveBack(k.key, k.token, ttlMs, e as Error);
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
      if (r?.ok && this.#cache) this.#remember(k.key, k.hash, r.value, startedAt);
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

  /** Completes or releases every claimed record of a batch in one round trip. */
  async #settleMany(items: readonly Began[], ok: readonly boolean[], results: readonly unknown[]) {
    const o = this.options;
    const done = [...ok];
    const settle: { n: number; run: Run; call: ScriptCall; complete: boolean; why: string; text?: string }[] =
      [];
    items.forEach((item, n) => {
      const run = item.kind === 'return' ? undefined : item.run;
      if (!run?.lease) return;
      if (!done[n]) {
        const call = this.records.release(run.key!, run.token);
        settle.push({ n, run, call, complete: false, why: 'the handler failed or did not run' });
        return;
      }
      const plan = run.prepare(results[n]);
      if ('text' in plan) {
        const call = this.records.complete(run as Run & { key: string }, plan.text, o.retentionMs);
        settle.push({ n, run, call, complete: true, why: plan.notStored ?? '', text: plan.text });
        return;
      }
      done[n] = false;
      const why = 'error' in plan ? `result not storable: ${plan.error.reason}` : 'not stored';
      settle.push({ n, run, call: this.records.release(run.key!, run.token), complete: false, why });
    });
    if (settle.length === 0) return done;
    let replies: CallResult[] | undefined;
    const sentAt = o.clock.now();
    try {
      replies = await this.store.runMany(settle.map((s) => s.call));
    } catch (err) {
      this.decide({ decision: 'complete-failed', reason: (err as Error).message });
      if (!(err instanceof StoreError)) throw err;
    }
    // completeFailure 'throw': a record whose result could not be recorded is reported, so SQS redelivers it.
    const unrecorded = o.completeFailure !== 'throw';
    settle.forEach((s, i) => {
      const r = replies?.[i];
      if (!r?.ok) {
        if (replies)
          this.decide({
            decision: 'complete-failed',
            key: s.run.key,
            reason: r?.error.message ?? 'no reply',
          });
        if (s.complete) done[s.n] = unrecorded; // the record expires with its lease
        return;
      }
      if (!s.complete) {
        s.run.released(releaseResultOf(r.value), s.why);
        return;
      }
      try {
        s.run.completed(parseComplete(r.value), s.why || undefined);
        this.cacheCompleted(s.run, s.text as string, sentAt);
      } catch {
        done[s.n] = false; // lost: another invocation owns the key now; let SQS redeliver
      }
    });
    return done;
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

  /** The lease for a new claim: ttlMs, at most the invocation's remaining time minus marginMs. */
  #leaseFor(context: Partial<Context> | undefined): number {
    const { ttlMs, marginMs } = this.options;
    return Math.max(MIN_TTL_MS, Math.floor(Math.min(ttlMs, remainingOf(context) - marginMs)));
  }

  /** What each extension asks for: ttlMs, at most up to the invocation's deadline minus marginMs. */
  #ttlFor(context: Partial<Context> | undefined): () => number {
    const deadline = this.options.clock.now() + remainingOf(context);
    const { ttlMs, marginMs } = this.options;
    return () => Math.floor(Math.min(ttlMs, deadline - this.options.clock.now() - marginMs));
  }

  /** True when the claim's reply came back after the lease it took had already run out. */
  #tooLate(startedAt: number, ttlMs: number): boolean {
    return this.options.clock.now() >= startedAt + ttlMs - this.#drift(ttlMs);
  }

  /**
   * Gives back a record we may have claimed but will not use (see lock.ts giveBack): retried with backoff until
   * released, not ours, or past the lease; a final failure becomes a 'give-back-failed' decision.
   */
  #giveBack(key: string, token: string, ttlMs: number, firstError?: Error): Promise<unknown> {
    const { release, until, failed } = this.#giveBackParts(key, token, ttlMs);
    return giveBack(key, release, this.options.clock, until, failed, firstError);
  }

  /** One release now; while the store fails, the rest of #giveBack in the background. */
  #releaseOrGiveBack(key: string, token: string, ttlMs: number): Promise<void> {
    const { release, until, failed } = this.#giveBackParts(key, token, ttlMs);
    return releaseOrGiveBack(key, release, this.options.clock, until, failed);
  }

  #giveBackParts(key: string, token: string, ttlMs: number) {
    const c = this.records.release(key, token);
    return {
      release: async () => releaseResultOf(await this.store.run(c.script, c.keys, c.args)),
      until: this.options.clock.now() + ttlMs,
      failed: (e: Error) =>
        this.decide({
          decision: 'give-back-failed',
          key,
          reason: `${e.message}: ${e.cause instanceof Error ? e.cause.message : 'no cause'}`,
        }),
    };
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
