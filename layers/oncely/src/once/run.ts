/**
 * The Run: one claimed invocation (or one that runs without a record), with its lease, the handler's signal,
 * and the two ways out, complete() and fail().
 */
import { sleep } from '../clock.js';
import { lockLost, ResultNotStorableError, StoreError } from '../errors.js';
import { Lease, type LeaseInit, type ReleaseResult, releaseResultOf } from '../lease.js';
import { EXTEND_WHEN_LEFT } from '../lease-keeper.js';
import type { CallResult, ScriptCall, Store } from '../transport/types.js';
import { type Decided, shortKey } from './decisions.js';
import { type HttpResult, isHttpResult } from './http.js';
import { type Halfway, keepAlive } from './lease.js';
import type { OnceRun, Resolved } from './options.js';
import { type CompleteReply, encodeResult, markerText, parseComplete, type Records } from './record.js';

/** Attempts at completing when the store fails (completion is idempotent for its owner). */
const COMPLETE_ATTEMPTS = 3;
const COMPLETE_RETRY_MS = [50, 150] as const;

const UNFENCED: OnceRun = Object.freeze({
  signal: new AbortController().signal,
  fence: 0,
  key: undefined,
});

/** What a Run needs of its engine. */
export interface RunHost {
  readonly store: Store;
  readonly options: Pick<
    Resolved<unknown>,
    'clock' | 'ttlMs' | 'retentionMs' | 'maxResultBytes' | 'unstorable' | 'completeFailure'
  >;
  readonly records: Records;
  readonly halfway: Halfway<Run>;
  decide(d: Decided): void;
  /** The run's record is completed holding `text` (`sentAt`: when the completing request first went out). */
  cacheCompleted?(run: Run, text: string, sentAt: number): void;
}

interface RunInit {
  key: string | undefined;
  token: string;
  fence: number;
  hash: string;
  /** What the record's lease is built from, when first needed (null: the run owns no record). */
  lease: LeaseInit | null;
  http: boolean;
  startedAt: number;
}

/**
 * One claimed invocation (or one that runs without a record). `once` is what the handler gets; complete() and
 * fail() are the two ways out. Neither is ever called twice: the second call does nothing.
 *
 * Nothing can happen to a claimed record before half its lease, when the first extension is due: until then
 * the run is an entry in its engine's Halfway map and has no Lease, and the handler's signal is only made if
 * the handler reads it. A handler that finishes sooner (most do) never pays for a lease's expiry timer, its
 * AbortControllers, or a timer of its own. At half its lease the Lease is built with the claim's start and TTL
 * (so the same validity), and keepAlive takes over as it would have from the claim.
 */
export class Run {
  readonly key: string | undefined;
  readonly token: string;
  readonly fence: number;
  readonly hash: string;
  readonly http: boolean;
  readonly once: OnceRun;
  readonly #host: RunHost;
  readonly #startedAt: number;
  readonly #leaseInit: LeaseInit | null;
  #lease: Lease | undefined;
  /** The handler's signal, made when first read. */
  #handler: AbortController | undefined;
  /** Set when the lease was lost before the run was settled: the reason the handler's signal carries. */
  #lost: { reason: unknown } | undefined;
  /** Set by stop(): the handler's signal no longer follows the lease. */
  #stopped = false;
  #stop: (() => void) | undefined;
  #detach: (() => void) | undefined;
  #settled = false;

  constructor(host: RunHost, init: RunInit) {
    this.#host = host;
    this.key = init.key;
    this.token = init.token;
    this.fence = init.fence;
    this.hash = init.hash;
    this.http = init.http;
    this.#startedAt = init.startedAt;
    this.#leaseInit = init.lease;
    if (!init.lease) {
      this.once = init.key === undefined ? UNFENCED : Object.freeze({ ...UNFENCED, key: init.key });
      return;
    }
    const run = this;
    this.once = Object.freeze({
      get signal(): AbortSignal {
        return run.#signal();
      },
      fence: init.fence,
      key: init.key,
    });
  }

