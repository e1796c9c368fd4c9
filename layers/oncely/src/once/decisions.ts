/**
 * Decisions: what the run-once state machine tells the outside world. One event per transition, logged (filtered
 * by level) and handed to `onDecision`. Neither a logger nor a callback can break an invocation.
 *
 * Where a line goes: through the function's own logger when one is given (a Powertools `Logger`, or any object
 * with debug/info/warn/error: `logger.info('oncely: claimed', { decision, namespace, keyDigest, ... })`, so the
 * line carries that logger's context), else as one JSON line shaped like Powertools' (`level`, `timestamp`,
 * `function_request_id`, `function_name`, `cold_start`, `xray_trace_id` when tracing is on) on console.log or
 * the function given as `logger`.
 *
 * A line names a record by its key digest (`keyDigest`, the one in the record's Redis key), not by the raw
 * idempotency key, which may hold personal data (an S3 object key, an e-mail in a webhook body): the raw key is
 * logged only with `logKeys: true`. onDecision always gets the raw key.
 */
import { digest } from '../keys.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

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
  | 'give-back-failed'
  | 'stale-tick'
  | 'disabled';

/** One decision about one invocation (or one record of a batch). Never holds a payload, result or secret. */
export interface Decision {
  readonly decision: DecisionKind;
  readonly namespace: string;
  readonly key?: string;
  readonly fence?: number;
  readonly ttlMs?: number;
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
  'give-back-failed': 'error',
  disabled: 'debug',
};

const RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };
const LABEL: Readonly<Record<Exclude<LogLevel, 'silent'>, string>> = {
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
};

/** A logger the function already has: Powertools `Logger`, console, or anything with these four methods. */
export interface LoggerLike {
  debug(message: string, ...extra: unknown[]): unknown;
  info(message: string, ...extra: unknown[]): unknown;
  warn(message: string, ...extra: unknown[]): unknown;
  error(message: string, ...extra: unknown[]): unknown;
}

/** A function that takes each JSON line, or a logger object. */
export type LoggerOption = ((line: string) => void) | LoggerLike;

export function isLoggerLike(x: unknown): x is LoggerLike {
  if (typeof x !== 'object' || x === null) return false;
  const l = x as Record<string, unknown>;
  return ['debug', 'info', 'warn', 'error'].every((m) => typeof l[m] === 'function');
}

/** The Lambda fields a default line carries (Powertools Logger's names), for the invocation in progress. */
export interface InvocationFields {
  readonly function_request_id?: string;
  readonly function_name?: string;
  readonly cold_start?: boolean;
  readonly xray_trace_id?: string;
}

/** True until the first invocation of this container has begun (false on provisioned concurrency). */
let coldStart = process.env.AWS_LAMBDA_INITIALIZATION_TYPE !== 'provisioned-concurrency';

/**
 * The fields of an invocation that is beginning: its request id and function name (from the context), whether
 * it is the container's first, and its X-Ray trace id (the Root of `_X_AMZN_TRACE_ID`, set per invocation).
 */
export function invocationFields(
  context: { awsRequestId?: string; functionName?: string } | undefined,
): InvocationFields {
  const cold = coldStart;
  coldStart = false;
  const trace = traceRoot(process.env._X_AMZN_TRACE_ID);
  const f: Record<string, unknown> = { cold_start: cold };
  const requestId = context?.awsRequestId;
  const functionName = context?.functionName ?? process.env.AWS_LAMBDA_FUNCTION_NAME;
  if (typeof requestId === 'string') f.function_request_id = requestId;
  if (typeof functionName === 'string') f.function_name = functionName;
  if (trace) f.xray_trace_id = trace;
  return f as InvocationFields;
}

let lastTrace: string | undefined;
let lastRoot: string | undefined;

/** The Root of an X-Ray trace header (the last header's, kept: warm invocations without tracing repeat it). */
function traceRoot(header: string | undefined): string | undefined {
  if (header !== lastTrace) {
    lastRoot = header ? /(?:^|;)Root=([^;]+)/.exec(header)?.[1] : undefined;
    lastTrace = header;
  }
  return lastRoot;
}

