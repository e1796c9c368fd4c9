/**
 * Every error oncely throws is an OncelyError. Each class sets `name` to a string literal, because minified
 * bundles rename classes, and takes `(message, options)`: `options` carries `cause` and the class's own fields.
 * Messages never contain tokens or passwords.
 */

export class OncelyError extends Error {
  override name = 'OncelyError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The one constructor of the errors below: `options` other than `cause` become the error's own fields. */
class ErrorWithFields extends OncelyError {
  constructor(message: string, options: { cause?: unknown }) {
    const { cause: _, ...fields } = options;
    super(message, options);
    Object.assign(this, fields);
  }
}

/**
 * The base class of an OncelyError whose fields are F, taken as `(message, { ...fields, cause? })`; Error's
 * statics (captureStackTrace, …) stay on it.
 */
function withFields<F extends object>() {
  return ErrorWithFields as unknown as Omit<typeof OncelyError, 'prototype'> &
    (new (
      message: string,
      options: F & { cause?: unknown },
    ) => OncelyError & Readonly<F>);
}

/** Bad input: an option or argument out of range. `problems` names every field that was wrong. */
export class ValidationError extends /* @__PURE__ */ withFields<{ problems: readonly string[] }>() {
  override name = 'ValidationError';
}

/** A ValidationError whose message is `<what>: <every problem>`. */
export function invalid(
  problems: readonly string[],
  what = 'invalid input',
  cause?: unknown,
): ValidationError {
  return new ValidationError(`${what}: ${problems.join('; ')}`, {
    problems,
    ...(cause !== undefined ? { cause } : {}),
  });
}

/** Bad configuration from the environment (fromEnv): every problem found, in one error. */
export class ConfigError extends /* @__PURE__ */ withFields<{ problems: readonly string[] }>() {
  override name = 'ConfigError';
}

/** A ConfigError whose message is `oncely configuration: <every problem>`. */
export function badConfig(problems: readonly string[], options?: { cause?: unknown }): ConfigError {
  return new ConfigError(`oncely configuration: ${problems.join('; ')}`, { problems, ...options });
}

/**
 * The store failed: unreachable, timed out, or answered with an error. `ambiguous` is true when the request
 * may have been applied (e.g. a timeout after sending); false when it certainly was not (connection refused).
 */
export class StoreError extends /* @__PURE__ */ withFields<{ store: string; ambiguous: boolean }>() {
  override name = 'StoreError';
}

/** The store could not be reached within the timeout (connect error, request timeout, closed client). */
export class StoreUnavailableError extends StoreError {
  override name = 'StoreUnavailableError';
}

/**
 * A write that grants (a lock, a fence, a run-once claim or completion) ran on the master, but fewer replicas
 * than required acknowledged it within the replica timeout (`WAIT`). It does not count: a failover could lose
 * it, and a master that has been demoted (it has no replica left) answers this way too. Ambiguous: the write
 * may survive, so a lock is given back and a completion is reported as not stored.
 */
export class ReplicationError extends StoreUnavailableError {
  override name = 'ReplicationError';
  /** Replicas that acknowledged the write in time. */
  declare readonly acknowledged: number;
  /** Replicas the store was configured to wait for. */
  declare readonly required: number;
  constructor(
    message: string,
    options: { store: string; acknowledged: number; required: number; cause?: unknown },
  ) {
    super(message, { ...options, ambiguous: true });
  }
}

/** The store rejected our credentials (REST 401, NOAUTH, WRONGPASS). The message never holds the secret. */
export class StoreAuthError extends StoreError {
  override name = 'StoreAuthError';
}

/** One attempt of an acquire that gave up: what each node (one, for a single store) answered. */
export interface AttemptRecord {
  /** 1 for the first attempt. */
  readonly attempt: number;
  /** When it started: milliseconds after the first attempt did. */
  readonly atMs: number;
  /** Every node heard from, and those that had not answered yet (`pending`). */
  readonly nodes: readonly NodeOutcome[];
}

/** How many attempts a LockNotAcquiredError keeps in `history` (the most recent ones). */
export const MAX_ATTEMPT_RECORDS = 10;

/**
 * acquire() gave up: the lock stayed held by another owner (or the store failed) through every attempt.
 * `history` keeps the last MAX_ATTEMPT_RECORDS attempts: each node's state and, where another owner held the
 * lock, that holder's remaining ms (`holderTtlMs`). `attempts` counts them all.
 */
export class LockNotAcquiredError extends /* @__PURE__ */ withFields<{
  key: string;
  attempts: number;
  history: readonly AttemptRecord[];
}>() {
  override name = 'LockNotAcquiredError';
  constructor(
    message: string,
    options: { key: string; attempts: number; history?: readonly AttemptRecord[]; cause?: unknown },
  ) {
    super(message, { ...options, history: options.history ?? [] });
  }
}

/**
 * A lock we may hold but will not use could not be given back: the release kept failing on the store until
 * the lease's validity had passed (the key has expired by itself since). Reported through `onError`, never
 * thrown. `attempts` counts the releases sent; `cause` is the last store error.
 */
export class LockNotReleasedError extends /* @__PURE__ */ withFields<{ key: string; attempts: number }>() {
  override name = 'LockNotReleasedError';
}

export type LockLostReason = 'expired' | 'stolen' | 'released';

/**
 * The lease is gone: `expired` (its validity ran out, or the key vanished), `stolen` (another owner holds
 * the key) or `released` (we released it ourselves). Thrown by extend(); `expired` and `stolen` are also the
 * reason carried by the lease's AbortSignal.
 */
export class LockLostError extends /* @__PURE__ */ withFields<{ key: string; reason: LockLostReason }>() {
  override name = 'LockLostError';
}

/** A LockLostError whose message says what happened to `key`. */
export function lockLost(key: string, reason: LockLostReason): LockLostError {
  const message =
    reason === 'stolen'
      ? `lock "${key}" is held by another owner`
      : reason === 'released'
        ? `lock "${key}" was already released`
        : `lock "${key}" expired before it was extended`;
  return new LockLostError(message, { key, reason });
}

/**
 * A fenced write (oncely/effects/*) was refused: the resource has already seen a newer fence, so a newer holder
 * of the lock or claim has written to it. Nothing was written. Stop: the work belongs to the newer holder.
 */
export class StaleFenceError extends /* @__PURE__ */ withFields<{
  /** The resource written to (a Redis key, a PostgreSQL fence row, a DynamoDB item's table). */
  resource: string;
  /** The fence this write carried. */
  fence: number;
  /** The newer fence the resource holds, when the resource told it. */
  current: number | undefined;
}>() {
  override name = 'StaleFenceError';
}

/** A StaleFenceError for `resource`, naming both fences. */
export function staleFence(resource: string, fence: number, current: number | undefined): StaleFenceError {
  const newer = current === undefined ? 'a newer fence' : `fence ${current}`;
  return new StaleFenceError(`write to "${resource}" refused: fence ${fence} is older than ${newer}`, {
    resource,
    fence,
    current,
  });
}

// ------------------------------------------------------------------------------------------------ run-once

/** The key's first invocation is still running (`duplicate: 'throw'`, or `'wait'` ran out of time). */
export class InProgressError extends /* @__PURE__ */ withFields<{
  key: string;
  /** The running invocation's remaining lease: retry after this long. */
  retryAfterMs: number;
}>() {
  override name = 'InProgressError';
}

/** The key was first used with a different payload: never answered with the other payload's result. */
export class PayloadMismatchError extends /* @__PURE__ */ withFields<{ key: string }>() {
  override name = 'PayloadMismatchError';
}

/** The event has no idempotency key where the options look for one (`missingKey: 'throw'`). */
export class MissingKeyError extends /* @__PURE__ */ withFields<{
  /** The event source whose key was looked for. */
  source: string;
}>() {
  override name = 'MissingKeyError';
}

/**
 * Why a result was not stored: over maxResultBytes, no JSON form (a bigint, function or symbol, a circular
 * structure), or a value JSON would give back changed (a Date, Map, NaN, -0, an undefined field, …).
 */
export type NotStorableReason = 'too-large' | 'not-serialisable' | 'changed-by-json';

/**
 * The handler's result could not be stored and `unstorable: 'throw'` was chosen: the record was released, so a
 * retry runs the handler again.
 */
export class ResultNotStorableError extends /* @__PURE__ */ withFields<{
  key: string;
  reason: NotStorableReason;
  /** JSON size in bytes, for `too-large`. */
  bytes?: number;
}>() {
  override name = 'ResultNotStorableError';
}

// ------------------------------------------------------------------------------------------------- Redlock

/** One node's part in a Redlock operation (see QuorumError). */
export interface NodeOutcome {
  /** `#<index> <store name>`: host and port only, never a credential. */
  readonly node: string;
  /**
   * `ok`: granted / extended / released. `taken`: held by another holder. `expired`: our key was gone.
   * `unreachable`: the store failed or did not answer within the per-node timeout (see `cause`).
   * `pending`: no answer yet when the outcome was decided.
   */
  readonly status: 'ok' | 'taken' | 'expired' | 'unreachable' | 'pending';
  readonly cause?: Error;
  /** `taken`: the holder's remaining ms on this node, when the node told it. */
  readonly holderTtlMs?: number;
  /** Several keys at once (`acquire([k1, k2])`): the key this outcome is about. */
  readonly key?: string;
}

const STATUS_WORDS: Record<NodeOutcome['status'], string> = {
  ok: 'ok',
  taken: 'taken by another holder',
  expired: 'not ours any more',
  unreachable: 'unreachable',
  pending: 'no answer yet',
};

/** A few words per node: `#0 127.0.0.1:6380 taken by another holder (4200 ms left)`. */
export function describeNodes(nodes: readonly NodeOutcome[]): string {
  return nodes
    .map((n) => {
      const what = n.key === undefined ? n.node : `${n.node} "${n.key}"`;
      const extra =
        n.status === 'taken' && n.holderTtlMs !== undefined
          ? ` (${n.holderTtlMs} ms left)`
          : n.cause
            ? ` (${n.cause.message})`
            : '';
      return `${what} ${STATUS_WORDS[n.status]}${extra}`;
    })
    .join(', ');
}

export type QuorumOperation = 'acquire' | 'extend' | 'release' | 'check';

/**
 * A QuorumError naming every node's outcome, its cause the first unreachable node's error. `detail` is added
 * to the message in brackets.
 */
export function quorumNotReached(
  key: string,
  operation: QuorumOperation,
  quorum: number,
  nodes: readonly NodeOutcome[],
  detail?: string,
): QuorumError {
  const ok = nodes.filter((n) => n.status === 'ok').length;
  const parts = (['taken', 'expired', 'unreachable', 'pending'] as const).flatMap((status) => {
    const these = nodes.filter((n) => n.status === status);
    if (these.length === 0) return [];
    const list = these.map((n) => (n.cause ? `${n.node} (${n.cause.message})` : n.node)).join(', ');
    return [`${STATUS_WORDS[status]}: ${list}`];
  });
  return new QuorumError(
    `lock "${key}": ${operation} needs ${quorum} of ${nodes.length} nodes, ${ok} answered ok` +
      `${detail ? ` (${detail})` : ''}${parts.length ? ` — ${parts.join('; ')}` : ''}`,
    { key, operation, quorum, nodes, cause: nodes.find((n) => n.status === 'unreachable')?.cause },
  );
}

/**
 * A Redlock operation did not reach its quorum. `nodes` names every node's outcome: which were taken by another
 * holder and which were unreachable (with the cause). `cause` is the first unreachable node's error.
 */
export class QuorumError extends /* @__PURE__ */ withFields<{
  key: string;
  operation: QuorumOperation;
  quorum: number;
  nodes: readonly NodeOutcome[];
}>() {
  override name = 'QuorumError';
  /** Nodes where another holder has the lock. */
  get taken(): NodeOutcome[] {
    return this.nodes.filter((n) => n.status === 'taken');
  }
  /** Nodes that failed or did not answer in time, each with its cause. */
  get unreachable(): NodeOutcome[] {
    return this.nodes.filter((n) => n.status === 'unreachable');
  }
}

/** Replaces every occurrence of each secret in `text`, and the password part of any URL, with `***`. */
export function redact(text: string, secrets: readonly (string | undefined)[] = []): string {
  let out = text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)([^@/\s]*)@/gi, (_m, scheme: string) => `${scheme}***@`);
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('***');
  return out;
}
