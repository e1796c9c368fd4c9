/**
 * The run-once engine, one path per record: identify → claim (one round trip for every record of an
 * invocation) → outcomeOf (outcome.ts decides what each reply means) → act → the handlers run → settle
 * (settle.ts: one round trip). A single event is a batch of one, with the `duplicate: 'wait'` loop around its
 * claim. Each policy is applied in one place, for one event and for a batch alike: the kill switch and a
 * failed claim round trip in #begin, a missing key in #identify, fail-open and the duplicate policy in
 * outcomeOf, completeFailure in settle.
 *
 * Adapters call invoke(context, fn) once per Lambda invocation, and one() or many() within it; none of them
 * opens, closes or settles anything itself.
 */
import type { Context } from 'aws-lambda';
import { driftOf, LOCK_DEFAULTS } from '../acquire.js';
import { sleep } from '../clock.js';
import { MissingKeyError, StoreError } from '../errors.js';
import { type EventSource, type Identity, identify, isHttpEvent, KEY_LOCATIONS } from '../events.js';
import { validUntil } from '../lease.js';
import type { CallResult, Store } from '../transport/types.js';
import { MAX_TTL_MS } from '../validate.js';
import { type Decision, Decisions } from './decisions.js';
import { httpResponseFor } from './http.js';
import type { LocalCache } from './local-cache.js';
import { Invocations, timedStore } from './metrics.js';
import {
  isDisabled,
  leaseFor,
  localCacheOf,
  type OnceOptions,
  type OnceRun,
  type Resolved,
  remainingOf,
  resolveOnceOptions,
  ttlFor,
} from './options.js';
import { type Outcome, outcomeOf } from './outcome.js';
import { type ClaimReply, completedOf, completedReply, parseClaim, payloadHash, Records } from './record.js';
import { newTokens } from './record-batch.js';
import { giveBackRecord, Keeper, RecordDriver } from './record-lease.js';
import { Run } from './run.js';
import { type Ending, recordTrip, type Settled, type SettleHost, settle } from './settle.js';

/** One record of an invocation, begun: run its handler, answer `value` without running it, or fail with `error`. */
export type Began =
  | { kind: 'run'; run: Run }
  | { kind: 'return'; value: unknown }
  | { kind: 'fail'; error: unknown };

/** A begun invocation: its records, and settle(), which completes or releases every claimed one at once. */
interface Begun {
  readonly items: readonly Began[];
  settle(endings: readonly Ending[]): Promise<Settled[]>;
}

/** A record with an idempotency key, to claim (`n`: its place in the invocation). */
type Keyed = { n: number; key: string; hash: string; token: string };