/** Keys longer than this are shortened in messages and log lines. */
const SHORT_KEY_CHARS = 120;

/** A key as messages and log lines show it: at most SHORT_KEY_CHARS characters. */
export const shortKey = (key: string) =>
  key.length > SHORT_KEY_CHARS ? `${key.slice(0, SHORT_KEY_CHARS - 3)}...` : key;

export interface DecisionSink {
  readonly namespace: string;
  readonly logLevel: LogLevel;
  /** Log the raw key next to its digest. */
  readonly logKeys: boolean;
  readonly logger: LoggerOption;
  readonly onDecision?: ((decision: Decision) => void) | undefined;
  readonly wallClock: () => number;
}

/** Logs decisions (one JSON line each) and calls onDecision. */
export class Decisions {
  #isoMs = Number.NaN;
  #iso = '';
  /** The invocation whose fields #fieldsText holds, as JSON members. */
  #fieldsOf: InvocationFields | undefined;
  #fieldsText = '';
  constructor(readonly sink: DecisionSink) {}

  /** `invocation`: the Lambda fields of the invocation it belongs to (default lines carry them). */
  emit(decision: Decision, invocation?: InvocationFields): void {
    const { logLevel, logger, onDecision } = this.sink;
    const level = LEVEL_OF[decision.decision];
    const log = RANK[level] >= RANK[logLevel];
    // Nothing to build when the line is filtered out and nobody listens.
    if (!log && !onDecision) return;
    if (log) {
      try {
        if (typeof logger === 'function') logger(this.#line(level, decision, invocation));
        else logger[level](`oncely: ${decision.decision}`, this.#fields(decision));
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

  /** A decision's fields for a logger object: the key as its digest (and, with logKeys, the key, shortened). */
  #fields(decision: Decision): Record<string, unknown> {
    const { key, ...rest } = decision;
    const fields: Record<string, unknown> = { ...rest };
    if (key !== undefined) {
      fields.keyDigest = digest(key);
      if (this.sink.logKeys) fields.key = shortKey(key);
    }
    return fields;
  }

  /**
   * One decision as a JSON line: `level`, `timestamp`, `logger`, `message`, the invocation's Lambda fields
   * (request id, function name, cold start, trace id), then the decision's fields in their order, the key as
   * its `keyDigest` (and, with logKeys, the key itself, shortened): what JSON.stringify gives of that object.
   * Made of the native JSON.stringify's text of the invocation (once for its lines: a claimed and a completed
   * line per call) and of the decision (its key member taken out), with no object built per line: quick on
   * code the JIT has not optimised yet (a Lambda container's first thousands of invocations) and after.
   */
  #line(level: Exclude<LogLevel, 'silent'>, decision: Decision, invocation?: InvocationFields): string {
    const ms = this.sink.wallClock();
    if (ms !== this.#isoMs) {
      // the claimed and completed lines of a short invocation usually fall in the same millisecond
      this.#iso = new Date(ms).toISOString();
      this.#isoMs = ms;
    }
    let line = `{"level":"${LABEL[level]}","timestamp":"${this.#iso}","logger":"oncely","message":"oncely: ${decision.decision}"`;
    if (invocation !== undefined) {
      if (invocation !== this.#fieldsOf) {
        this.#fieldsText = members(JSON.stringify(invocation));
        this.#fieldsOf = invocation;
      }
      line += this.#fieldsText;
    }
    const { key } = decision;
    if (key === undefined) return `${line}${members(JSON.stringify(decision))}}`;
    // The key's member, as JSON.stringify wrote it: the first text of this form is the member itself (inside a
    // string value every quote is escaped, and no other field is named key).
    line += members(JSON.stringify(decision)).replace(`,"key":${JSON.stringify(key)}`, '');
    line += `,"keyDigest":"${digest(key)}"`;
    if (this.sink.logKeys) line += `,"key":${JSON.stringify(shortKey(key))}`;
    return `${line}}`;
  }
}

/** A flat object's JSON text (`{...}`) as its members, led by a comma ('' for an empty object). */
const members = (json: string): string => (json.length > 2 ? `,${json.slice(1, -1)}` : '');
