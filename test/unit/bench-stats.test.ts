import { describe, expect, it } from 'vitest';
import {
  evaluate,
  fmtMs,
  fmtRatio,
  fmtTarget,
  median,
  percentile,
  ratio,
  ratioOfRounds,
  ratioSpread,
  summarize,
  type Target,
  tally,
} from '../../bench/stats.js';

describe('percentile (linear interpolation between ranks)', () => {
  it('matches NumPy / spreadsheet PERCENTILE.INC on a known set', () => {
    const v = [15, 20, 35, 40, 50];
    expect(percentile(v, 0)).toBe(15);
    expect(percentile(v, 100)).toBe(50);
    expect(percentile(v, 50)).toBe(35);
    expect(percentile(v, 40)).toBeCloseTo(29); // rank 1.6: 20 + 0.6 * 15
    expect(percentile(v, 90)).toBeCloseTo(46); // rank 3.6: 40 + 0.6 * 10
  });

  it('p99 of 1..1000 interpolates near the top, not at the maximum', () => {
    const v = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect(percentile(v, 99)).toBeCloseTo(990.01);
    expect(percentile(v, 50)).toBe(500.5);
  });

  it('does not depend on input order and does not sort the caller’s array', () => {
    const v = [9, 1, 5, 3, 7];
    expect(percentile(v, 50)).toBe(5);
    expect(v).toEqual([9, 1, 5, 3, 7]);
  });

  it('NaN for no values; one value is every percentile', () => {
    expect(percentile([], 50)).toBeNaN();
    expect(percentile([4.2], 1)).toBe(4.2);
    expect(percentile([4.2], 99)).toBe(4.2);
  });

  it('rejects a percentile outside 0..100', () => {
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(() => percentile([1], -1)).toThrow(RangeError);
    expect(() => percentile([1], Number.NaN)).toThrow(RangeError);
  });
});

describe('median and summarize', () => {
  it('median of an even count is the mean of the middle two', () => {
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([3, 1, 2])).toBe(2);
  });

  it('summarize reports n, percentiles, mean, min and max', () => {
    const s = summarize([1, 2, 3, 4, 100]);
    expect(s).toMatchObject({ n: 5, p50: 3, mean: 22, min: 1, max: 100 });
    expect(s.p99).toBeCloseTo(96.16); // rank 3.96: 4 + 0.96 * 96
    expect(summarize([]).n).toBe(0);
    expect(summarize([]).p50).toBeNaN();
  });
});

describe('ratio', () => {
  it('divides, and is NaN rather than Infinity or a guess when a side is missing', () => {
    expect(ratio(3, 4)).toBe(0.75);
    expect(ratio(1, 0)).toBeNaN();
    expect(ratio(undefined, 2)).toBeNaN();
    expect(ratio(2, Number.NaN)).toBeNaN();
  });

  it('ratioOfRounds takes the median of per-round ratios, so one disturbed round does not move it', () => {
    // Round 3 ran while the machine was busy: both sides slowed, and a was hit harder.
    const a = [1.0, 1.1, 9.0, 1.0, 1.05];
    const b = [2.0, 2.0, 10.0, 2.0, 2.1];
    expect(ratioOfRounds(a, b)).toBe(0.5);
    // A ratio of pooled medians would differ: the rounds are paired, not pooled.
    expect(median(a) / median(b)).toBeCloseTo(0.525);
  });

  it('ratioSpread gives the lowest and highest per-round ratio', () => {
    expect(ratioSpread([1, 3, 2], [2, 2, 2])).toEqual([0.5, 1.5]);
    expect(ratioSpread([], [])).toEqual([Number.NaN, Number.NaN]);
  });

  it('ratioOfRounds skips rounds where either side has no figure and pairs by index', () => {
    expect(ratioOfRounds([1, Number.NaN, 3], [2, 5, 6])).toBe(0.5);
    expect(ratioOfRounds([1, 2, 3], [2, 4])).toBe(0.5);
    expect(ratioOfRounds([], [])).toBeNaN();
  });
});

describe('evaluate (PASS / FAIL / NOT RUN)', () => {
  const t = (over: Partial<Target>): Target => ({
    id: 'x',
    label: 'x',
    actual: 1,
    op: '<=',
    limit: 1,
    unit: 'ratio',
    ...over,
  });

  it('≤ passes at and below the limit, fails above it, on the unrounded figure', () => {
    expect(evaluate(t({ actual: 0.7, limit: 0.7 })).verdict).toBe('PASS');
    expect(evaluate(t({ actual: 0.5, limit: 0.7 })).verdict).toBe('PASS');
    expect(evaluate(t({ actual: 0.7001, limit: 0.7 })).verdict).toBe('FAIL');
    expect(evaluate(t({ actual: 1.034, limit: 1.03 })).verdict).toBe('FAIL');
  });

  it('≥ passes at and above the limit', () => {
    expect(evaluate(t({ op: '>=', actual: 1.5, limit: 1.5 })).verdict).toBe('PASS');
    expect(evaluate(t({ op: '>=', actual: 1.49, limit: 1.5 })).verdict).toBe('FAIL');
  });

  it('= on counts is exact: a fractional round-trip count is a FAIL', () => {
    expect(evaluate(t({ op: '==', unit: 'count', actual: 2, limit: 2 })).verdict).toBe('PASS');
    expect(evaluate(t({ op: '==', unit: 'count', actual: 2.05, limit: 2 })).verdict).toBe('FAIL');
    expect(evaluate(t({ op: '==', unit: 'count', actual: 1, limit: 2 })).verdict).toBe('FAIL');
  });

  it('a missing figure is NOT RUN, never PASS', () => {
    expect(evaluate(t({ actual: undefined })).verdict).toBe('NOT RUN');
    expect(evaluate(t({ actual: Number.NaN })).verdict).toBe('NOT RUN');
  });

  it('tally counts each verdict; fmtTarget prints the verdict, the figure and the target', () => {
    const results = [
      evaluate(t({ label: 'REST p50 / @upstash/lock', actual: 0.61234, limit: 0.7 })),
      evaluate(t({ actual: 2 })),
      evaluate(t({ actual: undefined })),
    ];
    expect(tally(results)).toEqual({ PASS: 1, FAIL: 1, 'NOT RUN': 1 });
    expect(fmtTarget(results[0]!)).toBe('PASS    REST p50 / @upstash/lock: 0.612× (target ≤ 0.70×)');
    expect(fmtTarget(results[2]!)).toContain('NOT RUN');
    expect(fmtTarget(results[2]!)).toContain('n/a');
    expect(fmtTarget(evaluate(t({ label: 'rt', op: '==', unit: 'count', actual: 3, limit: 2 })))).toBe(
      'FAIL    rt: 3 (target = 2)',
    );
  });
});

describe('formatting', () => {
  it('fmtMs keeps about three significant digits', () => {
    expect(fmtMs(0.18449)).toBe('0.184');
    expect(fmtMs(1.523)).toBe('1.52');
    expect(fmtMs(23.44)).toBe('23.4');
    expect(fmtMs(412.3)).toBe('412');
    expect(fmtMs(Number.NaN)).toBe('—');
  });

  it('fmtRatio prints two decimals and a dash for no figure', () => {
    expect(fmtRatio(0.6149)).toBe('0.61×');
    expect(fmtRatio(Number.NaN)).toBe('—');
  });
});
