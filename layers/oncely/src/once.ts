/**
 * Run-once Lambda handlers. One state machine (OnceEngine) over one record per idempotency key; withOnce(),
 * withOnceBatch(), withLeader() and the middy middleware (middy.ts) are thin adapters over it.
 *
 * Reads top to bottom: options and defaults, errors, decisions (logs and the callback), result encoding, the
 * engine (claim → run → complete | release), then the adapters. The record, its transitions and the failure
 * modes are described in docs/once.md; the Lua is in scripts.ts (ONCE_CLAIM, ONCE_COMPLETE, ONCE_EXTEND,
 * ONCE_RELEASE).
 *
 * Round trips: a first invocation costs 2 (claim, complete), a duplicate of a completed one 1 (the claim returns
 * the stored result), a long handler one more per extension; an SQS batch 2 whatever its size.
 */
import * as crypto from 'node:crypto';
import type { Context, ScheduledEvent, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { type Clock, monotonicClock, sleep } from './clock.js';
import { LockLostError, OncelyError, StoreError, StoreUnavailableError, ValidationError } from './errors.js';
import {
  canonicalJson,
  type EventSource,
  expressionProblems,
  type Identity,
  identify,
  isHttpEvent,
  KEY_LOCATIONS,
  type KeySpec,
  keySpecProblems,
  type PayloadSpec,
  payloadSpecProblems,
  usesJmespath,
} from './events.js';
import {
  check,
  type ExtendOutcome,
  Lease,
  type LeaseDriver,
  type LeaseInit,
  MIN_TTL_MS,
  newToken,
  ttlProblems,
} from './lock.js';
import { ONCE_CLAIM, ONCE_COMPLETE, ONCE_EXTEND, ONCE_RELEASE } from './scripts.js';
import { envFlag } from './transport/from-env.js';
import type { CallResult, ScriptArg, ScriptCall, Store } from './transport/types.js';

// ---------------------------------------------------------------------------------------------- options

export type DuplicatePolicy = 'throw' | 'wait' | 'skip';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

export interface OnceOptions<E = unknown> {
  /** Where records live (`fromEnv()`, `upstashStore()`, `redisStore()`, `clusterStore()`). */
  store: Store;
  /**
   * Records are namespaced per function: the same key in two functions is two records.
   * @default process.env.AWS_LAMBDA_FUNCTION_NAME, else 'default'
   */
  namespace?: string;
  /**
   * Where the idempotency key comes from: `'auto'` (recognise the event source), a source name, a function of
   * the event, or `{ jmespath: 'expression' }`. See events.ts for the key of every source.
   * @default 'auto'
   */
  key?: KeySpec<E>;
  /**
   * What a reuse of the key must match, hashed: the source's payload (`'auto'`), the whole event (`'event'`),
   * a function or `{ jmespath }` of the event, or `false` for no check.
   * @default 'auto'
   */
  payload?: PayloadSpec<E>;
  /**
   * An event without a key: `'throw'` a MissingKeyError (HTTP: 400), or `'run'` the handler without dedupe.
   * @default 'throw'
   */
  missingKey?: 'throw' | 'run';
  /**
   * A duplicate while the first invocation is still running: `'throw'` an InProgressError (the event source
   * retries; HTTP: 409 with Retry-After), `'wait'` for its result (polling within the remaining time), or
   * `'skip'` (return undefined).
   * @default 'throw'
   */
  duplicate?: DuplicatePolicy;
  /**
   * Lease of an in-progress record, auto-extended while the handler runs. Never longer than the invocation's
   * remaining time minus `marginMs`, so a timed-out invocation leaves no record behind.
   * @default 30_000
   */
  leaseMs?: number;
  /**
   * How long before the Lambda deadline the lease ends (and the handler's signal fires).
   * @default 1_000
   */
  marginMs?: number;
  /**
   * How long a completed record (and its result) is kept: duplicates within it get the stored result.
   * @default 86_400_000 (24 h)
   */
  retentionMs?: number;
  /**
   * `duplicate: 'wait'`: time between polls (shortened to the holder's remaining lease when that is sooner).
   * @default 200
   */
  pollMs?: number;
  /**
   * `duplicate: 'wait'`: give up (InProgressError) after this long.
   * @default the invocation's remaining time minus marginMs
   */
  maxWaitMs?: number;
  /**
   * Largest result stored, in bytes of JSON.
   * @default 262_144 (256 KiB: the asynchronous invocation payload limit)
   */
  maxResultBytes?: number;
  /**
   * A result that cannot be stored (not JSON-serialisable, or over maxResultBytes): `'throw'` a
   * ResultNotStorableError and release the record (a retry runs the handler again), or store a `'marker'`
   * (this invocation returns its result; duplicates get a ResultNotStored marker, never a silent wrong value).
   * @default 'throw'
   */
  unstorable?: 'throw' | 'marker';
  /**
   * The store fails at completion (after retries), so the result cannot be recorded: `'throw'` the StoreError
   * (fail closed: the source retries, and a retry runs again once the record's lease has run out), or
   * `'return'` the result anyway and log a complete-failed error line (no retry; a later duplicate delivery
   * would run again). Choose `'return'` when repeating the handler is worse than an unrecorded success.
   * @default 'throw'
   */
  completeFailure?: 'throw' | 'return';
  /**
   * Store unreachable at claim time: `false` fails closed (throws StoreUnavailableError before the handler
   * runs, so the source retries); `true` runs the handler without dedupe and logs an error line.
   * @default false
   */
  failOpen?: boolean;
  /**
   * For HTTP events (API Gateway, function URLs, ALB): answer InProgressError with 409 + Retry-After,
   * PayloadMismatchError with 422, MissingKeyError with 400 and StoreUnavailableError with 503, replay stored
   * responses with `Idempotent-Replayed: true`, and never store a 5xx response. `false` throws instead.
   * @default 'auto'
   */
  http?: 'auto' | false;
  /**
   * Prefix of every key: `<prefix>:once:{<namespace>:<key digest>}:rec`.
   * @default 'oncely'
   */
  prefix?: string;
  /**
   * Least severe decision logged (one JSON line each).
   * @default process.env.ONCELY_LOG_LEVEL, else 'info'
   */
  logLevel?: LogLevel;
  /** Where log lines go. @default console.log */
  logger?: (line: string) => void;
  /** Called with every decision (also when logging is off). Exceptions it throws are ignored. */
  onDecision?: (decision: Decision) => void;
  /** The monotonic clock leases are measured on. @default performance.now */
  clock?: Clock;
  /** Wall-clock milliseconds since the epoch (fence floor, leader tick lag, log timestamps). @default Date.now */
  wallClock?: () => number;
}

/** What a handler is given besides its event and context. */
export interface OnceRun {
  /** Aborts (reason: a LockLostError) when the lease is lost: stop and do not write. */
  readonly signal: AbortSignal;
  /**
   * Fencing token, strictly increasing across owners of this key: pass it to what you write to. 0 when the
   * handler runs without a record (ONCELY_DISABLED, failOpen, missingKey: 'run').
   */
  readonly fence: number;
  /** The idempotency key (undefined when the event had none). */
  readonly key: string | undefined;
}

export type OnceHandler<E, R> = (event: E, context: Context, once: OnceRun) => Promise<R> | R;

const DEFAULTS = Object.freeze({
  leaseMs: 30_000,
  marginMs: 1_000,
  retentionMs: 86_400_000,
  pollMs: 200,
  maxResultBytes: 262_144,
  duplicate: 'throw' as DuplicatePolicy,
  missingKey: 'throw' as 'throw' | 'run',
  unstorable: 'throw' as 'throw' | 'marker',
  completeFailure: 'throw' as 'throw' | 'return',
  failOpen: false,
  http: 'auto' as 'auto' | false,
  prefix: 'oncely',
});

/**
 * The fence counter outlives its record by this much: the longest a Lambda invocation can run, so no earlier
 * owner can still be at work when the counter goes (past that, fences still rise: see ONCE_CLAIM).
 */
export const FENCE_GRACE_MS = 15 * 60_000;
/** Attempts at completing when the store fails (completion is idempotent for its owner). */
const COMPLETE_ATTEMPTS = 3;
const COMPLETE_RETRY_MS = [50, 150] as const;
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];
const MAX_MS = 2_147_483_647;

