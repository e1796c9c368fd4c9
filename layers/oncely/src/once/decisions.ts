/**
 * Decisions: what the run-once state machine tells the outside world. One event per transition, logged as one
 * JSON line (filtered by level) and handed to `onDecision`. Neither a logger nor a callback can break an
 * invocation.
 *
 * A line names a record by its key digest (`keyDigest`, the one in the record's Redis key), not by the raw
 * idempotency key, which may hold personal data (an S3 object key, an e-mail in a webhook body): the raw key is
 * logged only with `logKeys: true`. onDecision always gets the raw key.
 */
import { digest } from './record.js';

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

/** A decision before the engine adds its namespace. */
export type Decided = Omit<Decision, 'namespace'>;

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
  readonly logger: (line: string) => void;
  readonly onDecision?: ((decision: Decision) => void) | undefined;
  readonly wallClock: () => number;
}

/** Logs decisions (one JSON line each) and calls onDecision. */
export class Decisions {
  #isoMs = Number.NaN;
  #iso = '';
  #digestOf: string | undefined;
  #digest = '';
  constructor(readonly sink: DecisionSink) {}

  emit(d: Decided): void {
    const { logLevel, logger, onDecision, namespace } = this.sink;
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

  /**
   * One decision as a JSON line: `level`, `timestamp`, `logger`, `message`, then the decision's fields in their
   * order, the key as its `keyDigest` (and, with logKeys, the key itself, shortened). One object and the native JSON.stringify: on code the JIT has not optimised yet
   * (a Lambda container's first thousands of invocations) that beats building the text field by field.
   */
  #line(level: Exclude<LogLevel, 'silent'>, decision: Decision): string {
    const ms = this.sink.wallClock();
    if (ms !== this.#isoMs) {
      // the claimed and completed lines of a short invocation usually fall in the same millisecond
      this.#iso = new Date(ms).toISOString();
      this.#isoMs = ms;
    }
    const { key, ...rest } = decision;
    const line: Record<string, unknown> = {
      level: LABEL[level],
      timestamp: this.#iso,
      logger: 'oncely',
      message: `oncely: ${decision.decision}`,
      ...rest,
    };
    if (key !== undefined) {
      if (key !== this.#digestOf) {
        // the claimed and completed lines of an invocation name the same key: one digest
        this.#digest = digest(key);
        this.#digestOf = key;
      }
      line.keyDigest = this.#digest;
      if (this.sink.logKeys) line.key = shortKey(key);
    }
    return JSON.stringify(line);
  }
}
