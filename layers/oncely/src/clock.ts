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