// ----------------------------------------------------------------------------------------------- errors

/** The key's first invocation is still running (`duplicate: 'throw'`, or `'wait'` ran out of time). */
export class InProgressError extends OncelyError {
  override name = 'InProgressError';
  readonly key: string;
  /** The running invocation's remaining lease: retry after this long. */
  readonly retryAfterMs: number;
  constructor(key: string, retryAfterMs: number) {
    super(`"${short(key)}" is in progress in another invocation (lease ends in ${retryAfterMs} ms)`);
    this.key = key;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The key was first used with a different payload: never answered with the other payload's result. */
export class PayloadMismatchError extends OncelyError {
  override name = 'PayloadMismatchError';
  readonly key: string;
  constructor(key: string) {
    super(`"${short(key)}" was already used with a different payload`);
    this.key = key;
  }
}

/** The event has no idempotency key where the options look for one (`missingKey: 'throw'`). */
export class MissingKeyError extends OncelyError {
  override name = 'MissingKeyError';
  readonly source: string;
  constructor(source: string) {
    super(`no idempotency key in the event: looked for ${KEY_LOCATIONS[source as EventSource] ?? source}`);
    this.source = source;
  }
}

export type NotStorableReason = 'too-large' | 'not-serialisable';

/** The handler's result could not be stored (`unstorable: 'throw'`); the record was released. */
export class ResultNotStorableError extends OncelyError {
  override name = 'ResultNotStorableError';
  readonly key: string;
  readonly reason: NotStorableReason;
  /** JSON size in bytes, for `too-large`. */
  readonly bytes: number | undefined;
  constructor(key: string, reason: NotStorableReason, detail: string, bytes?: number, cause?: unknown) {
    super(`the result for "${short(key)}" cannot be stored: ${detail}`, { cause });
    this.key = key;
    this.reason = reason;
    this.bytes = bytes;
  }
}

/** What a duplicate gets when the first invocation's result was not stored (`unstorable: 'marker'`). */
export interface ResultNotStored {
  readonly oncely: 'result-not-stored';
  readonly reason: NotStorableReason;
  readonly bytes?: number;
}

export function isResultNotStored(value: unknown): value is ResultNotStored {
  return (
    typeof value === 'object' && value !== null && (value as ResultNotStored).oncely === 'result-not-stored'
  );
}

const short = (key: string) => (key.length > 120 ? `${key.slice(0, 117)}...` : key);

// -------------------------------------------------------------------------------------------- decisions

export type DecisionKind =
  | 'claimed'
  | 'completed'
  | 'duplicate-returned'
  | 'in-progress'
  | 'skipped'
  | 'mismatch'
  | 'released'
  | 'lost'
  | 'no-key'
  | 'fail-open'
  | 'store-error'
  | 'complete-failed'
  | 'stale-tick'
  | 'disabled';

/** One decision about one invocation (or one record of a batch). Never holds a payload, result or secret. */
export interface Decision {
  readonly decision: DecisionKind;
  readonly namespace: string;
  readonly key?: string;
  readonly fence?: number;
  readonly leaseMs?: number;
  /** in-progress: the holder's remaining lease. */
  readonly retryAfterMs?: number;
  /** completed / released / lost: how long the handler ran. */
  readonly durationMs?: number;
  /** duplicate-returned after `duplicate: 'wait'`: how long it waited. */
  readonly waitedMs?: number;
  /** Why, in a few words (an error's name and a redacted store message; never a handler's message). */
  readonly reason?: string;
}

const LEVEL_OF: Readonly<Record<DecisionKind, Exclude<LogLevel, 'silent'>>> = {
  claimed: 'info',
  completed: 'info',
  'duplicate-returned': 'info',
  'in-progress': 'warn',
  skipped: 'warn',
  mismatch: 'warn',
  released: 'warn',
  'no-key': 'warn',
  'stale-tick': 'warn',
  lost: 'error',
  'fail-open': 'error',
  'store-error': 'error',
  'complete-failed': 'error',
  disabled: 'debug',
};

const RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };
const LABEL: Readonly<Record<Exclude<LogLevel, 'silent'>, string>> = {
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
};

/** `ONCELY_DISABLED`, read per invocation (tests flip it); a value that is not a flag is a ConfigError. */
export function isDisabled(): boolean {
  return envFlag('ONCELY_DISABLED');
}

// ------------------------------------------------------------------------------------- result encoding

/** The stored form: `u` (undefined), `j<json>` (a value), `m<json>` (a ResultNotStored marker). */
type Encoded =
  | { ok: true; text: string }
  | { ok: false; reason: NotStorableReason; detail: string; bytes?: number; cause?: unknown };

export function encodeResult(value: unknown, maxBytes: number): Encoded {
  if (value === undefined) return { ok: true, text: 'u' };
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    return { ok: false, reason: 'not-serialisable', detail: (err as Error).message, cause: err };
  }
  if (json === undefined) {
    return { ok: false, reason: 'not-serialisable', detail: `a ${typeof value} has no JSON form` };
  }
  // A UTF-16 code unit is at most 3 bytes of UTF-8: only a long text needs counting.
  const bytes = json.length * 3 > maxBytes ? Buffer.byteLength(json, 'utf8') : 0;
  if (bytes > maxBytes) {
    return {
      ok: false,
      reason: 'too-large',
      detail: `${bytes} bytes of JSON, the limit is ${maxBytes}`,
      bytes,
    };
  }
  return { ok: true, text: `j${json}` };
}

export function decodeResult(text: unknown): unknown {
  if (typeof text !== 'string' || text === 'u') return undefined;
  const body = text.slice(1);
  return text[0] === 'm' || text[0] === 'j' ? JSON.parse(body) : undefined;
}

