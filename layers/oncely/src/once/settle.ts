/**
 * How runs end: the one settle path, for a single event (a batch of one) and for a batch. Every claimed record
 * is completed with its handler's result or released, in one round trip (run for one call, runMany for more);
 * completions whose call failed on the store are retried, the same for one event and for a batch.
 */
import { sleep } from '../clock.js';
import { lockLost, ResultNotStorableError, StoreError } from '../errors.js';
import { releaseResultOf } from '../lease.js';
import type { CallResult, ScriptCall, Store } from '../transport/types.js';
import { type Decision, type DecisionKind, shortKey } from './decisions.js';
import { type HttpResult, isHttpResult } from './http.js';
import type { Resolved } from './options.js';
import { encodeResult, markerText, parseComplete, type Records } from './record.js';
import { batchTrip } from './record-batch.js';
import type { Run } from './run.js';

/**
 * One round trip for `calls`, as record-batch.ts batchTrip (claims and completions merged per slot group), a
 * single call sent straight as one run: no async layers of batchTrip's and roundTrip's between a single
 * event's claim or completion and its reply. Rejects when the round trip fails.
 */
export function recordTrip(store: Store, calls: readonly ScriptCall[]): Promise<CallResult[]> {
  if (calls.length !== 1) return batchTrip(store, calls);
  const { script, keys, args } = calls[0]!;
  return store.run(script, keys, args).then((value): CallResult[] => [{ ok: true, value }]);
}

/**
 * Attempts at completing when the store fails (completion is idempotent for its owner), and the pauses
 * between them. A batch's completions are retried as one event's are: a batch whose completion failed would
 * otherwise be redelivered only to find its records in progress (their leases still run) until they expire.
 * A release is sent once: a record not released expires with its lease.
 */
const COMPLETE_ATTEMPTS = 3;
const COMPLETE_RETRY_MS = [50, 150] as const;

/** How a run's handler ended: with `result`, or not (`why`: for the release's decision). */
export type Ending = { ok: true; result: unknown } | { ok: false; why: string };

/** What became of a run: `done`, its record recorded (or nothing to record); `error`, what its invocation throws. */
export type Settled = { done: boolean; error?: unknown };

/** What settling needs of its engine. */
export interface SettleHost {
  readonly store: Store;
  readonly records: Records;
  readonly options: Pick<
    Resolved<unknown>,
    'namespace' | 'clock' | 'retentionMs' | 'maxResultBytes' | 'unstorable' | 'completeFailure'
  >;
  decide(d: Decision): void;
  /** The run's record is completed holding `text` (`sentAt`: when the completing request first went out). */
  cacheCompleted(run: Run, text: string, sentAt: number): void;
}

/** One store call of a settle: a completion (`text` stored) or a release (`why`). */
interface Call {
  n: number;
  run: Run;
  call: ScriptCall;
  why: string;
  text?: string;
  notStored?: string;
}

/**
 * Settles `runs[n]` per `endings[n]` (a run that is undefined, or owns no record, is done when its handler
 * succeeded). Store failures are decisions, and errors the invocation throws per `completeFailure`; it throws
 * only what is not a store failure and failed a completion (a bug). A release never throws: a handler's own
 * error always wins.
 */
export async function settle(
  host: SettleHost,
  runs: readonly (Run | undefined)[],
  endings: readonly Ending[],
): Promise<Settled[]> {
  const o = host.options;
  const settled: Settled[] = endings.map((e) => ({ done: e.ok }));
  const calls: Call[] = [];
  runs.forEach((run, n) => {
    const ending = endings[n];
    run?.stop();
    if (!run?.leaseInit || !ending) return;
    const plan: Plan = ending.ok ? prepare(host, run, ending.result) : { why: ending.why };
    if ('text' in plan) {
      const call = host.records.complete(run as Run & { key: string }, plan.text, o.retentionMs);
      calls.push({ n, run, call, why: '', ...plan });
      return;
    }
    if ('error' in plan) settled[n] = { done: false, error: plan.error };
    calls.push({ n, run, call: host.records.release(run.key!, run.token), why: plan.why });
  });
  const sentAt = o.clock.now();
  let pending = calls;
  for (let attempt = 1; pending.length > 0; attempt++) {
    const { replies, thrown } = await send(host.store, pending);
    const retry: { c: Call; error: unknown }[] = [];
    pending.forEach((c, i) => {
      const r = replies[i] ?? { ok: false, error: new Error('no reply') };
      if (c.text === undefined) released(host, c, r);
      else if (!r.ok) retry.push({ c, error: r.error });
      else settled[c.n] = completed(host, c, r.value, sentAt);
    });
    // Not a store failure (a bug): no retry; a release is logged above, a completion's caller gets it.
    if (thrown !== undefined && retry.length > 0) throw thrown;
    if (retry.length > 0 && attempt >= COMPLETE_ATTEMPTS) {
      for (const { c, error } of retry) settled[c.n] = completeFailed(host, c, error);
      break;
    }
    pending = retry.map((r) => r.c);
    if (pending.length > 0) await sleep(COMPLETE_RETRY_MS[attempt - 1] ?? 150);
  }
  return settled;
}

