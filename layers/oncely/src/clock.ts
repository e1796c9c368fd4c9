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
  ) {}
  cancel(): void {
    this.onExpire = undefined;
  }
}

/**
 * Deadlines that all last `ms`: they pass in the order they were set, so one timer, set for the earliest,
 * serves them all, instead of a timer made and cleared per call (the hot paths' calls each have one). A
 * deadline runs its `onExpire` no sooner than `ms` after it was set, and as soon after as a timer would.
 * The timer never keeps the process alive (unless `ref`), and is set again only when it fires.
 */
export class Deadlines {
  readonly #ms: number;
  readonly #ref: boolean;
  /** The deadlines set, in order, from #head (done ones included until they reach the front) to #tail. */
  #queue: Pending[] = [];
  #head = 0;
  #tail = 0;
  #timer: NodeJS.Timeout | undefined;
  /** When the timer was set to fire (performance.now() units): a timer never fires before it. */
  #firesAt = 0;
  readonly #fire = () => this.#expire();

  constructor(ms: number, options: { ref?: boolean } = {}) {
    this.#ms = ms;
    this.#ref = options.ref ?? false;
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
    const pending = new Pending(at, onExpire);
    q[this.#tail++] = pending;
    if (this.#timer === undefined) this.#arm(this.#ms, at);
    return pending;
  }

  #arm(delayMs: number, firesAt: number): void {
    this.#firesAt = firesAt;
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(delayMs)));
    if (!this.#ref) this.#timer.unref?.();
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
    // After the queue is in order again (an onExpire may add a deadline).
    for (const onExpire of due) onExpire();
  }
}