function markerText(e: Extract<Encoded, { ok: false }>): string {
  const marker: ResultNotStored = {
    oncely: 'result-not-stored',
    reason: e.reason,
    ...(e.bytes !== undefined ? { bytes: e.bytes } : {}),
  };
  return `m${JSON.stringify(marker)}`;
}

// ----------------------------------------------------------------------------------------- HTTP answers

interface HttpResult {
  statusCode: number;
  headers?: Record<string, string | number | boolean>;
  body?: string;
  [k: string]: unknown;
}

function httpError(statusCode: number, err: Error, retryAfterMs?: number): HttpResult {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (retryAfterMs !== undefined)
    headers['retry-after'] = String(Math.max(1, Math.ceil(retryAfterMs / 1000)));
  return { statusCode, headers, body: JSON.stringify({ error: err.name, message: err.message }) };
}

/** The HTTP answer for one of our errors (IETF idempotency-key draft: 409 / 422 / 400), or undefined. */
export function httpResponseFor(err: unknown): HttpResult | undefined {
  if (err instanceof InProgressError) return httpError(409, err, err.retryAfterMs);
  if (err instanceof PayloadMismatchError) return httpError(422, err);
  if (err instanceof MissingKeyError) return httpError(400, err);
  if (err instanceof StoreUnavailableError) return httpError(503, err, 1000);
  return undefined;
}

const isHttpResult = (v: unknown): v is HttpResult =>
  typeof v === 'object' && v !== null && typeof (v as HttpResult).statusCode === 'number';

function replayed(value: unknown): unknown {
  if (!isHttpResult(value)) return value;
  return { ...value, headers: { ...(value.headers ?? {}), 'idempotent-replayed': 'true' } };
}

// ---------------------------------------------------------------------------------------------- helpers

function remainingOf(context: Partial<Context> | undefined): number {
  const f = context?.getRemainingTimeInMillis;
  if (typeof f !== 'function') return Number.POSITIVE_INFINITY;
  const ms = Number(f.call(context));
  return Number.isFinite(ms) ? ms : Number.POSITIVE_INFINITY;
}

/** SHA-256 in one call (crypto.hash, Node ≥ 20.12: no Hash object per call), else through createHash. */
const sha256: (text: string) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('sha256', text, 'base64url')
    : (text) => crypto.createHash('sha256').update(text).digest('base64url');

function digest(text: string): string {
  return sha256(text).slice(0, 22);
}

/** The payload hash stored with a record ('' when unchecked). */
export function payloadHash(identity: Identity): string {
  return identity.checkPayload ? digest(canonicalJson(identity.payload) ?? 'undefined') : '';
}

const whole = (v: unknown, min: number, max: number) =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

function oneOf<T>(field: string, value: unknown, allowed: readonly T[]): string[] {
  return value === undefined || allowed.includes(value as T)
    ? []
    : [`${field} must be one of ${allowed.map((a) => String(a)).join(', ')}, got ${String(value)}`];
}

const UNFENCED: OnceRun = Object.freeze({
  signal: new AbortController().signal,
  fence: 0,
  key: undefined,
});

/** Runs `fn` over `items` with at most `limit` at a time. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** What a Run and a lease driver need of the engine (whatever its event type). */
interface EngineCore {
  readonly store: Store;
  readonly options: {
    readonly clock: Clock;
    readonly leaseMs: number;
    readonly maxResultBytes: number;
    readonly unstorable: 'throw' | 'marker';
    readonly completeFailure: 'throw' | 'return';
  };
  readonly halfway: Halfway;
  keysOf(key: string): [record: string, fence: string];
  decide(d: Omit<Decision, 'namespace'>): void;
  releaseRecord(key: string, token: string): Promise<number>;
  completeCall(run: Run, text: string): ScriptCall;
}

/**
 * A lease driver for records. Extensions requested in the same tick (a batch's leases all come due together)
 * go to the store as one runMany.
 */
class RecordDriver implements LeaseDriver {
  #queue: { call: ScriptCall; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  constructor(readonly engine: EngineCore) {}

