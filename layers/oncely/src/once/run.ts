/**
 * The Run: one record an invocation claimed (or runs without), what its handler is given (`once`: the signal,
 * the fence, the key), and the record's lease, built when first needed. How a run ends is settle.ts.
 */
import { Lease, type LeaseInit } from '../lease.js';
import type { OnceRun } from './options.js';

const UNFENCED: OnceRun = Object.freeze({
  signal: new AbortController().signal,
  fence: 0,
  key: undefined,
});

export interface RunInit {
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
 * One claimed record (or a handler that runs without one). `once` is what the handler gets.
 *
 * Nothing can happen to a claimed record before half its lease, when the first extension is due: until then
 * the run has no Lease (see Keeper, record-lease.ts), and the handler's signal is only made if the handler
 * reads it. A handler that finishes sooner (most do) never pays for a lease's expiry timer, its
 * AbortControllers, or a timer of its own. The Lease is built with the claim's start and TTL (so the same
 * validity).
 */
export class Run {
  readonly key: string | undefined;
  readonly token: string;
  readonly fence: number;
  readonly hash: string;
  readonly http: boolean;
  readonly startedAt: number;
  readonly once: OnceRun;
  /** What the lease is built from; null when the run owns no record. */
  readonly leaseInit: LeaseInit | null;
  #lease: Lease | undefined;
  /** The handler's signal, made when first read. */
  #handler: AbortController | undefined;
  /** Set when the lease was lost before the run was settled: the reason the handler's signal carries. */
  #lost: { reason: unknown } | undefined;
  /** Set by stop(): the handler's signal no longer follows the lease. */
  #stopped = false;
  #detach: (() => void) | undefined;

  constructor(init: RunInit) {
    this.key = init.key;
    this.token = init.token;
    this.fence = init.fence;
    this.hash = init.hash;
    this.http = init.http;
    this.startedAt = init.startedAt;
    this.leaseInit = init.lease;
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
    if (!this.leaseInit) return null;
    if (this.#lease) return this.#lease;
    const lease = new Lease(this.leaseInit);
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

  /** Detaches the handler's signal from the lease (the handler is done). */
  stop(): void {
    this.#stopped = true;
    this.#detach?.();
  }
}