/**
 * One round trip for `calls` (completions merged per slot group: record-batch.ts). Never rejects: a failed
 * round trip fails each call; `thrown` is set when what failed it was not the store (a bug).
 */
async function send(
  store: Store,
  calls: readonly Call[],
): Promise<{ replies: CallResult[]; thrown?: unknown }> {
  try {
    return {
      replies: await recordTrip(
        store,
        calls.map((c) => c.call),
      ),
    };
  } catch (err) {
    const replies = calls.map((): CallResult => ({ ok: false, error: err as Error }));
    return err instanceof StoreError ? { replies } : { replies, thrown: err };
  }
}

/** What settling a run sends: its result to store (`notStored`: a marker, and why), or a release and why. */
type Plan = { text: string; notStored?: string } | { why: string; error?: ResultNotStorableError };

/**
 * The plan for a run that ended with `result`: store it; or release the record, for an HTTP 5xx answer (not
 * stored, so a retry runs) or a result that cannot be stored with `unstorable: 'throw'` (the error to throw).
 */
function prepare(host: SettleHost, run: Run, result: unknown): Plan {
  if (run.http && isHttpResult(result) && result.statusCode >= 500)
    return { why: `a ${(result as HttpResult).statusCode} answer is not stored` };
  const e = encodeResult(result, host.options.maxResultBytes);
  if (e.ok) return { text: e.text };
  if (host.options.unstorable === 'marker')
    return { text: markerText(e), notStored: `result not stored (${e.reason}: ${e.detail})` };
  const key = run.key!;
  return {
    why: `result not storable: ${e.reason}`,
    error: new ResultNotStorableError(`the result for "${shortKey(key)}" cannot be stored: ${e.detail}`, {
      key,
      reason: e.reason,
      ...(e.bytes !== undefined ? { bytes: e.bytes } : {}),
      cause: e.cause,
    }),
  };
}

/** Emits a decision of the engine's namespace. */
const decide = (host: SettleHost, decision: DecisionKind, fields: Omit<Decision, 'namespace' | 'decision'>) =>
  host.decide({ namespace: host.options.namespace, decision, ...fields });

const durationOf = (host: SettleHost, run: Run) => Math.round(host.options.clock.now() - run.startedAt);

/** Acts on ONCE_COMPLETE's reply: recorded (now, by an earlier attempt, or after the lease ran out), or lost. */
function completed(host: SettleHost, c: Call, value: unknown, sentAt: number): Settled {
  const { run } = c;
  const reply = parseComplete(value);
  const { key, fence } = run;
  const durationMs = durationOf(host, run);
  if (reply === 'completed' || reply === 'already-completed' || reply === 'completed-late') {
    const late =
      reply === 'completed-late' ? 'completed after the lease ran out; nobody had claimed since' : '';
    const { notStored } = c;
    const reason = late && notStored ? `${late}; ${notStored}` : late || notStored;
    decide(host, 'completed', reason ? { key, fence, durationMs, reason } : { key, fence, durationMs });
    host.cacheCompleted(run, c.text!, sentAt);
    return { done: true };
  }
  const by = reply === 'stolen' ? 'taken by another invocation' : 'gone and claimed since';
  decide(host, 'lost', { key, fence, durationMs, reason: `the record was ${by}; result not stored` });
  return { done: false, error: lockLost(run.key!, reply) };
}

/** Logs a release's outcome (a failed release: the record expires with its lease). */
function released(host: SettleHost, c: Call, r: CallResult): void {
  const { run, why } = c;
  if (!r.ok) {
    const message = (r.error as Error | undefined)?.message ?? 'no reply';
    decide(host, 'store-error', {
      key: run.key,
      reason: `release: ${message}; the record expires with its lease`,
    });
    return;
  }
  const base = { key: run.key, fence: run.fence, durationMs: durationOf(host, run) };
  if (releaseResultOf(r.value) === 'released') decide(host, 'released', { ...base, reason: why });
  else decide(host, 'lost', { ...base, reason: `${why}; the record was no longer ours` });
}

/** A completion the store failed after every attempt: per completeFailure, done anyway or an error to throw. */
function completeFailed(host: SettleHost, c: Call, error: unknown): Settled {
  const reason = (error as Error | undefined)?.message ?? 'no reply';
  decide(host, 'complete-failed', { key: c.run.key, fence: c.run.fence, reason });
  // 'throw': the record is not done (an SQS record is reported, so redelivered); the record expires with its lease.
  return host.options.completeFailure === 'return' ? { done: true } : { done: false, error };
}
