/**
 * Leader election on a lock: campaign, renew at a fraction of the lease, resign (explicitly, or on SIGTERM /
 * SIGINT), observe the current leader. Works over a single-store Lock or a Redlock quorum.
 *
 * The term is the lease's fencing token: strictly increasing from one leader to the next, so a resource that
 * remembers the highest term it has seen can refuse a deposed leader that has not noticed yet. The leadership
 * signal aborts when the lease is lost (an extend found another holder, or the validity ran out without a
 * renewal) or when we resign; `isLeader` checks the validity on the monotonic clock, so a process that was
 * paused past its lease sees `false` (and its signal abort) on its first look, before it acts again.
 */
import { hostname } from 'node:os';
import type { Locker } from './acquire.js';
import { anySignal, sleep } from './clock.js';
import { type LockLostError, lockLost, OncelyError } from './errors.js';
import { fanOut, MAX_DEFAULT_NODE_TIMEOUT_MS } from './fan-out.js';
import type { Lease } from './lease.js';
import { keepLeases } from './lease-keeper.js';
import { LEADER_ANNOUNCE, LEADER_OBSERVE } from './scripts.js';
import {
  fnProblems,
  isWhole,
  MAX_ATTEMPTS,
  MAX_TTL_MS,
  resolveOptions,
  ttlProblems,
  wholeProblems,
} from './validate.js';

export interface ElectOptions {
  /** What to campaign on: a Lock (one store) or a Redlock (a quorum of independent stores). */
  lock: Locker;
  /** The election's name: the lock key (`oncely:{<name>}:lock`). */
  name: string;
  /**
   * This candidate's id, shown to observers. Not a secret.
   * @default `<hostname>:<pid>`
   */
  id?: string;
  /**
   * The leadership lease: how long a dead leader keeps the others waiting.
   * @default 10_000
   */
  ttlMs?: number;
  /**
   * Renew the lease when this much of it is left (as a lock's `using()`: measured back from the lease's end),
   * so the leader renews every `ttlMs − extendBeforeMs`.
   * @default ttlMs − ttlMs / 3 (a renewal every third of the lease)
   */
  extendBeforeMs?: number;
  /**
   * How often a follower tries to take over (it also wakes when the holder's lease would end).
   * @default ttlMs − extendBeforeMs
   */
  retryEveryMs?: number;
  /** Called each time this candidate becomes leader, after it has announced itself. */
  onElected?: (leadership: Leadership) => void;
  /**
   * Called when a leadership ends: the reason is a LockLostError — `expired` (not renewed in time), `stolen`
   * (another holder has the lock) or `released` (we resigned).
   */
  onDeposed?: (reason: LockLostError, leadership: Leadership) => void;
  /** Errors the campaign survives (a failed renewal, a failed announcement). */
  onError?: (error: Error) => void;
  /**
   * Resign when the process receives these signals, then let the signal take its default course (exit) if
   * nobody else listens to it. `false` to handle shutdown yourself (call `resign()`).
   * @default ['SIGTERM', 'SIGINT']
   */
  resignOn?: readonly NodeJS.Signals[] | false;
  /** Aborting it resigns, as `resign()` does. */
  signal?: AbortSignal;
}

/** One term of leadership. */
export interface Leadership {
  readonly id: string;
  /** The fencing token of the leadership lease: strictly increasing from leader to leader. */
  readonly term: number;
  readonly lease: Lease;
  /** Aborts (reason: a LockLostError) when this leadership ends, whatever the cause. */
  readonly signal: AbortSignal;
}

/** Who leads, as stored next to the lock. */
export interface LeaderInfo {
  readonly id: string;
  readonly term: number;
  /** What is left of the leader's lease, as its store(s) see it. */
  readonly remainingMs: number;
}

const DEFAULT_TTL_MS = 10_000;

/** A leader renews every third of its lease by default, and announces itself within a third. */
const RENEW_PARTS = 3;

/** Resign on these by default (`resignOn`). */
const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