  extend(key: string, token: string, ttlMs: number): Promise<ExtendOutcome> {
    const [rec, fence] = this.engine.keysOf(key);
    const call = { script: ONCE_EXTEND, keys: [rec, fence], args: [token, ttlMs, ttlMs + FENCE_GRACE_MS] };
    return new Promise<unknown>((resolve, reject) => {
      this.#queue.push({ call, resolve, reject });
      if (this.#queue.length === 1) queueMicrotask(() => this.#flush());
    }).then((r) => (Number(r) === 1 ? 'extended' : Number(r) === -1 ? 'stolen' : 'expired'));
  }

  async release(key: string, token: string) {
    const r = await this.engine.releaseRecord(key, token);
    return r === 1 ? 'released' : r === -1 ? 'notHeld' : 'expired';
  }

  async #flush(): Promise<void> {
    const batch = this.#queue;
    this.#queue = [];
    const store = this.engine.store;
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
 * Keeps `leases` alive: extends them (together) when half their lease is left, to `ttlFor()` (leaseMs, or less
 * near the invocation's deadline). Once an extension has reached the deadline no later one could move it, so
 * it stops there (the lease then runs out marginMs before Lambda would stop the invocation), or when stopped.
 */
function keepAlive(
  leases: () => Lease[],
  ttlFor: () => number,
  leaseMs: number,
  clock: Clock,
  onError: (e: Error) => void,
  dueNow = false,
) {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    const live = leases().filter((l) => l.held);
    if (stopped || live.length === 0) return;
    const due = Math.min(...live.map((l) => l.validUntil - l.ttlMs / 2));
    timer = setTimeout(tick, Math.max(0, due - clock.now()));
    timer.unref?.();
  };
  const tick = async () => {
    const ttl = ttlFor();
    if (stopped || ttl < MIN_TTL_MS) return;
    let failed = false;
    await Promise.all(
      leases()
        .filter((l) => l.held)
        .map((l) =>
          l.extend(ttl).catch((err: unknown) => {
            if (err instanceof LockLostError) return; // its signal has fired
            failed = true;
            onError(err as Error);
          }),
        ),
    );
    if (stopped) return;
    if (!failed) return ttl < leaseMs ? undefined : schedule();
    // A store failure: try again soon, while the leases are still valid.
    const live = leases().filter((l) => l.held);
    if (live.length === 0) return;
    timer = setTimeout(tick, Math.min(Math.min(...live.map((l) => l.remainingMs)) / 4, 1000));
    timer.unref?.();
  };
  if (dueNow) void tick();
  else schedule();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/**
 * Starts each run's keepAlive when half its lease is left, on one timer per engine: a run that is done sooner
 * (most are) adds itself to a map and leaves it, where it would otherwise arm and clear a timer of its own.
 * The timer is armed for the earliest due run and re-armed for the next one when it fires.
 */
class Halfway {
  readonly #runs = new Map<Run, { due: number; ttlFor: () => number; start: HalfwayStart }>();
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (clock units); Infinity when none is armed. */
  #at = Number.POSITIVE_INFINITY;
  readonly #fire = () => this.#run();
  constructor(readonly clock: Clock) {}

  add(run: Run, due: number, ttlFor: () => number, start: HalfwayStart): void {
    this.#runs.set(run, { due, ttlFor, start });
    if (due < this.#at) {
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#arm(due);
    }
  }

  delete(run: Run): void {
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

type HalfwayStart = (run: Run, ttlFor: () => number) => void;

// ------------------------------------------------------------------------------------------- the engine

type Resolved<E> = Required<
  Omit<OnceOptions<E>, 'maxWaitMs' | 'onDecision' | 'logLevel' | 'logger' | 'key' | 'payload'>
> &
  Pick<OnceOptions<E>, 'maxWaitMs' | 'onDecision'> & {
    key: KeySpec<E>;
    payload: PayloadSpec<E>;
    logLevel: LogLevel;
    logger: (line: string) => void;
  };

/** What a claim found. */
export type ClaimReply =
  | { kind: 'claimed'; fence: number }
  | { kind: 'completed'; value: unknown }
  | { kind: 'in-progress'; retryAfterMs: number }
  | { kind: 'mismatch' };

/** The outcome of beginning an invocation: run the handler, or answer without running it. */
export type Begin = { kind: 'run'; run: Run } | { kind: 'return'; value: unknown };

/**
 * The run-once state machine. Each invocation: identify → claim (one round trip) → run the handler while the
 * lease is auto-extended → complete (one round trip) or release. Adapters call begin(), then run.complete()
 * or run.fail().
 */
export class OnceEngine<E = unknown> {
  readonly options: Resolved<E>;
  readonly store: Store;
  readonly #drift = (ttlMs: number) => Math.round(ttlMs * 0.01) + 2;
  /** Set when a key or payload spec is a JMESPath expression: its package loaded and the expressions parsed. */
  readonly #ready: Promise<void> | undefined;
  #halfway: Halfway | undefined;
  #driver: RecordDriver | undefined;
  #lastKey: string | undefined;
  #lastKeys: readonly [record: string, fence: string] | undefined;

  constructor(options: OnceOptions<E>, what = 'withOnce options') {
    const o = { ...DEFAULTS, ...stripUndefined(options ?? ({} as OnceOptions<E>)) };
    const p: string[] = [];
    const store = o.store as Store | undefined;
    if (!store || typeof store.run !== 'function' || typeof store.runMany !== 'function')
      p.push('store must be a Store (fromEnv(), upstashStore(), redisStore() or clusterStore())');
    const namespace = o.namespace ?? process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'default';
    if (
      typeof namespace !== 'string' ||
      namespace.length === 0 ||
      namespace.length > 200 ||
      /[{}]/.test(namespace)
    )
      p.push('namespace must be 1 to 200 characters without { or }');
    if (typeof o.prefix !== 'string' || o.prefix.length === 0 || /[{}]/.test(o.prefix))
      p.push('prefix must be a non-empty string without { or }');
    p.push(...ttlProblems(o.leaseMs, 'leaseMs'), ...ttlProblems(o.retentionMs, 'retentionMs'));
    if (!whole(o.marginMs, 0, MAX_MS))
      p.push(`marginMs must be a whole number of milliseconds, got ${o.marginMs}`);
    if (!whole(o.pollMs, 1, MAX_MS))
      p.push(`pollMs must be a whole number of milliseconds ≥ 1, got ${o.pollMs}`);
    if (o.maxWaitMs !== undefined && !whole(o.maxWaitMs, 0, MAX_MS))
      p.push(`maxWaitMs must be a whole number of milliseconds, got ${o.maxWaitMs}`);
    if (!whole(o.maxResultBytes, 1, 512 * 1024 * 1024))
      p.push(`maxResultBytes must be a whole number from 1 to ${512 * 1024 * 1024}, got ${o.maxResultBytes}`);
    p.push(
      ...oneOf('duplicate', o.duplicate, ['throw', 'wait', 'skip']),
      ...oneOf('missingKey', o.missingKey, ['throw', 'run']),
      ...oneOf('unstorable', o.unstorable, ['throw', 'marker']),
      ...oneOf('completeFailure', o.completeFailure, ['throw', 'return']),
      ...oneOf('http', o.http, ['auto', false]),
      ...oneOf('failOpen', o.failOpen, [true, false]),
    );
    const logLevel = (o.logLevel ?? process.env.ONCELY_LOG_LEVEL ?? 'info') as LogLevel;
    p.push(...oneOf('logLevel', logLevel, LOG_LEVELS));
    p.push(...keySpecProblems(o.key), ...payloadSpecProblems(o.payload));
    for (const f of ['logger', 'onDecision', 'wallClock'] as const)
      if (o[f] !== undefined && typeof o[f] !== 'function') p.push(`${f} must be a function`);
    check(p, what);
    this.store = store as Store;
    this.options = {
      ...o,
      namespace,
      key: o.key ?? 'auto',
      payload: o.payload ?? 'auto',
      logLevel,
      logger: o.logger ?? ((line: string) => console.log(line)),
      clock: o.clock ?? monotonicClock,
      wallClock: o.wallClock ?? Date.now,
    } as Resolved<E>;
    if (usesJmespath(o.key) || usesJmespath(o.payload)) {
      // The package loads now, in the background (in Lambda: during init); whether the expressions parse is
      // known once it has, so a bad one is reported by the first invocation, as the same ValidationError.
      this.#ready = expressionProblems({ key: o.key, payload: o.payload }).then((problems) =>
        check(problems, what),
      );
      this.#ready.catch(() => undefined); // reported by ready(), not as an unhandled rejection
    }
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
  get halfway(): Halfway {
    this.#halfway ??= new Halfway(this.options.clock);
    return this.#halfway;
  }

  /** The record and fence-counter keys of an idempotency key (one hash tag: always the same slot). */
  keysOf(key: string): [record: string, fence: string] {
    // An invocation asks for its keys at claim and again at completion: digest each key once.
    if (key === this.#lastKey && this.#lastKeys) return [...this.#lastKeys];
    const base = `${this.options.prefix}:once:{${this.options.namespace}:${digest(key)}}`;
    this.#lastKey = key;
    this.#lastKeys = [`${base}:rec`, `${base}:fence`];
    return [...this.#lastKeys];
  }

  /** Logs a decision (one JSON line) and calls onDecision. */
  decide(d: Omit<Decision, 'namespace'>): void {
    const { logLevel, logger, onDecision, namespace } = this.options;
    const level = LEVEL_OF[d.decision];
    const log = RANK[level] >= RANK[logLevel];
    // Nothing to build when the line is filtered out and nobody listens.
    if (!log && !onDecision) return;
    const decision: Decision = { namespace, ...d };
    if (log) {
      try {
        logger(this.#line(level, decision));
      } catch {
        // a logger must not break an invocation
      }
    }
    if (onDecision) {
      try {
        onDecision(decision);
      } catch {
        // nor must the callback
      }
    }
  }

  #isoMs = Number.NaN;
  #iso = '';

  /**
   * One decision as a JSON line: `level`, `timestamp`, `logger`, `message`, then the decision's fields in their
   * order (the key shortened). One object and the native JSON.stringify: on code the JIT has not optimised yet
   * (a Lambda container's first thousands of invocations) that beats building the text field by field.
   */
  #line(level: Exclude<LogLevel, 'silent'>, decision: Decision): string {
    const ms = this.options.wallClock();
    if (ms !== this.#isoMs) {
      // the claimed and completed lines of a short invocation usually fall in the same millisecond
      this.#iso = new Date(ms).toISOString();
      this.#isoMs = ms;
    }
    const line: Record<string, unknown> = {
      level: LABEL[level],
      timestamp: this.#iso,
      logger: 'oncely',
      message: `oncely: ${decision.decision}`,
      ...decision,
    };
    if (decision.key !== undefined && decision.key.length > 120) line.key = short(decision.key);
    return JSON.stringify(line);
  }

  /** The lease for a new claim: leaseMs, at most the invocation's remaining time minus marginMs. */
  leaseFor(context: Partial<Context> | undefined): number {
    const { leaseMs, marginMs } = this.options;
    return Math.max(MIN_TTL_MS, Math.floor(Math.min(leaseMs, remainingOf(context) - marginMs)));
  }

  identify(event: E, context: Context | undefined): Identity {
    return identify(event, context, this.options.key, this.options.payload);
  }

  claimCall(key: string, token: string, hash: string, leaseMs: number): ScriptCall {
    const args: ScriptArg[] = [
      token,
      leaseMs,
      hash,
      leaseMs + FENCE_GRACE_MS,
      Math.floor(this.options.wallClock()),
    ];
    return { script: ONCE_CLAIM, keys: this.keysOf(key), args };
  }

  parseClaim(reply: unknown): ClaimReply {
    if (!Array.isArray(reply) || reply.length < 1) {
      throw new OncelyError(`${this.store.name}: unexpected claim reply ${JSON.stringify(reply)}`);
    }
    const code = Number(reply[0]);
    if (code === 1) return { kind: 'claimed', fence: Number(reply[1]) };
    if (code === 2) return { kind: 'completed', value: decodeResult(reply[1]) };
    if (code === 3) return { kind: 'mismatch' };
    return { kind: 'in-progress', retryAfterMs: Math.max(0, Number(reply[1]) || 0) };
  }

  completeCall(run: Run, text: string): ScriptCall {
    const { retentionMs } = this.options;
    return {
      script: ONCE_COMPLETE,
      keys: this.keysOf(run.key!),
      args: [run.token, run.fence, text, retentionMs, retentionMs + FENCE_GRACE_MS, run.hash],
    };
  }

  releaseCall(key: string, token: string): ScriptCall {
    return { script: ONCE_RELEASE, keys: [this.keysOf(key)[0]], args: [token] };
  }

  async releaseRecord(key: string, token: string): Promise<number> {
    const c = this.releaseCall(key, token);
    return Number(await this.store.run(c.script, c.keys, c.args));
  }

  /** A Run that owns no record: the handler runs without dedupe. */
  unfenced(key?: string): Run {
    return new Run(this, { key, token: '', fence: 0, hash: '', lease: null, http: false, startedAt: 0 });
  }

  /** Builds the lease and Run for a successful claim. */
  claimed(
    identity: { key: string; hash: string },
    token: string,
    fence: number,
    leaseMs: number,
    startedAt: number,
    driver: RecordDriver,
    http: boolean,
  ): Run {
    const lease: LeaseInit = {
      key: identity.key,
      token,
      fence,
      ttlMs: leaseMs,
      startedAt,
      drift: this.#drift,
      clock: this.options.clock,
      driver,
    };
    return new Run(this, { key: identity.key, token, fence, hash: identity.hash, lease, http, startedAt });
  }

  /** True when the claim's reply came back after the lease it took had already run out. */
  tooLate(startedAt: number, leaseMs: number): boolean {
    return this.options.clock.now() >= startedAt + leaseMs - this.#drift(leaseMs);
  }

  ttlFor(context: Partial<Context> | undefined): () => number {
    const deadline = this.options.clock.now() + remainingOf(context);
    const { leaseMs, marginMs } = this.options;
    return () => Math.floor(Math.min(leaseMs, deadline - this.options.clock.now() - marginMs));
  }

  /**
   * Starts an invocation: identifies it, claims its record and applies the duplicate policy. Returns the Run
   * to execute, or the value to answer with (a stored result, a skip, an HTTP error answer).
   */
  async begin(event: E, context: Context | undefined): Promise<Begin> {
    if (this.#ready !== undefined) await this.#ready;
    if (isDisabled()) {
      this.decide({ decision: 'disabled' });
      return { kind: 'run', run: this.unfenced() };
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
    const identity = this.identify(event, context);
    const key = identity.key;
    if (key === undefined) {
      this.decide({ decision: 'no-key', reason: `no ${identity.source} key` });
      if (o.missingKey === 'run') return { kind: 'run', run: this.unfenced() };
      throw new MissingKeyError(identity.source);
    }
    const hash = payloadHash(identity);
    const token = newToken();
    const waitStarted = o.clock.now();
    const waitUntil = waitStarted + Math.min(o.maxWaitMs ?? MAX_MS, remainingOf(context) - o.marginMs);
    for (;;) {
      const leaseMs = this.leaseFor(context);
      const call = this.claimCall(key, token, hash, leaseMs);
      const startedAt = o.clock.now();
      let reply: unknown;
      try {
        reply = await this.store.run(call.script, call.keys, call.args);
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        // The claim may have been applied: give the record back rather than block retries for a lease.
        if (err.ambiguous) void this.releaseRecord(key, token).catch(() => undefined);
        if (o.failOpen && err instanceof StoreUnavailableError) {
          this.decide({ decision: 'fail-open', key, reason: err.message });
          return { kind: 'run', run: this.unfenced(key) };
        }
        this.decide({ decision: 'store-error', key, reason: err.message });
        throw err;
      }
      const c = this.parseClaim(reply);
      if (c.kind === 'claimed') {
        if (this.tooLate(startedAt, leaseMs)) {
          await this.releaseRecord(key, token).catch(() => undefined);
          const err = new StoreUnavailableError(
            `${this.store.name}: the claim's reply came after its lease ended`,
            {
              store: this.store.name,
              ambiguous: false,
            },
          );
          this.decide({ decision: 'store-error', key, reason: err.message });
          throw err;
        }
        // One driver for every invocation of this engine: extensions due in the same tick share a round trip.
        this.#driver ??= new RecordDriver(this);
        const run = this.claimed({ key, hash }, token, c.fence, leaseMs, startedAt, this.#driver, http);
        run.keepAlive(this.ttlFor(context));
        this.decide({ decision: 'claimed', key, fence: c.fence, leaseMs });
        return { kind: 'run', run };
      }
      if (c.kind === 'completed') {
        const waitedMs = Math.round(o.clock.now() - waitStarted);
        this.decide({
          decision: 'duplicate-returned',
          key,
          ...(waitedMs > 0 && o.duplicate === 'wait' ? { waitedMs } : {}),
        });
        return { kind: 'return', value: http ? replayed(c.value) : c.value };
      }
      if (c.kind === 'mismatch') {
        this.decide({ decision: 'mismatch', key });
        throw new PayloadMismatchError(key);
      }
      if (o.duplicate === 'skip') {
        this.decide({ decision: 'skipped', key, retryAfterMs: c.retryAfterMs });
        return { kind: 'return', value: undefined };
      }
      const left = waitUntil - o.clock.now();
      if (o.duplicate === 'wait' && left > 0) {
        await sleep(Math.max(1, Math.min(o.pollMs, c.retryAfterMs || o.pollMs, left)));
        continue;
      }
      this.decide({ decision: 'in-progress', key, retryAfterMs: c.retryAfterMs });
      throw new InProgressError(key, c.retryAfterMs);
    }
  }

  /** Runs one invocation through the state machine (the withOnce adapter). */
  async invoke<R>(handler: OnceHandler<E, R>, event: E, context: Context): Promise<R> {
    const begun = await this.begin(event, context);
    if (begun.kind === 'return') return begun.value as R;
    const { run } = begun;
    let result: R;
    try {
      result = await handler(event, context, run.once);
    } catch (err) {
      await run.fail(err);
      throw err;
    }
    return (await run.complete(result)) as R;
  }
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

// --------------------------------------------------------------------------------------------------- Run

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
  readonly #engine: EngineCore;
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

  constructor(engine: EngineCore, init: RunInit) {
    this.#engine = engine;
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
    this.#engine.halfway.add(this, validUntil - init.ttlMs / 2, ttlFor, Run.#halfway);
  }

  /** Half the lease is left: build the Lease and keep it alive from here (a static: no closure per run). */
  static #halfway(run: Run, ttlFor: () => number): void {
    if (run.#stopped) return;
    const lease = run.lease as Lease;
    const engine = run.#engine;
    const onError = (e: Error) =>
      engine.decide({ decision: 'store-error', key: run.key, reason: `extend: ${e.message}` });
    run.#stop = keepAlive(() => [lease], ttlFor, engine.options.leaseMs, engine.options.clock, onError, true);
  }

  /** Stops extending and detaches the handler's signal from the lease (the handler is done). */
  stop(): void {
    this.#stopped = true;
    if (this.#leaseInit) this.#engine.halfway.delete(this);
    this.#stop?.();
    this.#detach?.();
  }

  durationMs(): number {
    return Math.round(this.#engine.options.clock.now() - this.#startedAt);
  }

  /**
   * What to store for `result`, or the error to throw (`unstorable: 'throw'`). An HTTP 5xx answer is not
   * stored (undefined): the record is released so a retry runs.
   */
  prepare(result: unknown): { text: string } | { release: true } | { error: ResultNotStorableError } {
    if (this.http && isHttpResult(result) && result.statusCode >= 500) return { release: true };
    const e = encodeResult(result, this.#engine.options.maxResultBytes);
    if (e.ok) return { text: e.text };
    if (this.#engine.options.unstorable === 'marker') return { text: markerText(e) };
    return { error: new ResultNotStorableError(this.key!, e.reason, e.detail, e.bytes, e.cause) };
  }

  /** Interprets ONCE_COMPLETE's reply: returns normally when the result is recorded, throws when lost. */
  completed(reply: number): void {
    const engine = this.#engine;
    const durationMs = this.durationMs();
    if (reply === 1 || reply === 2 || reply === 3) {
      engine.decide({
        decision: 'completed',
        key: this.key,
        fence: this.fence,
        durationMs,
        ...(reply === 3 ? { reason: 'completed after the lease ran out; nobody had claimed since' } : {}),
      });
      return;
    }
    const reason = reply === -1 ? 'stolen' : 'expired';
    engine.decide({
      decision: 'lost',
      key: this.key,
      fence: this.fence,
      durationMs,
      reason: `the record was ${reply === -1 ? 'taken by another invocation' : 'gone and claimed since'}; result not stored`,
    });
    throw new LockLostError(this.key!, reason);
  }

  /** Logs the outcome of a release. */
  released(reply: number, why: string): void {
    const engine = this.#engine;
    if (reply === 1)
      engine.decide({
        decision: 'released',
        key: this.key,
        fence: this.fence,
        durationMs: this.durationMs(),
        reason: why,
      });
    else
      engine.decide({
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
    const engine = this.#engine;
    const plan = this.prepare(result);
    if ('release' in plan) {
      await this.#release(`a ${(result as HttpResult).statusCode} answer is not stored`);
      return result;
    }
    if ('error' in plan) {
      await this.#release(`result not storable: ${plan.error.reason}`);
      throw plan.error;
    }
    const call = engine.completeCall(this, plan.text);
    for (let attempt = 1; ; attempt++) {
      try {
        const reply = Number(await engine.store.run(call.script, call.keys, call.args));
        this.completed(reply);
        return result;
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        if (attempt >= COMPLETE_ATTEMPTS) {
          engine.decide({
            decision: 'complete-failed',
            key: this.key,
            fence: this.fence,
            reason: err.message,
          });
          if (engine.options.completeFailure === 'return') return result;
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
      this.released(await this.#engine.releaseRecord(this.key!, this.token), why);
    } catch (err) {
      this.#engine.decide({
        decision: 'store-error',
        key: this.key,
        reason: `release: ${(err as Error).message}; the record expires with its lease`,
      });
    }
  }
}

// ------------------------------------------------------------------------------------------- withOnce()

/**
 * Wraps a Lambda handler so each event runs it once: duplicates get the first invocation's result, concurrent
 * duplicates the `duplicate` policy. The handler gets `{ signal, fence, key }` as its third argument.
 *
 * @example
 * export const handler = withOnce(async (event: SQSEvent, _context, { fence }) => charge(event, fence), {
 *   store: fromEnv(),
 * });
 */
export function withOnce<E = unknown, R = unknown>(
  handler: OnceHandler<E, R>,
  options: OnceOptions<E> & { duplicate?: 'throw' | 'wait' },
): (event: E, context: Context) => Promise<R>;
/** With `duplicate: 'skip'` a duplicate in progress resolves to undefined, and the type says so. */
export function withOnce<E = unknown, R = unknown>(
  handler: OnceHandler<E, R>,
  options: OnceOptions<E>,
): (event: E, context: Context) => Promise<R | undefined>;
export function withOnce<E = unknown, R = unknown>(
  handler: OnceHandler<E, R>,
  options: OnceOptions<E>,
): (event: E, context: Context) => Promise<R | undefined> {
  if (typeof handler !== 'function') throw new ValidationError(['handler must be a function'], 'withOnce');
  const engine = new OnceEngine<E>(options);
  return (event: E, context: Context) => engine.invoke(handler, event, context);
}

// ---------------------------------------------------------------------------------------- withOnceBatch()

export interface OnceBatchOptions
  extends Omit<OnceOptions<SQSRecord>, 'duplicate' | 'http' | 'maxWaitMs' | 'pollMs'> {
  /**
   * A record whose key is in progress elsewhere: `'throw'` reports it in batchItemFailures (SQS redelivers it
   * later), `'skip'` acknowledges it.
   * @default 'throw'
   */
  duplicate?: 'throw' | 'skip';
  /**
   * Records run at once. FIFO queues always run one at a time, in order, and stop at the first failure.
   * @default 10
   */
  concurrency?: number;
}

export type OnceRecordHandler<R> = (record: SQSRecord, context: Context, once: OnceRun) => Promise<R> | R;

type Item = {
  record: SQSRecord;
  index: number;
  identity?: { key: string; hash: string };
  token: string;
  run?: Run;
  /** ok: acknowledged; fail: in batchItemFailures; pending: to run. */
  state: 'pending' | 'ok' | 'fail';
  result?: unknown;
};

/**
 * Wraps an SQS record handler: every record of a batch is claimed in one round trip and completed in one;
 * claimed records run with bounded concurrency; returns `batchItemFailures` (enable ReportBatchItemFailures on
 * the event source mapping). Completed duplicates are acknowledged; records in progress elsewhere, failed or
 * mismatched are reported. The store unreachable at claim time fails the whole batch (or runs it all, with
 * failOpen).
 */
export function withOnceBatch<R = unknown>(
  handler: OnceRecordHandler<R>,
  options: OnceBatchOptions,
): (event: SQSEvent, context: Context) => Promise<SQSBatchResponse> {
  const { concurrency = 10, ...rest } = options ?? ({} as OnceBatchOptions);
  const problems: string[] = [];
  if (typeof handler !== 'function') problems.push('handler must be a function');
  if (!whole(concurrency, 1, 10_000))
    problems.push(`concurrency must be a whole number from 1 to 10000, got ${concurrency}`);
  problems.push(...oneOf('duplicate', rest.duplicate, ['throw', 'skip']));
  check(problems, 'withOnceBatch options');
  const engine = new OnceEngine<SQSRecord>({ ...rest, http: false }, 'withOnceBatch options');
  return (event, context) => runBatch(engine, handler, event, context, concurrency);
}

async function runBatch<R>(
  engine: OnceEngine<SQSRecord>,
  handler: OnceRecordHandler<R>,
  event: SQSEvent,
  context: Context,
  concurrency: number,
): Promise<SQSBatchResponse> {
  const o = engine.options;
  const records = Array.isArray(event?.Records) ? event.Records : [];
  const fifo = records.some((r) => r.eventSourceARN?.endsWith('.fifo'));
  const items: Item[] = records.map((record, index) => ({
    record,
    index,
    token: newToken(),
    state: 'pending',
  }));
  await engine.ready();
  const disabled = isDisabled();
  if (disabled) engine.decide({ decision: 'disabled' });

  // 1. Identify every record.
  for (const item of disabled ? [] : items) {
    let identity: Identity;
    try {
      identity = engine.identify(item.record, context);
    } catch (err) {
      engine.decide({ decision: 'no-key', reason: (err as Error).message });
      item.state = 'fail';
      continue;
    }
    if (identity.key === undefined) {
      engine.decide({ decision: 'no-key', reason: `no ${identity.source} key` });
      if (o.missingKey === 'throw') item.state = 'fail';
      continue;
    }
    item.identity = { key: identity.key, hash: payloadHash(identity) };
  }

  // 2. Claim every keyed record in one round trip.
  const keyed = items.filter((i) => i.identity && i.state === 'pending');
  const leaseMs = engine.leaseFor(context);
  const ttlFor = engine.ttlFor(context);
  const driver = new RecordDriver(engine);
  if (keyed.length > 0) {
    const startedAt = o.clock.now();
    const calls = keyed.map((i) => engine.claimCall(i.identity!.key, i.token, i.identity!.hash, leaseMs));
    let replies: CallResult[];
    try {
      replies = await engine.store.runMany(calls);
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      if (o.failOpen && err instanceof StoreUnavailableError) {
        engine.decide({ decision: 'fail-open', reason: err.message });
        replies = calls.map(() => ({ ok: false, error: err }));
      } else {
        engine.decide({ decision: 'store-error', reason: err.message });
        // Give back whatever the claims may have taken, then fail the batch: SQS redelivers every record.
        if (err.ambiguous) {
          await engine.store
            .runMany(keyed.map((i) => engine.releaseCall(i.identity!.key, i.token)))
            .catch(() => []);
        }
        throw err;
      }
    }
    const late = engine.tooLate(startedAt, leaseMs);
    keyed.forEach((item, n) => {
      const key = item.identity!.key;
      const r = replies[n];
      if (!r?.ok) {
        const err = r?.error;
        if (o.failOpen && err instanceof StoreUnavailableError) {
          engine.decide({ decision: 'fail-open', key, reason: err.message });
          item.run = engine.unfenced(key) as Run;
        } else {
          engine.decide({ decision: 'store-error', key, reason: err?.message ?? 'no reply' });
          item.state = 'fail';
        }
        return;
      }
      const c = engine.parseClaim(r.value);
      if (c.kind === 'claimed') {
        item.run = engine.claimed(item.identity!, item.token, c.fence, leaseMs, startedAt, driver, false);
        if (late) {
          item.state = 'fail'; // released with the others at the end
          engine.decide({
            decision: 'store-error',
            key,
            reason: "the claim's reply came after its lease ended",
          });
        } else engine.decide({ decision: 'claimed', key, fence: c.fence, leaseMs });
      } else if (c.kind === 'completed') {
        engine.decide({ decision: 'duplicate-returned', key });
        item.state = 'ok';
      } else if (c.kind === 'mismatch') {
        engine.decide({ decision: 'mismatch', key });
        item.state = 'fail';
      } else if (o.duplicate === 'skip') {
        engine.decide({ decision: 'skipped', key, retryAfterMs: c.retryAfterMs });
        item.state = 'ok';
      } else {
        engine.decide({ decision: 'in-progress', key, retryAfterMs: c.retryAfterMs });
        item.state = 'fail';
      }
    });
  }
  for (const item of items) {
    if (item.state === 'pending' && !item.run) item.run = engine.unfenced(item.identity?.key);
  }

  // 3. Run, keeping every claimed lease alive (extensions of the whole batch go out as one runMany).
  // Finished records stay claimed until the settling round trip: keep extending them too.
  const leases = () => items.flatMap((i) => (i.run?.lease ? [i.run.lease] : []));
  const stop = keepAlive(leases, ttlFor, o.leaseMs, o.clock, (e) =>
    engine.decide({ decision: 'store-error', reason: `extend: ${e.message}` }),
  );
  const execute = async (item: Item) => {
    if (item.state !== 'pending' || !item.run) return;
    try {
      item.result = await handler(item.record, context, item.run.once);
      item.state = 'ok';
    } catch {
      item.state = 'fail';
    }
  };
  try {
    if (fifo) {
      for (const item of items) {
        if (item.state === 'fail') break;
        await execute(item);
        if ((item.state as Item['state']) === 'fail') break;
      }
      // FIFO: everything after the first failure is reported too (and released), to keep the group's order.
      const first = items.findIndex((i) => i.state === 'fail');
      if (first >= 0) for (const item of items.slice(first)) item.state = 'fail';
    } else {
      await pool(items, concurrency, execute);
    }
  } finally {
    stop();
  }

  // 4. Complete or release every claimed record in one round trip.
  const settle: { item: Item; call: ScriptCall; kind: 'complete' | 'release'; why: string }[] = [];
  for (const item of items) {
    const run = item.run;
    if (!run?.lease) continue;
    if (item.state === 'ok') {
      const plan = run.prepare(item.result);
      if ('text' in plan)
        settle.push({ item, call: engine.completeCall(run, plan.text), kind: 'complete', why: '' });
      else {
        item.state = 'fail';
        const why = 'error' in plan ? `result not storable: ${plan.error.reason}` : 'not stored';
        settle.push({ item, call: engine.releaseCall(run.key!, run.token), kind: 'release', why });
      }
    } else {
      settle.push({
        item,
        call: engine.releaseCall(run.key!, run.token),
        kind: 'release',
        why: 'the handler failed or did not run',
      });
    }
  }
  if (settle.length > 0) {
    let results: CallResult[] | undefined;
    try {
      results = await engine.store.runMany(settle.map((s) => s.call));
    } catch (err) {
      engine.decide({ decision: 'complete-failed', reason: (err as Error).message });
      if (!(err instanceof StoreError)) throw err;
    }
    // completeFailure 'throw': a record whose result could not be recorded is reported, so SQS redelivers it.
    const unrecorded = o.completeFailure === 'throw' ? 'fail' : 'ok';
    settle.forEach((s, n) => {
      const run = s.item.run!;
      const r = results?.[n];
      if (!r?.ok) {
        if (results)
          engine.decide({
            decision: 'complete-failed',
            key: run.key,
            reason: r?.error.message ?? 'no reply',
          });
        if (s.kind === 'complete') s.item.state = unrecorded; // the record expires with its lease
        return;
      }
      if (s.kind === 'release') {
        run.released(Number(r.value), s.why);
        return;
      }
      try {
        run.completed(Number(r.value));
      } catch {
        s.item.state = 'fail'; // lost: another invocation owns the key now; let SQS redeliver
      }
    });
  }

  for (const item of items) item.run?.stop();
  return {
    batchItemFailures: items
      .filter((i) => i.state === 'fail')
      .map((i) => ({ itemIdentifier: i.record.messageId })),
  };
}

// -------------------------------------------------------------------------------------------- withLeader()

export interface LeaderOptions
  extends Pick<
    OnceOptions<ScheduledEvent>,
    | 'store'
    | 'leaseMs'
    | 'marginMs'
    | 'prefix'
    | 'logLevel'
    | 'logger'
    | 'onDecision'
    | 'clock'
    | 'wallClock'
    | 'failOpen'
    | 'maxResultBytes'
    | 'unstorable'
  > {
  /**
   * The task's name, shared by every replica that must not run the same tick twice (set it when stages or
   * regions name their rules differently).
   * @default the schedule rule's name (the last part of the event's resources[0] ARN)
   */
  name?: string;
  /**
   * Ticks older than this are skipped (and logged as stale-tick): a late retry must not run yesterday's job.
   * @default 300_000 (5 minutes)
   */
  maxLagMs?: number;
  /**
   * The tick a event stands for, in ms since the epoch.
   * @default Date.parse(event.time) (an EventBridge schedule's scheduled time)
   */
  tick?: (event: ScheduledEvent) => number;
}

export interface LeaderRun extends OnceRun {
  /** The tick this run is for (ISO 8601). */
  readonly tick: string;
}

/**
 * Runs a scheduled handler once per schedule tick (task name + tick time) across every replica, stage and
 * region that shares the store. Other replicas skip the tick (undefined, or the stored result when it is
 * done); ticks older than maxLagMs are skipped. The handler gets the fence.
 */
export function withLeader<R = unknown>(
  handler: (event: ScheduledEvent, context: Context, run: LeaderRun) => Promise<R> | R,
  options: LeaderOptions,
): (event: ScheduledEvent, context: Context) => Promise<R | undefined> {
  const {
    name,
    maxLagMs = 300_000,
    tick = (e: ScheduledEvent) => Date.parse(e.time),
    ...rest
  } = options ?? ({} as LeaderOptions);
  const problems: string[] = [];
  if (typeof handler !== 'function') problems.push('handler must be a function');
  if (name !== undefined && (typeof name !== 'string' || name.length === 0 || name.length > 200))
    problems.push('name must be 1 to 200 characters');
  if (!whole(maxLagMs, 0, MAX_MS))
    problems.push(`maxLagMs must be a whole number of milliseconds, got ${maxLagMs}`);
  if (typeof tick !== 'function') problems.push('tick must be a function');
  check(problems, 'withLeader options');
  const engine = new OnceEngine<ScheduledEvent>(
    {
      ...rest,
      namespace: 'leader',
      // Long enough that every replica still taking the tick as fresh finds it done (plus clock skew).
      retentionMs: maxLagMs + 60_000,
      duplicate: 'skip',
      payload: false,
      http: false,
      key: (event) => {
        const taskName = name ?? ruleName(event);
        const at = tick(event);
        return taskName && Number.isFinite(at) ? `${taskName}@${new Date(at).toISOString()}` : undefined;
      },
    },
    'withLeader options',
  );
  return async (event, context) => {
    const at = Number(tick(event));
    if (Number.isFinite(at)) {
      const lagMs = Math.round(engine.options.wallClock() - at);
      if (lagMs > maxLagMs) {
        engine.decide({
          decision: 'stale-tick',
          key: `${name ?? ruleName(event) ?? '?'}@${new Date(at).toISOString()}`,
          reason: `tick is ${lagMs} ms old, maxLagMs is ${maxLagMs}`,
        });
        return undefined;
      }
    }
    return engine.invoke(
      (e, c, once) => handler(e, c, { ...once, tick: new Date(at).toISOString() }),
      event,
      context,
    ) as Promise<R | undefined>;
  };
}

/** The rule name in `arn:aws:events:<region>:<account>:rule/[<bus>/]<name>` (the same in every region). */
function ruleName(event: ScheduledEvent): string | undefined {
  const arn = Array.isArray(event?.resources) ? event.resources[0] : undefined;
  if (typeof arn !== 'string') return undefined;
  const name = arn.split(':rule/')[1]?.split('/').pop();
  return name || undefined;
}
