/**
 * withOnce options: what each means and its default, resolved and validated once (every problem named in one
 * ValidationError).
 */
import type { Context } from 'aws-lambda';
import { type Clock, monotonicClock } from '../clock.js';
import type { KeySpec, PayloadSpec } from '../events.js';
import { expressionProblems, usesJmespath } from '../jmespath.js';
import { keySpecProblems, payloadSpecProblems } from '../keys.js';
import { envFlag } from '../transport/from-env.js';
import type { Store } from '../transport/types.js';
import {
  check,
  type Fields,
  fieldsOf,
  fnProblems,
  MAX_TTL_MS,
  MIN_TTL_MS,
  oneOf,
  prefixProblems,
  resolveOptions,
  ttlProblems,
  wholeProblems,
} from '../validate.js';
import { type Decision, isLoggerLike, LOG_LEVELS, type LoggerOption, type LogLevel } from './decisions.js';
import { type LocalCacheOptions, localCacheProblems } from './local-cache.js';

export { localCacheOf } from './local-cache.js';

import { type MetricsOption, metricsOption, metricsProblems } from './metrics-option.js';
import type { ResultNotStored } from './record.js';

export type DuplicatePolicy = 'throw' | 'wait' | 'skip';
export type Unstorable = 'marker' | 'throw';

export interface OnceOptions<E = unknown> {
  /** Where records live (`fromEnv()`, `upstashStore()`, `redisStore()`, `clusterStore()`). */
  store: Store;
  /**
   * Records are namespaced per function: the same key in two functions is two records.
   * @default process.env.AWS_LAMBDA_FUNCTION_NAME, else 'default'
   */
  namespace?: string;
  /**
   * Where the idempotency key comes from: `'auto'` (recognise the event source), a source name, `'event'` (the
   * whole event as canonical JSON, as Powertools keys by default), a function of the event, or
   * `{ jmespath: 'expression' }`. See events.ts for the key of every source, docs/once.md for canonical keys.
   * @default 'auto'
   */
  key?: KeySpec<E>;
  /**
   * What a reuse of the key must match, hashed: the source's payload (`'auto'`; nothing for an event oncely
   * does not recognise keyed by your function, expression or `'event'`), the whole event (`'event'`), a function
   * or `{ jmespath }` of the event, or `false` for no check.
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
  ttlMs?: number;
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
   * Keep completed records in this container too (as Powertools' `useLocalCache`): a duplicate of a record
   * completed or seen completed here is answered without a round trip. A bounded LRU (`maxEntries`, default
   * 256) of completed records only, each kept at most `ttlMs` (default 60 000) and never past the record's
   * retention. A record deleted from the store meanwhile (`oncely forget`) is still answered from the cache
   * until its entry expires. `true` takes both defaults.
   * @default false
   */
  localCache?: boolean | LocalCacheOptions;
  /**
   * Largest result stored, in bytes of JSON.
   * @default 262_144 (256 KiB: the asynchronous invocation payload limit)
   */
  maxResultBytes?: number;
  /**
   * A result that cannot be stored exactly: over maxResultBytes, no JSON form (a bigint, function, symbol, a
   * circular structure), or a value JSON would give back changed (a Date, Map, NaN, -0, an undefined field…).
   * `'marker'`: the record is completed with a ResultNotStored marker (this invocation returns its result;
   * the handler never runs again for the key; duplicates get the marker: HTTP events a 202 answer). `'throw'`:
   * a ResultNotStorableError, and the record is released, so a retry runs the handler again (its side effects
   * twice): choose it only for handlers that are safe to repeat.
   * @default 'marker'
   */
  unstorable?: Unstorable;
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
  /**
   * Decision lines name a record by its key digest (`keyDigest`, the one in its Redis key `…:{<namespace>:<digest>}:rec`);
   * `true` adds the raw idempotency key, which may hold personal data (an S3 object key, an e-mail address).
   * @default false
   */
  logKeys?: boolean;
  /**
   * Where decisions are logged: the function's own logger (a Powertools `Logger`, or any object with
   * debug/info/warn/error), so they carry its context and land in its output; or a function that takes each
   * JSON line. Lines never hold a payload, a result or a secret.
   * @default console.log, one JSON line per decision with Powertools' Lambda fields (function_request_id,
   * function_name, cold_start, xray_trace_id)
   */
  logger?: LoggerOption;
  /**
   * Metrics, one set per invocation (or batch): claims, completions, duplicates returned, in-progress
   * rejections, payload mismatches, lost leases, store errors, fail-open runs, and store latency. `'emf'`
   * writes one CloudWatch Embedded Metric Format document per invocation on console.log (namespace `oncely`,
   * dimensions Namespace and FunctionName); a function gets that document as a JSON line; a Powertools
   * `Metrics` instance gets the metrics added (published with the function's own).
   * @default process.env.ONCELY_METRICS === 'emf' ? 'emf' : false
   */
  metrics?: MetricsOption;
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
  ttlMs: 30_000,
  marginMs: 1_000,
  retentionMs: 86_400_000,
  pollMs: 200,
  maxResultBytes: 262_144,
  duplicate: 'throw' as DuplicatePolicy,
  missingKey: 'throw' as 'throw' | 'run',
  unstorable: 'marker' as Unstorable,
  completeFailure: 'throw' as 'throw' | 'return',
  failOpen: false,
  logKeys: false,
  http: 'auto' as 'auto' | false,
  prefix: 'oncely',
  localCache: false as boolean | LocalCacheOptions,
});