/** The elect() options without a default (validate.ts: an option neither here nor defaulted is refused). */
const ELECT_FIELDS = {
  lock: true,
  name: true,
  extendBeforeMs: true,
  retryEveryMs: true,
  onElected: true,
  onDeposed: true,
  onError: true,
  signal: true,
} as const;

/** Everything wrong with elect()'s options, resolved over their defaults. */
function electProblems(o: ElectOptions & { ttlMs: number; id: string }): string[] {
  const p = [...ttlProblems(o.ttlMs, 'ttlMs')];
  if (!o.lock || typeof o.lock.tryAcquire !== 'function') p.push('lock must be a Lock or a Redlock');
  if (typeof o.name !== 'string' || o.name.length === 0) p.push('name must be a non-empty string');
  if (typeof o.id !== 'string' || o.id.length === 0) p.push('id must be a non-empty string');
  if (o.resignOn !== false && !Array.isArray(o.resignOn))
    p.push('resignOn must be a list of signals or false');
  const ttl = isWhole(o.ttlMs, 2, MAX_TTL_MS) ? o.ttlMs : MAX_TTL_MS;
  if (o.extendBeforeMs !== undefined)
    p.push(...wholeProblems('extendBeforeMs', o.extendBeforeMs, 1, ttl - 1, 'ms'));
  if (o.retryEveryMs !== undefined)
    p.push(...wholeProblems('retryEveryMs', o.retryEveryMs, 1, MAX_TTL_MS, 'ms'));
  for (const f of ['onElected', 'onDeposed', 'onError'] as const) p.push(...fnProblems(f, o[f]));
  return p;
}

/**
 * The current leader of election `name`, or null when nobody holds it (or the holder has not announced itself
 * yet). Over a Redlock, a leader counts when a quorum of nodes agree on it.
 */
export async function observeLeader(
  lock: Locker,
  name: string,
  options?: { timeoutMs?: number },
): Promise<LeaderInfo | null> {
  const { timeoutMs } = resolveOptions(
    options,
    { timeoutMs: MAX_DEFAULT_NODE_TIMEOUT_MS },
    (o) => wholeProblems('timeoutMs', o.timeoutMs, 1, MAX_TTL_MS, 'ms'),
    'observeLeader',
    {},
  );
  const { stores, quorum } = lock;
  const keys = [lock.keyOf(name), lock.leaderKeyOf(name)];
  const { answers } = fanOut(stores, LEADER_OBSERVE, keys, [], timeoutMs);
  const seen = new Map<string, { id: string; term: number; pttls: number[] }>();
  const failures: Error[] = [];
  for (const a of await Promise.all(answers)) {
    if (!a.ok) {
      failures.push(a.error);
      continue;
    }
    const r = Array.isArray(a.value) && a.value.length > 0 ? LEADER_OBSERVE.parse(a.value) : undefined;
    if (r?.kind !== 'announced') continue;
    const k = `${r.term}\n${r.id}`;
    const entry = seen.get(k) ?? { id: r.id, term: r.term, pttls: [] };
    entry.pttls.push(r.remainingMs);
    seen.set(k, entry);
  }
  for (const { id, term, pttls } of seen.values()) {
    if (pttls.length >= quorum) {
      pttls.sort((a, b) => b - a);
      return { id, term, remainingMs: Math.max(0, pttls[quorum - 1]!) };
    }
  }
  // Nothing to go on: say why rather than claim there is no leader.
  if (failures.length > stores.length - quorum) throw failures[0];
  return null;
}

/**
 * A running candidacy. Created by `elect()`; campaigns until `resign()` (or the abort signal, or a shutdown
 * signal).
 */
export class Election {
  readonly id: string;
  readonly name: string;
  /** Resolves once the campaign has stopped and any leadership has been released. */
  readonly done: Promise<void>;
  readonly #opts: Required<Pick<ElectOptions, 'ttlMs' | 'retryEveryMs'>> & ElectOptions;
  /** How often the leader renews: ttlMs − extendBeforeMs. */
  readonly #renewEveryMs: number;
  readonly #stop = new AbortController();
  #current: { leadership: Leadership; end: AbortController } | null = null;
  #signalHandlers: [NodeJS.Signals, () => void][] = [];