export class OnceEngine<E = unknown> implements SettleHost {
  readonly options: Resolved<E>;
  readonly store: Store;
  readonly records: Records;
  /** One driver for every record of this engine: calls due in the same tick share a round trip. */
  readonly driver: RecordDriver;
  readonly #decisions: Decisions;
  readonly #invocations: Invocations;
  /** The drift allowance of a record's lease: a lock's default (ttl·0.01 + 2 ms). */
  readonly #drift = driftOf(LOCK_DEFAULTS);
  /** Set while a JMESPath key or payload spec's package loads and its expressions parse (kept if they do not). */
  #ready: Promise<void> | undefined;
  /** `localCache`: completed records of this container. */
  readonly #cache: LocalCache | undefined;
  readonly #keeper: Keeper;

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
    this.driver = new RecordDriver(this.store, this.records);
    this.#decisions = new Decisions(this.options);
    this.#cache = localCacheOf(this.options);
    this.#keeper = new Keeper(clock);
  }

  /**
   * Runs `fn` as one Lambda invocation (see Invocations, metrics.ts): the decision lines made within it carry
   * its request id, function name, cold start and trace id, and its metrics make one document, written when
   * it ends. Every adapter calls it once per invocation (an SQS batch is one).
   */
  invoke<T>(context: Partial<Context> | undefined, fn: () => Promise<T>): Promise<T> {
    const invocation = this.#invocations.open(context);
    // Closing in fn's settlement costs no async layer of its own (the hot path).
    return this.#invocations.within(invocation, fn).then(
      (value) => {
        this.#invocations.close(invocation);
        return value;
      },
      (err: unknown) => {
        this.#invocations.close(invocation);
        throw err;
      },
    );
  }

  /**
   * One event, start to end: begins it (a batch of one), runs `handler` on its record, or answers without it
   * (a stored result, a skip, an HTTP event's error answer), and settles the record: completed with the
   * handler's result (returned), or released when the handler threw (rethrown).
   */
  async one<R>(
    event: E,
    context: Context | undefined,
    handler: (once: OnceRun) => Promise<R> | R,
  ): Promise<R> {
    const http = this.options.http === 'auto' && isHttpEvent(event);
    let begun: Begun;
    try {
      begun = await this.#begin([event], context, http);
    } catch (err) {
      return answer(err, http) as R;
    }
    const item = begun.items[0]!;
    if (item.kind === 'return') return item.value as R;
    if (item.kind === 'fail') return answer(item.error, http) as R;
    let result: R;
    try {
      result = await handler(item.run.once);
    } catch (err) {
      await begun.settle([{ ok: false, why: `the handler threw ${(err as Error)?.name ?? typeof err}` }]);
      throw err;
    }
    const [settled] = await begun.settle([{ ok: true, result }]);
    if (settled && 'error' in settled) throw settled.error;
    return result;
  }

  /**
   * A batch: begins every record (their claims in one round trip), hands them to `execute`, which runs those
   * to run and says how each ended, and settles them all (one round trip). Returns which records are done.
   * A claim round trip that fails as a whole fails the batch (unless failOpen runs it).
   */
  async many(
    events: readonly E[],
    context: Context,
    execute: (items: readonly Began[]) => Promise<Ending[]>,
  ): Promise<boolean[]> {
    const begun = await this.#begin(events, context, false);
    const settled = await begun.settle(await execute(begun.items));
    return settled.map((s) => s.done);
  }

  /** Counts a decision (metrics), logs it and calls onDecision. */
  decide(d: Decision): void {
    if (this.#invocations.metrics) this.#invocations.tally().count(d.decision);
    this.#decisions.emit(d, this.#invocations.fields());
  }

  /** The record and fence-counter keys of an idempotency key. */
  keysOf(key: string): [record: string, fence: string] {
    return this.records.keysOf(key);
  }

  /** A record this container completed (`sentAt`: when the completing request first went out). */
  cacheCompleted(run: Run, text: string, sentAt: number): void {
    if (run.key !== undefined) this.#cache?.put(run.key, run.hash, text, sentAt, this.options.retentionMs);
  }

  /**
   * The one path: identifies every event, claims every keyed record in one round trip, decides each reply's
   * outcome and acts on it; claims again, after a pause, the records whose outcome is to wait. Then keeps the
   * claimed records' leases alive until settle().
   */
  async #begin(events: readonly E[], context: Context | undefined, http: boolean): Promise<Begun> {
    if (this.#ready !== undefined) {
      await this.#ready; // rejects for every invocation when an expression does not parse
      this.#ready = undefined; // resolved: later invocations spend no await on it
    }
    const items: Began[] = new Array(events.length);
    if (isDisabled()) {
      this.decide({ namespace: this.options.namespace, decision: 'disabled' });
      for (let n = 0; n < events.length; n++) items[n] = { kind: 'run', run: this.#unfenced() };
      return this.#begun(items, context);
    }
    const o = this.options;
    let keyed = this.#identify(events, context, http, items);
    const waitStarted = o.clock.now();
    const waitUntil = waitStarted + Math.min(o.maxWaitMs ?? MAX_TTL_MS, remainingOf(context) - o.marginMs);
    while (keyed.length > 0) {
      const ttlMs = leaseFor(o, context);
      const { replies, startedAt, failed } = await this.#claim(keyed, ttlMs);
      const late = this.#tooLate(startedAt, ttlMs);
      const now = o.clock.now();
      const [waitedMs, waitLeft] = [Math.round(now - waitStarted), waitUntil - now];
      // The claims may have been applied when the round trip failed ambiguously: every record is given back
      // in the background (the invocation fails at once; the releases started together share a round trip).
      if (failed?.ambiguous) for (const k of keyed) void giveBackRecord(this, k.key, k.token, ttlMs);
      const giveBack: Keyed[] = [];
      const waiting: Keyed[] = [];
      let afterMs = Number.POSITIVE_INFINITY;
      for (let i = 0; i < keyed.length; i++) {
        const k = keyed[i]!;
        const reply = replies[i]!;
        const policy = this.#policy(http, ttlMs, waitedMs, waitLeft, k.key, reply.kind === 'claimed' && late);
        const outcome = outcomeOf(reply, policy);
        if (outcome.kind === 'wait') {
          waiting.push(k);
          afterMs = Math.min(afterMs, outcome.afterMs);
          continue;
        }
        if (outcome.kind === 'throw' && outcome.giveBack) giveBack.push(k);
        this.decide(outcome.decision);
        items[k.n] = this.#act(k, outcome, ttlMs, startedAt, http);
      }
      // A claim that came back too late is ours: given back before the invocation answers.
      if (giveBack.length > 0)
        await Promise.all(giveBack.map((k) => giveBackRecord(this, k.key, k.token, ttlMs)));
      // The claim round trip itself failed: the whole invocation fails (a batch too: SQS redelivers every
      // record), unless failOpen ran its records.
      if (failed && items.some((b) => b.kind === 'fail' && b.error === failed)) throw failed;
      if (waiting.length === 0) break;
      await sleep(afterMs);
      keyed = waiting;
    }
    return this.#begun(items, context);
  }

  /**
   * Identifies every event; fills `items` for those not to claim (a missing key, per missingKey; a key that
   * cannot be worked out; a duplicate the local cache answers) and returns those to claim.
   */
  #identify(events: readonly E[], context: Context | undefined, http: boolean, items: Began[]): Keyed[] {
    const o = this.options;
    const keyed: Keyed[] = [];
    for (let n = 0; n < events.length; n++) {
      const event = events[n] as E;
      let identity: Identity;
      try {
        identity = identify(event, context, o.key, o.payload);
      } catch (err) {
        this.decide({ namespace: o.namespace, decision: 'no-key', reason: (err as Error).message });
        items[n] = { kind: 'fail', error: err };
        continue;
      }
      const { key, source, problem } = identity;
      if (key === undefined) {
        this.decide({ namespace: o.namespace, decision: 'no-key', reason: problem ?? `no ${source} key` });
        if (o.missingKey === 'run') items[n] = { kind: 'run', run: this.#unfenced() };
        else {
          const looked = `looked for ${KEY_LOCATIONS[source as EventSource] ?? source}`;
          const error = new MissingKeyError(problem ?? `no idempotency key in the event: ${looked}`, {
            source,
          });
          items[n] = { kind: 'fail', error };
        }
        continue;
      }
      const hash = payloadHash(identity);
      const cached = this.#cache?.get(key, hash);
      if (cached) items[n] = this.#fromCache(key, cached.text, http);
      else keyed.push({ n, key, hash, token: '' });
    }
    const tokens = newTokens(keyed.length);
    for (let i = 0; i < keyed.length; i++) keyed[i]!.token = tokens[i]!;
    return keyed;
  }

  /**
   * Claims `keyed` in one round trip: one ONCE_CLAIM for one record, one ONCE_CLAIM_MANY per slot group for
   * more (record-batch.ts). A round trip that fails on the store fails every claim with its error (`failed`).
   */
  async #claim(
    keyed: readonly Keyed[],
    ttlMs: number,
  ): Promise<{ replies: ClaimReply[]; startedAt: number; failed?: StoreError }> {
    const o = this.options;
    const nowMs = o.wallClock(); // one reading for all: claims that share their args share a script
    const calls = keyed.map((k) => this.records.claim(k.key, k.token, k.hash, ttlMs, nowMs));
    const startedAt = o.clock.now();
    let results: CallResult[];
    try {
      results = await recordTrip(this.store, calls);
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      return { replies: keyed.map(() => ({ kind: 'failed', error: err })), startedAt, failed: err };
    }
    const replies = keyed.map((k, i): ClaimReply => {
      const r = results[i];
      if (!r?.ok) return { kind: 'failed', error: r?.error };
      this.#cache?.remember(k.key, k.hash, completedOf(r.value), startedAt);
      return parseClaim(r.value, this.store.name);
    });
    return { replies, startedAt };
  }

  /** What a record's outcome makes of it. */
  #act(
    k: Keyed,
    outcome: Exclude<Outcome, { kind: 'wait' }>,
    ttlMs: number,
    at: number,
    http: boolean,
  ): Began {
    switch (outcome.kind) {
      case 'run':
        return { kind: 'run', run: this.#claimed(k, outcome.fence, ttlMs, at, http) };
      case 'run-unfenced':
        return { kind: 'run', run: this.#unfenced(k.key) };
      case 'return':
        return { kind: 'return', value: outcome.value };
      case 'throw':
        return { kind: 'fail', error: outcome.error };
    }
  }

  /** A duplicate answered from the local cache: what the store would have answered, with no round trip. */
  #fromCache(key: string, text: unknown, http: boolean): Began {
    const outcome = outcomeOf(completedReply(text, this.store.name), this.#policy(http, 0, 0, 0, key, false));
    if (outcome.kind !== 'return') throw new Error(`a cached record decided ${outcome.kind}`); // unreachable
    this.decide({ ...outcome.decision, reason: 'local cache' });
    return { kind: 'return', value: outcome.value };
  }

  /**
   * The begun invocation: its claimed records' leases are kept alive together, from half their lease (see
   * Keeper), until settle().
   */
  #begun(items: Began[], context: Context | undefined): Begun {
    const runs = items.map((b) => (b.kind === 'run' ? b.run : undefined));
    const claimed = runs.filter((r): r is Run => r?.leaseInit != null);
    const onError = (key: string | undefined) => (e: Error) =>
      this.decide({
        namespace: this.options.namespace,
        decision: 'store-error',
        ...(key === undefined ? {} : { key }),
        reason: `extend: ${e.message}`,
      });
    const stop =
      claimed.length > 0
        ? this.#keeper.keep(claimed, ttlFor(this.options, context), this.options.ttlMs, onError)
        : undefined;
    return {
      items,
      settle: (endings) => {
        stop?.();
        return settle(this, runs, endings);
      },
    };
  }

  /** What the meaning of a claim reply for `key` depends on besides the reply (one object, built whole). */
  #policy(http: boolean, ttlMs: number, waitedMs: number, waitLeftMs: number, key: string, late: boolean) {
    const { namespace, duplicate, failOpen, pollMs } = this.options;
    const store = this.store.name;
    return { namespace, key, duplicate, failOpen, ttlMs, late, http, store, waitedMs, waitLeftMs, pollMs };
  }

  /** True when the claim's reply came back after the lease it took had already run out. */
  #tooLate(startedAt: number, ttlMs: number): boolean {
    return this.options.clock.now() >= validUntil(startedAt, ttlMs, this.#drift);
  }

  /** A Run that owns no record: the handler runs without dedupe. */
  #unfenced(key?: string): Run {
    return new Run({ key, token: '', fence: 0, hash: '', lease: null, http: false, startedAt: 0 });
  }

  /** The Run (and the lease it will build) of a successful claim. */
  #claimed(k: Keyed, fence: number, ttlMs: number, startedAt: number, http: boolean): Run {
    const { key, token, hash } = k;
    const { clock } = this.options;
    const lease = { key, token, fence, ttlMs, startedAt, drift: this.#drift, clock, driver: this.driver };
    return new Run({ key, token, fence, hash, lease, http, startedAt });
  }
}

/** An error of a begin as an HTTP event's answer (409, 422, 400, 503); thrown otherwise. */
function answer(err: unknown, http: boolean): unknown {
  const response = http ? httpResponseFor(err) : undefined;
  if (response) return response;
  throw err;
}