  /** The record's lease (built on first use), or null when the run owns no record. */
  get lease(): Lease | null {
    if (!this.#leaseInit) return null;
    if (this.#lease) return this.#lease;
    const lease = new Lease(this.#leaseInit);
    this.#lease = lease;
    // The handler's signal follows the lease until the run is settled, and no further: a completed record's
    // lease timer running out later must not abort a signal the handler may still hold.
    if (!this.#stopped) {
      const forward = () => this.#lose(lease.signal.reason);
      if (lease.signal.aborted) forward();
      else {
        lease.signal.addEventListener('abort', forward, { once: true });
        this.#detach = () => lease.signal.removeEventListener('abort', forward);
      }
    }
    return lease;
  }

  #lose(reason: unknown): void {
    if (this.#stopped || this.#lost) return;
    this.#lost = { reason };
    this.#handler?.abort(reason);
  }

  #signal(): AbortSignal {
    if (!this.#handler) {
      this.#handler = new AbortController();
      if (this.#lost) this.#handler.abort(this.#lost.reason);
    }
    return this.#handler.signal;
  }

  get settled(): boolean {
    return this.#settled;
  }

  /**
   * Starts extending the lease while the handler runs: one timer, due when half the lease is left; the Lease
   * and its keepAlive only start then.
   */
  keepAlive(ttlFor: () => number): void {
    const init = this.#leaseInit;
    if (!init || this.#stopped) return;
    const validUntil = init.startedAt + init.ttlMs - init.drift(init.ttlMs);
    this.#host.halfway.add(this, validUntil - init.ttlMs * EXTEND_WHEN_LEFT, ttlFor, Run.#halfway);
  }

  /** Half the lease is left: build the Lease and keep it alive from here (a static: no closure per run). */
  static #halfway(run: Run, ttlFor: () => number): void {
    if (run.#stopped) return;
    const lease = run.lease as Lease;
    const host = run.#host;
    const onError = (e: Error) =>
      host.decide({ decision: 'store-error', key: run.key, reason: `extend: ${e.message}` });
    run.#stop = keepAlive(() => [lease], ttlFor, host.options.ttlMs, host.options.clock, onError, true);
  }

  /** Stops extending and detaches the handler's signal from the lease (the handler is done). */
  stop(): void {
    this.#stopped = true;
    if (this.#leaseInit) this.#host.halfway.delete(this);
    this.#stop?.();
    this.#detach?.();
  }

  durationMs(): number {
    return Math.round(this.#host.options.clock.now() - this.#startedAt);
  }

  /**
   * What to store for `result`, or the error to throw (`unstorable: 'throw'`). An HTTP 5xx answer is not
   * stored (undefined): the record is released so a retry runs.
   */
  prepare(
    result: unknown,
  ): { text: string; notStored?: string } | { release: true } | { error: ResultNotStorableError } {
    if (this.http && isHttpResult(result) && result.statusCode >= 500) return { release: true };
    const e = encodeResult(result, this.#host.options.maxResultBytes);
    if (e.ok) return { text: e.text };
    if (this.#host.options.unstorable === 'marker')
      return { text: markerText(e), notStored: `result not stored (${e.reason}: ${e.detail})` };
    const key = this.key!;
    return {
      error: new ResultNotStorableError(`the result for "${shortKey(key)}" cannot be stored: ${e.detail}`, {
        key,
        reason: e.reason,
        ...(e.bytes !== undefined ? { bytes: e.bytes } : {}),
        cause: e.cause,
      }),
    };
  }

  /**
   * Acts on ONCE_COMPLETE's reply: returns normally when the result is recorded, throws when lost. `notStored`:
   * the record holds a ResultNotStored marker, and why.
   */
  completed(reply: CompleteReply, notStored?: string): void {
    const host = this.#host;
    const durationMs = this.durationMs();
    if (reply === 'completed' || reply === 'already-completed' || reply === 'completed-late') {
      const late =
        reply === 'completed-late' ? 'completed after the lease ran out; nobody had claimed since' : '';
      const reason = [late, notStored ?? ''].filter(Boolean).join('; ');
      host.decide({
        decision: 'completed',
        key: this.key,
        fence: this.fence,
        durationMs,
        ...(reason ? { reason } : {}),
      });
      return;
    }
    host.decide({
      decision: 'lost',
      key: this.key,
      fence: this.fence,
      durationMs,
      reason: `the record was ${reply === 'stolen' ? 'taken by another invocation' : 'gone and claimed since'}; result not stored`,
    });
    throw lockLost(this.key!, reply);
  }

  /** Logs the outcome of a release. */
  released(reply: ReleaseResult, why: string): void {
    const host = this.#host;
    if (reply === 'released')
      host.decide({
        decision: 'released',
        key: this.key,
        fence: this.fence,
        durationMs: this.durationMs(),
        reason: why,
      });
    else
      host.decide({
        decision: 'lost',
        key: this.key,
        fence: this.fence,
        durationMs: this.durationMs(),
        reason: `${why}; the record was no longer ours`,
      });
  }

  /**
   * Records `result` (COMPLETED, kept for retentionMs) and returns it. Throws LockLostError when the record was
   * taken over meanwhile (our result is not stored), ResultNotStorableError per `unstorable`. A store failure
   * after retries is logged (complete-failed), then thrown or the result returned per `completeFailure`.
   */
  async complete(result: unknown): Promise<unknown> {
    if (this.#settled) return result;
    this.#settled = true;
    this.stop();
    if (!this.#leaseInit) return result;
    const host = this.#host;
    const plan = this.prepare(result);
    if ('release' in plan) {
      await this.#release(`a ${(result as HttpResult).statusCode} answer is not stored`);
      return result;
    }
    if ('error' in plan) {
      await this.#release(`result not storable: ${plan.error.reason}`);
      throw plan.error;
    }
    const call = host.records.complete(this as Run & { key: string }, plan.text, host.options.retentionMs);
    const sentAt = host.options.clock.now();
    for (let attempt = 1; ; attempt++) {
      try {
        this.completed(
          parseComplete(await host.store.run(call.script, call.keys, call.args)),
          plan.notStored,
        );
        host.cacheCompleted?.(this, plan.text, sentAt);
        return result;
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        if (attempt >= COMPLETE_ATTEMPTS) {
          host.decide({
            decision: 'complete-failed',
            key: this.key,
            fence: this.fence,
            reason: err.message,
          });
          if (host.options.completeFailure === 'return') return result;
          throw err;
        }
        await sleep(COMPLETE_RETRY_MS[attempt - 1] ?? 150);
      }
    }
  }

  /** The handler threw: release the record (only if still ours) so a retry can run. Never throws. */
  async fail(error: unknown): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    this.stop();
    if (!this.#leaseInit) return;
    await this.#release(`the handler threw ${(error as Error)?.name ?? typeof error}`);
  }

  async #release(why: string): Promise<void> {
    try {
      const call = this.#host.records.release(this.key!, this.token);
      this.released(releaseResultOf(await this.#host.store.run(call.script, call.keys, call.args)), why);
    } catch (err) {
      this.#host.decide({
        decision: 'store-error',
        key: this.key,
        reason: `release: ${(err as Error).message}; the record expires with its lease`,
      });
    }
  }
}

/**
 * Settles a batch: completes (`ok[n]`, with `results[n]`) or releases every claimed record of `runs` in one
 * round trip. Returns which records count as done in the end (a result not stored, or a record lost meanwhile,
 * is not).
 */
export async function settleMany(
  host: RunHost,
  runs: readonly (Run | undefined)[],
  ok: readonly boolean[],
  results: readonly unknown[],
): Promise<boolean[]> {
  const o = host.options;
  const done = [...ok];
  const settle: { n: number; run: Run; call: ScriptCall; complete: boolean; why: string; text?: string }[] =
    [];
  runs.forEach((run, n) => {
    if (!run?.lease) return;
    if (!done[n]) {
      const call = host.records.release(run.key!, run.token);
      settle.push({ n, run, call, complete: false, why: 'the handler failed or did not run' });
      return;
    }
    const plan = run.prepare(results[n]);
    if ('text' in plan) {
      const call = host.records.complete(run as Run & { key: string }, plan.text, o.retentionMs);
      settle.push({ n, run, call, complete: true, why: plan.notStored ?? '', text: plan.text });
      return;
    }
    done[n] = false;
    const why = 'error' in plan ? `result not storable: ${plan.error.reason}` : 'not stored';
    settle.push({ n, run, call: host.records.release(run.key!, run.token), complete: false, why });
  });
  if (settle.length === 0) return done;
  let replies: CallResult[] | undefined;
  const sentAt = o.clock.now();
  try {
    replies = await host.store.runMany(settle.map((s) => s.call));
  } catch (err) {
    host.decide({ decision: 'complete-failed', reason: (err as Error).message });
    if (!(err instanceof StoreError)) throw err;
  }
  // completeFailure 'throw': a record whose result could not be recorded is reported, so SQS redelivers it.
  const unrecorded = o.completeFailure !== 'throw';
  settle.forEach((s, i) => {
    const r = replies?.[i];
    if (!r?.ok) {
      if (replies)
        host.decide({ decision: 'complete-failed', key: s.run.key, reason: r?.error.message ?? 'no reply' });
      if (s.complete) done[s.n] = unrecorded; // the record expires with its lease
      return;
    }
    if (!s.complete) {
      s.run.released(releaseResultOf(r.value), s.why);
      return;
    }
    try {
      s.run.completed(parseComplete(r.value), s.why || undefined);
      host.cacheCompleted?.(s.run, s.text as string, sentAt);
    } catch {
      done[s.n] = false; // lost: another invocation owns the key now; let SQS redeliver
    }
  });
  return done;
}