  constructor(options: ElectOptions) {
    const o = resolveOptions(
      options,
      { ttlMs: DEFAULT_TTL_MS, id: `${hostname()}:${process.pid}`, resignOn: SHUTDOWN_SIGNALS },
      electProblems,
      'elect',
      ELECT_FIELDS,
    );
    // A renewal every third of the lease by default; a follower retries at the renewal pace.
    this.#renewEveryMs =
      o.extendBeforeMs === undefined
        ? Math.max(1, Math.floor(o.ttlMs / RENEW_PARTS))
        : o.ttlMs - o.extendBeforeMs;
    this.#opts = { ...o, retryEveryMs: o.retryEveryMs ?? this.#renewEveryMs };
    this.id = o.id;
    this.name = o.name;

    if (options.signal?.aborted) this.#stop.abort();
    options.signal?.addEventListener('abort', () => void this.resign(), { once: true });
    for (const sig of o.resignOn === false ? [] : o.resignOn) {
      const handler = () => {
        void this.resign().finally(() => {
          this.#removeSignalHandlers();
          // Nobody else handles it: let the signal do what it would have done without us (exit).
          if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
        });
      };
      process.on(sig, handler);
      this.#signalHandlers.push([sig, handler]);
    }
    this.done = this.#campaign().finally(() => this.#removeSignalHandlers());
  }

  /** The current leadership, or null when this candidate does not lead (checked against the lease's validity). */
  get leadership(): Leadership | null {
    const current = this.#current;
    if (!current) return null;
    return current.leadership.lease.held && !current.end.signal.aborted ? current.leadership : null;
  }
  /** True while this candidate leads. A look past the lease's validity aborts the leadership signal. */
  get isLeader(): boolean {
    return this.leadership !== null;
  }
  /** The current term while leading, else null. */
  get term(): number | null {
    return this.leadership?.term ?? null;
  }

  /** Who leads now (this candidate or another). */
  observe(): Promise<LeaderInfo | null> {
    return observeLeader(this.#opts.lock, this.name);
  }

  /** Stops campaigning and, when leading, releases the lease so another candidate can take over at once. */
  async resign(): Promise<void> {
    this.#stop.abort();
    await this.done;
  }

  async #campaign(): Promise<void> {
    const { lock, ttlMs, retryEveryMs } = this.#opts;
    const stop = this.#stop.signal;
    while (!stop.aborted) {
      let lease: Lease;
      try {
        lease = await lock.acquire(this.name, {
          ttlMs: ttlMs,
          // The holder's remaining TTL shortens the wait: a follower wakes when a dead leader's lease ends.
          retry: { attempts: MAX_ATTEMPTS, delayMs: retryEveryMs, jitterMs: Math.min(50, retryEveryMs) },
          signal: stop,
        });
      } catch (err) {
        if (stop.aborted) break;
        this.#report(err);
        await sleep(retryEveryMs, stop).catch(() => undefined);
        continue;
      }
      await this.#lead(lease);
    }
  }

  async #lead(lease: Lease): Promise<void> {
    const { ttlMs } = this.#opts;
    const renewEveryMs = this.#renewEveryMs;
    const end = new AbortController();
    const leadership: Leadership = { id: this.id, term: lease.fence, lease, signal: end.signal };
    const onLost = () => end.abort(lease.signal.reason);
    lease.signal.addEventListener('abort', onLost, { once: true });

