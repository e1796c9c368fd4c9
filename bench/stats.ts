/**
 * The benchmark's own arithmetic: percentiles, medians, ratios across interleaved rounds, and the PASS/FAIL
 * evaluation of a target. Pure functions, unit-tested in test/unit/bench-stats.test.ts.
 */

/**
 * The p-th percentile (0..100) by linear interpolation between the two nearest ranks (R-7, the spreadsheet
 * and NumPy default). NaN for no values. The input is not modified.
 */
export function percentile(values: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be within 0..100, got ${p}`);
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  return a + (b - a) * (rank - lo);
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** a / b; NaN when either is missing or not finite, or b is 0. */
export function ratio(a: number | undefined, b: number | undefined): number {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) {
    return Number.NaN;
  }
  return a / b;
}

/**
 * The ratio of two contenders measured in the same interleaved rounds: the median of the per-round ratios.
 * Rounds run seconds apart on a shared machine; a ratio taken within a round cancels the load both saw, and
 * the median drops the rounds a neighbour's burst spoiled. Rounds missing either value are skipped.
 */
export function ratioOfRounds(a: readonly number[], b: readonly number[]): number {
  const per: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const r = ratio(a[i], b[i]);
    if (!Number.isNaN(r)) per.push(r);
  }
  return median(per);
}

/** The lowest and highest per-round ratio (how much the rounds disagreed); NaNs when there are none. */
export function ratioSpread(a: readonly number[], b: readonly number[]): [number, number] {
  const per: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const r = ratio(a[i], b[i]);
    if (!Number.isNaN(r)) per.push(r);
  }
  return per.length ? [Math.min(...per), Math.max(...per)] : [Number.NaN, Number.NaN];
}

export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

export function summarize(values: readonly number[]): Summary {
  return {
    n: values.length,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    mean: mean(values),
    // A loop, not Math.min(...values): a spread of 100,000+ samples overflows the call stack.
    min: values.reduce((m, v) => (v < m ? v : m), values[0] ?? Number.NaN),
    max: values.reduce((m, v) => (v > m ? v : m), values[0] ?? Number.NaN),
  };
}

// ------------------------------------------------------------------------------------------------- targets

export type Comparison = '<=' | '>=' | '==';
export type Verdict = 'PASS' | 'FAIL' | 'NOT RUN';

export interface Target {
  /** Short id, e.g. `rest.p50`. */
  id: string;
  /** What is compared, e.g. `REST pair p50 / @upstash/lock`. */
  label: string;
  /** The measured value; undefined or NaN when the benchmark did not run. */
  actual: number | undefined;
  op: Comparison;
  limit: number;
  /** How the value is printed: a ratio (`0.62×`), a count (`2`) or a share of calls (`99.9 %`). */
  unit: 'ratio' | 'count' | 'percent';
  /** Why it was not run, or a note that explains the figure. */
  note?: string;
  /** For a ratio over rounds: the lowest and highest per-round ratio. */
  spread?: [number, number];
}

export interface Evaluated extends Target {
  verdict: Verdict;
}

/**
 * PASS when `actual op limit` holds, on the unrounded figure (target lines print ratios to three decimals, so
 * a FAIL never shows as an equal number). NOT RUN when there is no figure: never a PASS by default.
 */
export function evaluate(target: Target): Evaluated {
  const { actual: v } = target;
  if (v === undefined || Number.isNaN(v)) return { ...target, verdict: 'NOT RUN' };
  const ok =
    target.op === '<=' ? v <= target.limit : target.op === '>=' ? v >= target.limit : v === target.limit;
  return { ...target, verdict: ok ? 'PASS' : 'FAIL' };
}

export function tally(results: readonly Evaluated[]): Record<Verdict, number> {
  const t: Record<Verdict, number> = { PASS: 0, FAIL: 0, 'NOT RUN': 0 };
  for (const r of results) t[r.verdict]++;
  return t;
}

// ---------------------------------------------------------------------------------------------- formatting

export function fmtRatio(r: number, digits = 2): string {
  return Number.isFinite(r) ? `${r.toFixed(digits)}×` : '—';
}

/** Milliseconds with three significant digits where it matters: 0.184, 1.52, 23.4, 412. */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return '—';
  if (ms < 1) return ms.toFixed(3);
  if (ms < 10) return ms.toFixed(2);
  if (ms < 100) return ms.toFixed(1);
  return ms.toFixed(0);
}

export function fmtCount(n: number): string {
  if (!Number.isFinite(n)) return '—';
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

export function fmtRate(perSecond: number): string {
  if (!Number.isFinite(perSecond)) return '—';
  return Math.round(perSecond).toLocaleString('en-US');
}

export function fmtBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '—';
  return bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} B`;
}

