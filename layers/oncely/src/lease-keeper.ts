/**
 * The one lease-keeping loop: extends leases in the background before they expire. Locks (`using()`), run-once
 * records (a long handler's record, a batch's records) and leadership terms all keep their leases with it; what
 * differs is passed in: when the next extension is due, to what TTL, and how soon to try again after a store
 * failure. A lost lease (LockLostError) ends the loop for that lease: its signal has already fired.
 */
import type { Clock } from './clock.js';
import { LockLostError } from './errors.js';
import type { Lease } from './lease.js';
import { MIN_TTL_MS } from './validate.js';

/** A lease is extended when this fraction of it is left (locks' `using()` by default, run-once records). */
export const EXTEND_WHEN_LEFT = 1 / 2;
/** After a store failure, try again at this fraction of the validity left... */
export const RETRY_FRACTION = 1 / 4;
/** ...but no later than this. */
export const RETRY_MAX_MS = 1000;

export interface KeepOptions {
  /** The leases to keep alive (asked again at every turn: a batch's are built as they are needed). */
  leases: () => readonly Lease[];
  /** Milliseconds from now until `lease` is due for extension (the loop extends when the first is due). */
  dueInMs: (lease: Lease) => number;
  /** The TTL of the next extension. Below MIN_TTL_MS the loop stops. */
  ttlMs: () => number;
  /** True when an extension to `ttlMs` was the last useful one (it reached a deadline): the loop stops. */
  last?: (ttlMs: number) => boolean;
  /**
   * How soon to try again after a store failure, given the validity left (the least of the leases').
   * @default min(remainingMs × RETRY_FRACTION, RETRY_MAX_MS)
   */
  retryInMs?: (remainingMs: number) => number;
  /** Store failures of an extension (the lease may still be valid). */
  onError: (error: Error) => void;
  /** Extend at once rather than when the first lease is due. */
  now?: boolean;
  /**
   * Whether the loop's timer keeps the process alive (a leader's does; a Lambda handler's must not).
   * @default false
   */
  ref?: boolean;
}

const defaultRetry = (remainingMs: number) => Math.min(remainingMs * RETRY_FRACTION, RETRY_MAX_MS);

/** Starts keeping `leases` alive; returns the function that stops it. */
export function keepLeases(options: KeepOptions): () => void {
  const { leases, dueInMs, ttlMs, last, onError, ref = false } = options;
  const retryInMs = options.retryInMs ?? defaultRetry;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const live = () => leases().filter((l) => l.held);
  const arm = (delayMs: number) => {
    timer = setTimeout(tick, Math.max(0, delayMs));
    if (!ref) timer.unref?.();
  };
  const schedule = () => {
    const held = live();
    if (stopped || held.length === 0) return;
    arm(Math.min(...held.map(dueInMs)));
  };
  const tick = async () => {
    const ttl = ttlMs();
    if (stopped || ttl < MIN_TTL_MS) return;
    let failed = false;
    await Promise.all(
      live().map((l) =>
        l.extend(ttl).catch((err: unknown) => {
          if (err instanceof LockLostError) return; // its signal has fired
          failed = true;
          onError(err instanceof Error ? err : new Error(String(err)));
        }),
      ),
    );
    if (stopped) return;
    if (!failed) return last?.(ttl) ? undefined : schedule();
    // A store failure: try again soon, while the leases are still valid.
    const held = live();
    if (held.length === 0) return;
    arm(retryInMs(Math.min(...held.map((l) => l.remainingMs))));
  };
  if (options.now) void tick();
  else schedule();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/**
 * keepLeases() for one lease while `fn` runs (a lock's `using()`), then releases it.
 * `fn`'s result or error always wins: a release failure goes to `onError`, never replaces them.
 */
export async function keepLeaseWhile<T>(
  lease: Lease,
  fn: (lease: Lease) => Promise<T>,
  options: { ttlMs: number; extendBeforeMs?: number; onError?: (error: Error) => void },
  clock: Clock,
): Promise<T> {
  const { ttlMs } = options;
  const extendBeforeMs = options.extendBeforeMs ?? Math.floor(ttlMs * EXTEND_WHEN_LEFT);
  const report = (e: unknown) => options.onError?.(e instanceof Error ? e : new Error(String(e)));
  const stop = keepLeases({
    leases: () => [lease],
    dueInMs: (l) => l.validUntil - clock.now() - extendBeforeMs,
    ttlMs: () => ttlMs,
    onError: report,
  });
  try {
    return await fn(lease);
  } finally {
    stop();
    try {
      await lease.release();
    } catch (err) {
      report(err);
    }
  }
}