/** The withOnce options oncePerTick takes too (it sets the others itself, or they mean nothing for a tick). */
export const TICK_ONCE_FIELDS = Object.freeze({
  store: true,
  ttlMs: true,
  marginMs: true,
  maxResultBytes: true,
  unstorable: true,
  failOpen: true,
  prefix: true,
  logLevel: true,
  logKeys: true,
  logger: true,
  metrics: true,
  onDecision: true,
  clock: true,
  wallClock: true,
} as const);

/** Every withOnce option (validate.ts: an option not named here is refused). */
export const ONCE_FIELDS: Fields<OnceOptions> = Object.freeze({
  ...fieldsOf(DEFAULTS),
  ...TICK_ONCE_FIELDS,
  namespace: true,
  key: true,
  payload: true,
  maxWaitMs: true,
});
export type Resolved<E> = Required<
  Omit<OnceOptions<E>, 'maxWaitMs' | 'onDecision' | 'logLevel' | 'logger' | 'key' | 'payload' | 'metrics'>
> &
  Pick<OnceOptions<E>, 'maxWaitMs' | 'onDecision'> & {
    key: KeySpec<E>;
    payload: PayloadSpec<E>;
    logLevel: LogLevel;
    logger: LoggerOption;
    metrics: MetricsOption;
  };

/** The largest result a record may hold (a Redis string is at most 512 MiB). */
const MAX_RESULT_BYTES = 512 * 1024 * 1024;
/** A namespace is part of every record's hash tag. */
const MAX_NAMESPACE_CHARS = 200;

/**
 * The env kill switch: ONCELY_DISABLED runs every handler without dedupe (tests, local runs). Read per invocation
 * (tests flip it); a value that is not a flag is a ConfigError.
 */
export function isDisabled(): boolean {
  return envFlag('ONCELY_DISABLED');
}

/** The invocation's remaining time (Infinity outside Lambda). */
export function remainingOf(context: Partial<Context> | undefined): number {
  const f = context?.getRemainingTimeInMillis;
  if (typeof f !== 'function') return Number.POSITIVE_INFINITY;
  const ms = Number(f.call(context));
  return Number.isFinite(ms) ? ms : Number.POSITIVE_INFINITY;
}

/** The lease for a new claim: ttlMs, at most the invocation's remaining time minus marginMs. */
export function leaseFor(
  o: Pick<Resolved<unknown>, 'ttlMs' | 'marginMs'>,
  context: Partial<Context> | undefined,
) {
  return Math.max(MIN_TTL_MS, Math.floor(Math.min(o.ttlMs, remainingOf(context) - o.marginMs)));
}

/** What each extension asks for: ttlMs, at most up to the invocation's deadline minus marginMs. */
export function ttlFor(
  o: Pick<Resolved<unknown>, 'ttlMs' | 'marginMs' | 'clock'>,
  context: Partial<Context> | undefined,
): () => number {
  const deadline = o.clock.now() + remainingOf(context);
  return () => Math.floor(Math.min(o.ttlMs, deadline - o.clock.now() - o.marginMs));
}

/**
 * Resolves `options` with their defaults and validates them, throwing one ValidationError that names every
 * problem. `ready` is set when a key or payload spec is a JMESPath expression: it settles once the package has
 * loaded and the expressions have parsed (rejecting with the same ValidationError when one does not).
 */
