/**
 * The one place "now" comes from. Lease validity is measured on a monotonic clock (never wall time), so a
 * clock step on the host cannot extend a lease. Tests inject their own clock or use fake timers. With the
 * waits and signals that time bounds: sleep() and anySignal().
 */
export interface Clock {
  /** Monotonic milliseconds (fractional), only meaningful as differences. */
  now(): number;
}

export const monotonicClock: Clock = { now: () => performance.now() };

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A signal that aborts with the first of `signals`; `dispose()` detaches it from them. */
export function anySignal(signals: readonly AbortSignal[]): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const listeners: [AbortSignal, () => void][] = [];
  for (const s of signals) {
    if (s.aborted) {
      controller.abort(s.reason);
      break;
    }
    const listener = () => controller.abort(s.reason);
    s.addEventListener('abort', listener, { once: true });
    listeners.push([s, listener]);
  }
  return {
    signal: controller.signal,
    dispose: () => {
      for (const [s, listener] of listeners) s.removeEventListener('abort', listener);
    },
  };
}

/** One deadline of a Deadlines queue: `cancel()` once its work is done, else `onExpire` runs when it passes. */
export interface Deadline {
  cancel(): void;
}

class Pending implements Deadline {
  constructor(
    readonly at: number,
    public onExpire: (() => void) | undefined,
    readonly onCancel: (() => void) | undefined,
  ) {}
  cancel(): void {
    if (this.onExpire === undefined) return;
    this.onExpire = undefined;
    this.onCancel?.();
  }
}

/**
 * Deadlines that all last `ms`: they pass in the order they were set, so one timer, set for the earliest,
 * serves them all, instead of a timer made and cleared per call (the hot paths' calls each have one). A
 * deadline runs its `onExpire` no sooner than `ms` after it was set, and as soon after as a timer would.
 * The timer is set again only when it fires. It never keeps the process alive, unless `ref`: then it does
 * while a deadline is pending (as a timer per call would), and not once they are all cancelled or run.
 */
export class Deadlines {
  readonly #ms: number;
  readonly #ref: boolean;
  /** The deadlines set, in order, from #head (done ones included until they reach the front) to #tail. */
  #queue: Pending[] = [];
  #head = 0;
  #tail = 0;
  /** Pending deadlines (`ref` only: the timer holds the process while there are any). */
  #live = 0;
  #timer: NodeJS.Timeout | undefined;
  /** When the timer was set to fire (performance.now() units): a timer never fires before it. */
  #firesAt = 0;
  readonly #fire = () => this.#expire();
  readonly #cancelled: (() => void) | undefined;

  constructor(ms: number, options: { ref?: boolean } = {}) {
    this.#ms = ms;
    this.#ref = options.ref ?? false;
    this.#cancelled = this.#ref
      ? () => {
          if (--this.#live === 0) this.#timer?.unref();
        }
      : undefined;
  }

  /** How many deadlines are held, cancelled ones not yet dropped included (for tests). */
  get size(): number {
    return this.#tail - this.#head;
  }

  add(onExpire: () => void): Deadline {
    const at = performance.now() + this.#ms;
    // Done ones at the front go now: in a steady flow of calls the queue stays as short as the calls in flight.
    const q = this.#queue;
    while (this.#head < this.#tail && q[this.#head]!.onExpire === undefined) this.#head++;
    if (this.#head === this.#tail) this.#head = this.#tail = 0; // the slots are written over
    const pending = new Pending(at, onExpire, this.#cancelled);
    q[this.#tail++] = pending;
    if (this.#ref && ++this.#live === 1) this.#timer?.ref();
    if (this.#timer === undefined) this.#arm(this.#ms, at);
    return pending;
  }

  #arm(delayMs: number, firesAt: number): void {
    this.#firesAt = firesAt;
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(delayMs)));
    if (!this.#ref || this.#live === 0) this.#timer.unref?.();
  }

  #expire(): void {
    this.#timer = undefined;
    // The timer fired, so its time has come even where the clock reads a hair earlier (timers count whole ms).
    const now = Math.max(performance.now(), this.#firesAt);
    const q = this.#queue;
    const due: (() => void)[] = [];
    while (this.#head < this.#tail) {
      const next = q[this.#head]!;
      if (next.onExpire !== undefined && next.at > now) break;
      this.#head++;
      if (next.onExpire !== undefined) due.push(next.onExpire);
      next.onExpire = undefined;
    }
    if (this.#ref) this.#live -= due.length;
    if (this.#head === this.#tail) {
      // Empty: the slots are written over, and the array shrinks back after a burst.
      this.#head = this.#tail = 0;
      if (q.length > 1024) this.#queue = [];
    } else {
      if (this.#head > 1024 && this.#head * 2 > this.#tail) {
        this.#queue = q.slice(this.#head, this.#tail);
        this.#tail -= this.#head;
        this.#head = 0;
      }
      const first = this.#queue[this.#head]!;
      this.#arm(first.at - now, first.at);
    }
    // After the queue is in order again (an onExpire may add a deadline). One that throws does not keep the
    // others from running: its error is thrown after them, uncaught, as a timer's own would be.
    let failure: { error: unknown } | undefined;
    for (const onExpire of due) {
      try {
        onExpire();
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure) throw failure.error;
  }
}