    // Leadership shows (isLeader, observers) once announced, in the same tick as onElected.
    const announce = () =>
      this.#announce(lease).catch((err) => {
        this.#report(err);
        return false;
      });
    // The record lives the lease's TTL plus the lock's fence grace from each announcement: announce again every
    // half of that while leading, so it never lapses while we lead and ends within it after we stop. A node the
    // announcement missed (its acquire landed after it: a NOSCRIPT fallback resends the acquire) is tried again
    // at the renewal pace until every node has the record, so losing a node leaves a quorum that agrees.
    let reannounce: NodeJS.Timeout | undefined;
    let leading = true;
    const again = (everywhere: boolean) => {
      if (!leading) return;
      reannounce = setTimeout(
        async () => {
          if (lease.held) again(await announce());
        },
        everywhere ? Math.floor(this.#recordTtlMs / 2) : renewEveryMs,
      );
      reannounce.unref?.();
    };
    again(await announce());
    this.#current = { leadership, end };
    if (!end.signal.aborted && lease.held) this.#safely(() => this.#opts.onElected?.(leadership));

    // Renew every ttlMs − extendBeforeMs until the lease is lost or we resign (sooner after a failed renewal).
    const stop = this.#stop.signal;
    const { signal: either, dispose } = anySignal([end.signal, stop]);
    const stopRenewing = keepLeases({
      leases: () => [lease],
      dueInMs: () => renewEveryMs,
      ttlMs: () => ttlMs,
      retryInMs: (remainingMs) => Math.max(1, Math.min(renewEveryMs, Math.floor(remainingMs / RENEW_PARTS))),
      onError: (err) => this.#report(err),
      ref: true,
    });
    if (!either.aborted)
      await new Promise((resolve) => either.addEventListener('abort', resolve, { once: true }));
    stopRenewing();
    leading = false;
    clearTimeout(reannounce);

    dispose();
    lease.signal.removeEventListener('abort', onLost);
    let reason: LockLostError;
    if (lease.signal.aborted || !lease.held) {
      reason = lease.signal.reason as LockLostError; // (held aborts the signal when it finds the lease expired)
    } else {
      // We resigned: give the lock back so a follower takes over now, not a lease later.
      reason = lockLost(lease.key, 'released');
      await lease.release().catch((err) => this.#report(err));
    }
    end.abort(reason);
    this.#current = null;
    this.#safely(() => this.#opts.onDeposed?.(reason, leadership));
  }

  /** How long a leader's record lives from each announcement: the lease's TTL plus the lock's fence grace. */
  get #recordTtlMs(): number {
    return this.#opts.ttlMs + this.#opts.lock.fenceGraceMs;
  }

  /**
   * Records who holds the lock (id and term) next to it, on every store; observers need a quorum to agree.
   * True when every store has it; throws when fewer than a quorum do.
   */
  async #announce(lease: Lease): Promise<boolean> {
    const { lock } = this.#opts;
    const { stores, quorum } = lock;
    const timeoutMs = Math.max(1, Math.floor(this.#opts.ttlMs / RENEW_PARTS));
    const { answers } = fanOut(
      stores,
      LEADER_ANNOUNCE,
      [lock.keyOf(this.name), lock.leaderKeyOf(this.name)],
      [lease.token, this.id, lease.fence, this.#recordTtlMs],
      timeoutMs,
    );
    const results = await Promise.all(answers);
    const ok = results.filter((a) => a.ok && LEADER_ANNOUNCE.parse(a.value)).length;
    if (ok < quorum) {
      const failed = results.find((a) => !a.ok);
      throw new OncelyError(`election "${this.name}": announced on ${ok} of ${stores.length} stores`, {
        cause: failed && !failed.ok ? failed.error : undefined,
      });
    }
    return ok === stores.length;
  }

  #report(err: unknown): void {
    this.#safely(() => this.#opts.onError?.(err instanceof Error ? err : new Error(String(err))));
  }

  #safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (this.#opts.onError) {
        try {
          this.#opts.onError(err instanceof Error ? err : new Error(String(err)));
        } catch {
          // an onError that throws has nowhere left to go
        }
      }
    }
  }

  #removeSignalHandlers(): void {
    for (const [sig, handler] of this.#signalHandlers) process.removeListener(sig, handler);
    this.#signalHandlers = [];
  }
}

/** Starts campaigning for leadership of `name`. See ElectOptions. */
export function elect(options: ElectOptions): Election {
  return new Election(options);
}