export function resolveOnceOptions<E>(
  options: OnceOptions<E>,
  what: string,
): { store: Store; options: Resolved<E>; ready: Promise<void> | undefined } {
  const defaults = {
    ...DEFAULTS,
    namespace: process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'default',
    logLevel: (process.env.ONCELY_LOG_LEVEL ?? 'info') as LogLevel,
    key: 'auto' as KeySpec<E>,
    payload: 'auto' as PayloadSpec<E>,
    logger: (line: string) => console.log(line),
    metrics: metricsOption(undefined, process.env.ONCELY_METRICS),
    clock: monotonicClock,
    wallClock: Date.now,
  };
  // ONCELY_METRICS is checked when it is what decides (no metrics option given).
  const envProblems =
    options?.metrics === undefined ? metricsProblems(undefined, process.env.ONCELY_METRICS) : [];
  const o = resolveOptions(
    options,
    defaults,
    (r: Resolved<E>) => [...problemsOf(r), ...envProblems],
    what,
    ONCE_FIELDS,
  ) as Resolved<E>;
  let ready: Promise<void> | undefined;
  if (usesJmespath(o.key) || usesJmespath(o.payload)) {
    // The package loads now, in the background (in Lambda: during init); whether the expressions parse is
    // known once it has, so a bad one is reported by the first invocation, as the same ValidationError.
    ready = expressionProblems({ key: o.key, payload: o.payload }).then((problems) => check(problems, what));
    ready.catch(() => undefined); // reported by ready(), not as an unhandled rejection
  }
  return { store: o.store, options: o, ready };
}

/** Everything wrong with resolved withOnce options. */
function problemsOf<E>(o: Resolved<E>): string[] {
  const store = o.store as Store | undefined;
  return [
    ...(store && typeof store.run === 'function' && typeof store.runMany === 'function'
      ? []
      : ['store must be a Store (fromEnv(), upstashStore(), redisStore() or clusterStore())']),
    ...prefixProblems('namespace', o.namespace, MAX_NAMESPACE_CHARS),
    ...prefixProblems('prefix', o.prefix),
    ...ttlProblems(o.ttlMs, 'ttlMs'),
    ...ttlProblems(o.retentionMs, 'retentionMs'),
    ...wholeProblems('marginMs', o.marginMs, 0, MAX_TTL_MS, 'ms'),
    ...wholeProblems('pollMs', o.pollMs, 1, MAX_TTL_MS, 'ms'),
    ...(o.maxWaitMs === undefined ? [] : wholeProblems('maxWaitMs', o.maxWaitMs, 0, MAX_TTL_MS, 'ms')),
    ...wholeProblems('maxResultBytes', o.maxResultBytes, 1, MAX_RESULT_BYTES),
    ...oneOf('duplicate', o.duplicate, ['throw', 'wait', 'skip']),
    ...oneOf('missingKey', o.missingKey, ['throw', 'run']),
    ...oneOf('unstorable', o.unstorable, ['marker', 'throw']),
    ...oneOf('completeFailure', o.completeFailure, ['throw', 'return']),
    ...oneOf('http', o.http, ['auto', false]),
    ...oneOf('failOpen', o.failOpen, [true, false]),
    ...oneOf('logKeys', o.logKeys, [true, false]),
    ...localCacheProblems(o.localCache),
    ...oneOf('logLevel', o.logLevel, LOG_LEVELS),
    ...keySpecProblems(o.key),
    ...payloadSpecProblems(o.payload),
    ...(typeof o.logger === 'function' || isLoggerLike(o.logger)
      ? []
      : ['logger must be a function or an object with debug, info, warn and error methods']),
    ...metricsProblems(o.metrics, undefined),
    ...fnProblems('onDecision', o.onDecision),
    ...fnProblems('wallClock', o.wallClock),
  ];
}

/** An event answered as HTTP (API Gateway REST v1 and HTTP API v2, function URLs, ALB), by its shape. */
export type HttpEventShape = { httpMethod: string } | { requestContext: { http: { method: string } } };

/**
 * What a duplicate can get besides the handler's result R, by event type and options:
 * - `undefined` with `duplicate: 'skip'` (a duplicate while the first invocation runs);
 * - the ResultNotStored marker when the first result could not be stored exactly (`unstorable: 'marker'`, the
 *   default): SQS, SNS, EventBridge and other sources acknowledge it (it is returned, not thrown), and a direct
 *   invoke gets it as its value. HTTP events get a 202 answer instead (an HttpResult, like R), unless
 *   `http: false`. With `unstorable: 'throw'` the record is released instead and no marker is ever returned.
 */
export type DuplicateValue<
  E,
  D extends DuplicatePolicy = DuplicatePolicy,
  U extends Unstorable = Unstorable,
  H extends 'auto' | false = 'auto' | false,
> =
  | ('skip' extends D ? undefined : never)
  | ('marker' extends U
      ? [E] extends [HttpEventShape]
        ? false extends H
          ? ResultNotStored
          : never
        : ResultNotStored
      : never);