/**
 * A share in percent, never rounded up to a whole 100: 99.96 prints as `99.9 %`, so a row that lost one call
 * in 4,000 never reads as complete. Whole numbers print without decimals.
 */
export function fmtPercent(pct: number): string {
  if (!Number.isFinite(pct)) return '—';
  if (Number.isInteger(pct)) return `${pct} %`;
  return `${(Math.floor(pct * 10) / 10).toFixed(1)} %`;
}

/** A target's value (measured or limit) in its unit; ratios of measured values with `digits` decimals. */
export function fmtValue(unit: Target['unit'], v: number, digits = 2): string {
  return unit === 'ratio' ? fmtRatio(v, digits) : unit === 'percent' ? fmtPercent(v) : fmtCount(v);
}

/** A target's console line: verdict, figure, goal and, for a ratio over rounds, the per-round range. */
export function fmtTarget(t: Evaluated): string {
  const actual = t.actual === undefined || Number.isNaN(t.actual) ? 'n/a' : fmtValue(t.unit, t.actual, 3);
  const op = t.op === '<=' ? '≤' : t.op === '>=' ? '≥' : '=';
  const rounds =
    t.spread && Number.isFinite(t.spread[0])
      ? `; rounds ${fmtRatio(t.spread[0])}–${fmtRatio(t.spread[1])}`
      : '';
  return `${t.verdict.padEnd(7)} ${t.label}: ${actual} (target ${op} ${fmtValue(t.unit, t.limit)}${rounds})`;
}

// ----------------------------------------------------------------------------------------------- scaling

/** Answered calls as a percentage of calls issued; NaN when none were issued. */
export function answeredPercent(answered: number, calls: number): number {
  return calls > 0 ? (answered / calls) * 100 : Number.NaN;
}

/**
 * Calls/s against the best peer measured in the same interleaved rounds: the peer with the highest median
 * rate, and the median of per-round ratios against it (ratioOfRounds). Undefined when no peer has a rate.
 */
export function againstBestPeer(
  mine: readonly number[],
  peers: readonly { id: string; rounds: readonly number[] }[],
): { peer: string; ratio: number; spread: [number, number] } | undefined {
  let best: { id: string; rounds: readonly number[]; rate: number } | undefined;
  for (const p of peers) {
    const rate = median(p.rounds.filter(Number.isFinite));
    if (Number.isFinite(rate) && (best === undefined || rate > best.rate)) best = { ...p, rate };
  }
  if (!best) return undefined;
  return { peer: best.id, ratio: ratioOfRounds(mine, best.rounds), spread: ratioSpread(mine, best.rounds) };
}

export interface LevelPoint {
  /** Calls in flight. */
  concurrency: number;
  /** Answered calls per second. */
  perSecond: number;
  p50: number;
}

export interface ScalingShape {
  first: LevelPoint;
  last: LevelPoint;
  /** The highest rate measured, and at which level. */
  peak: LevelPoint;
  /**
   * The lowest level from which no higher level is `minGain`× faster: where calls/s stops growing. The last
   * level when it was still growing there (`stillGrowing`).
   */
  plateau: LevelPoint;
  stillGrowing: boolean;
  /** last.perSecond / first.perSecond and last.p50 / first.p50. */
  rateGrowth: number;
  p50Growth: number;
}

/**
 * How cost grows with concurrency, from one contender's levels: where throughput stops growing (the first
 * level that no later level beats by `minGain`, 1.1 by default: a tenth more calls/s) and how far the median
 * call's time grew between the lowest level and the highest. Undefined for no levels with a rate.
 */
export function scalingShape(points: readonly LevelPoint[], minGain = 1.1): ScalingShape | undefined {
  const levels = points
    .filter((p) => Number.isFinite(p.perSecond))
    .sort((a, b) => a.concurrency - b.concurrency);
  const first = levels[0];
  const last = levels[levels.length - 1];
  if (!first || !last) return undefined;
  let peak = first;
  for (const p of levels) if (p.perSecond > peak.perSecond) peak = p;
  const plateau =
    levels.find((p, i) => levels.slice(i + 1).every((q) => q.perSecond < p.perSecond * minGain)) ?? last;
  return {
    first,
    last,
    peak,
    plateau,
    stillGrowing: plateau === last && levels.length > 1,
    rateGrowth: ratio(last.perSecond, first.perSecond),
    p50Growth: ratio(last.p50, first.p50),
  };
}
