/**
 * The `metrics` option of withOnce and its check, apart from the metrics themselves (metrics.ts, which
 * re-exports these): withOnce checks its options when a handler is made, before the engine loads.
 */

/** What oncely needs of a Powertools `Metrics` instance (or any object like it). */
export interface MetricsLike {
  addMetric(name: string, unit: string, value: number): unknown;
}

/**
 * `'emf'`: one EMF document per invocation on console.log; a function: each EMF document (one JSON line) is
 * handed to it; a Powertools `Metrics` instance: oncely adds its metrics to it (publish it as usual, e.g. with
 * its middy middleware or `logMetrics`); `false`: no metrics.
 */
export type MetricsOption = 'emf' | false | ((line: string) => void) | MetricsLike;

export function isMetricsLike(x: unknown): x is MetricsLike {
  return typeof x === 'object' && x !== null && typeof (x as MetricsLike).addMetric === 'function';
}

/** `metrics` as given, else ONCELY_METRICS (`emf`; unset, empty, `off` or `none`: no metrics). */
export function metricsProblems(metrics: unknown, env: string | undefined): string[] {
  if (metrics !== undefined) {
    if (metrics === 'emf' || metrics === false || typeof metrics === 'function' || isMetricsLike(metrics))
      return [];
    return ["metrics must be 'emf', false, a function taking a line, or a Powertools Metrics instance"];
  }
  const e = env?.trim().toLowerCase();
  return !e || e === 'emf' || e === 'off' || e === 'none'
    ? []
    : [`ONCELY_METRICS must be emf (or off), got "${env}"`];
}

export function metricsOption(metrics: MetricsOption | undefined, env: string | undefined): MetricsOption {
  if (metrics !== undefined) return metrics;
  return env?.trim().toLowerCase() === 'emf' ? 'emf' : false;
}
