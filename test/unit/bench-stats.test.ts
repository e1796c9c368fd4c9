import { describe, expect, it } from 'vitest';
import { decades } from '../../bench/chart.js';
import { type Contender, type LoadResult, underLoad } from '../../bench/harness.js';
import { scalingTargets, shapeSentence } from '../../bench/report-scaling.js';
import {
  againstBestPeer,
  answeredPercent,
  evaluate,
  fmtMs,
  fmtPercent,
  fmtRatio,
  fmtTarget,
  median,
  percentile,
  ratio,
  ratioOfRounds,
  ratioSpread,
  scalingShape,
  summarize,
  type Target,
  tally,
} from '../../bench/stats.js';
import type { ScalingResult } from '../../bench/suite-scaling.js';

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

describe('scaling helpers', () => {
  it('summarize takes 200,000 samples (no spread into Math.min)', () => {
    const v = Array.from({ length: 200_000 }, (_, i) => i);
    expect(summarize(v)).toMatchObject({ n: 200_000, min: 0, max: 199_999 });
  });

  it('answeredPercent and fmtPercent: one lost call in 4,000 never prints as 100 %', () => {
    expect(answeredPercent(4000, 4000)).toBe(100);
    expect(answeredPercent(3999, 4000)).toBeCloseTo(99.975);
    expect(fmtPercent(answeredPercent(3999, 4000))).toBe('99.9 %');
    expect(fmtPercent(100)).toBe('100 %');
    expect(fmtPercent(answeredPercent(0, 4000))).toBe('0 %');
    expect(answeredPercent(0, 0)).toBeNaN();
    expect(fmtPercent(Number.NaN)).toBe('—');
  });

  it('a percent target: 99.975 % against ≥ 100 % is a FAIL and prints as such', () => {
    const r = evaluate({ id: 'a', label: 'answered', actual: 99.975, op: '>=', limit: 100, unit: 'percent' });
    expect(r.verdict).toBe('FAIL');
    expect(fmtTarget(r)).toBe('FAIL    answered: 99.9 % (target ≥ 100 %)');
  });

  it('againstBestPeer picks the peer with the highest median rate and pairs rounds with it', () => {
    const r = againstBestPeer(
      [100, 120, 90],
      [
        { id: 'slow', rounds: [50, 60, 40] },
        { id: 'fast', rounds: [200, 100, 90] },
        { id: 'none', rounds: [] },
      ],
    );
    expect(r?.peer).toBe('fast');
    expect(r?.ratio).toBe(1); // per round 0.5, 1.2, 1
    expect(r?.spread).toEqual([0.5, 1.2]);
    expect(againstBestPeer([1], [])).toBeUndefined();
    expect(againstBestPeer([1], [{ id: 'x', rounds: [Number.NaN] }])).toBeUndefined();
  });

  it('scalingShape finds where calls/s stops growing by a tenth, and how far p50 grew', () => {
    const pts = (rates: number[]) =>
      [1, 10, 100, 1000].map((concurrency, i) => ({
        concurrency,
        perSecond: rates[i]!,
        p50: concurrency / 2,
      }));
    // Grows to 100, then 1,000 adds only 5 %: the plateau is at 100, the peak at 1,000.
    const flat = scalingShape(pts([1000, 5000, 10_000, 10_500]));
    expect(flat?.plateau.concurrency).toBe(100);
    expect(flat?.peak.concurrency).toBe(1000);
    expect(flat?.stillGrowing).toBe(false);
    expect(flat?.rateGrowth).toBe(10.5);
    expect(flat?.p50Growth).toBe(1000);
    // A dip at 100 that 1,000 recovers from by more than a tenth: still growing.
    expect(scalingShape(pts([1000, 5000, 4000, 6000]))?.stillGrowing).toBe(true);
    // Falls after 10: the plateau is at 10 even though 1,000 is below it.
    expect(scalingShape(pts([1000, 9000, 8000, 6000]))?.plateau.concurrency).toBe(10);
    // Never grows: the plateau is the first level.
    expect(scalingShape(pts([1000, 1050, 900, 800]))?.plateau.concurrency).toBe(1);
    // Order of input does not matter; levels without a rate are left out.
    const shuffled = scalingShape([...pts([1000, 5000, 10_000, 10_500])].reverse());
    expect(shuffled?.plateau.concurrency).toBe(100);
    expect(scalingShape([{ concurrency: 1, perSecond: Number.NaN, p50: 1 }])).toBeUndefined();
  });

  it("shapeSentence states the run's own figures", () => {
    const shape = scalingShape([
      { concurrency: 1, perSecond: 1000, p50: 0.5 },
      { concurrency: 100, perSecond: 10_000, p50: 9 },
      { concurrency: 1000, perSecond: 10_100, p50: 95 },
    ]);
    const text = shapeSentence('oncely lock', shape);
    expect(text).toContain('grew from 1,000/s at 1 to 10,000/s at 100 and stopped growing there');
    expect(text).toContain('p50 went from 0.500 ms to 95.0 ms (190×)');
    expect(text).toContain('1,000 ÷ its calls/s = 99.0 ms');
  });
});

describe('scalingTargets', () => {
  const cell = (
    id: string,
    concurrency: number,
    rates: number[],
    answered = 100,
    calls = 100,
  ): LoadResult => ({
    id,
    label: id,
    concurrency,
    calls,
    answered,
    errors:
      answered < calls ? { StoreUnavailableError: { count: calls - answered, example: 'no reply' } } : {},
    summary: summarize([1, 2, 3]),
    rounds: rates.map((perSecond) => ({ perSecond, calls, answered })),
  });
  const run = (oncelyAnswered: number): ScalingResult => ({
    sizes: { concurrency: [1, 1000], rounds: 3, durationMs: 100, callTimeoutMs: 1000 },
    groups: [
      {
        transport: 'REST',
        op: 'lock',
        ids: ['oncely', 'upstash-lock'],
        clients: {},
        cells: [
          cell('oncely', 1, [10, 10, 10]),
          cell('upstash-lock', 1, [20, 20, 20]),
          cell('oncely', 1000, [120, 110, 100], oncelyAnswered),
          cell('upstash-lock', 1000, [100, 100, 100]),
        ],
      },
      {
        transport: 'REST',
        op: 'once',
        ids: ['oncely'],
        clients: {},
        cells: [cell('oncely', 1000, [50, 50, 50])],
      },
    ],
  });
  const byId = (ts: Target[]) => new Map(ts.map((t) => [t.id, evaluate(t)]));

  it('PASS at 1,000 when oncely answers every call and is at least as fast as the best peer', () => {
    const t = byId(scalingTargets(run(100)));
    expect(t.get('scale.REST.answered')).toMatchObject({ actual: 100, verdict: 'PASS' });
    expect(t.get('scale.REST.lock.rate')).toMatchObject({ actual: 1.1, verdict: 'PASS' });
    expect(t.get('scale.REST.lock.rate')?.label).toContain('1,000 concurrent');
  });

  it('FAIL when one call in a hundred went unanswered, whatever the rate', () => {
    const t = byId(scalingTargets(run(99)));
    expect(t.get('scale.REST.answered')).toMatchObject({ actual: 99, verdict: 'FAIL' });
    expect(t.get('scale.REST.answered')?.note).toBe('lowest: lock acquire + release');
  });

  it('NOT RUN for transports and peers the run did not measure, and when the suite did not run', () => {
    const t = byId(scalingTargets(run(100)));
    expect(t.get('scale.TCP.answered')?.verdict).toBe('NOT RUN');
    expect(t.get('scale.cluster.once.rate')?.verdict).toBe('NOT RUN');
    const skipped = byId(scalingTargets({ skipped: 'not selected (--only)' }));
    expect([...skipped.values()].every((r) => r.verdict === 'NOT RUN')).toBe(true);
    expect(skipped.get('scale.REST.answered')?.note).toBe('not selected (--only)');
    expect(byId(scalingTargets(undefined)).size).toBe(8);
  });
});

describe('underLoad (calls counted per cell)', () => {
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  class StoreUnavailableError extends Error {
    override name = 'StoreUnavailableError';
  }

  it('counts answered calls, errors by name and calls with no answer, with never more in flight than asked', async () => {
    let inFlight = 0;
    let most = 0;
    const track = async (work: () => Promise<void>) => {
      inFlight++;
      most = Math.max(most, inFlight);
      try {
        await work();
      } finally {
        inFlight--;
      }
    };
    const contenders: Contender[] = [
      { id: 'ok', label: 'ok', op: () => track(() => sleep(2)) },
      {
        id: 'flaky',
        label: 'flaky',
        op: (_key, i) =>
          track(async () => {
            await sleep(2);
            if (i % 2 === 0) throw new StoreUnavailableError('no reply within 2000 ms');
          }),
      },
      // Never answers after its warm-up call: the harness's bound ends each worker's round.
      {
        id: 'hang',
        label: 'hang',
        op: (key) => (key.includes(':warm:') ? sleep(1) : new Promise<void>(() => {})),
      },
    ];
    const results = await underLoad(contenders, {
      concurrency: 3,
      rounds: 2,
      durationMs: 40,
      callTimeoutMs: 60,
      tag: 't',
    });
    const [ok, flaky, hang] = results;
    expect(ok!.calls).toBeGreaterThanOrEqual(6); // every worker makes at least one call per round
    expect(ok!.answered).toBe(ok!.calls);
    expect(ok!.errors).toEqual({});
    expect(flaky!.answered + flaky!.errors.StoreUnavailableError!.count).toBe(flaky!.calls);
    expect(flaky!.errors.StoreUnavailableError!.count).toBeGreaterThanOrEqual(6); // every first call
    expect(flaky!.errors.StoreUnavailableError!.example).toBe('no reply within 2000 ms');
    expect(hang).toMatchObject({ calls: 6, answered: 0 }); // 3 workers × 2 rounds, one call each
    expect(hang!.errors['no answer']!.count).toBe(6);
    expect(hang!.summary.p50).toBeGreaterThanOrEqual(59);
    expect(hang!.rounds.map((r) => r.perSecond)).toEqual([0, 0]);
    expect(most).toBeLessThanOrEqual(3);
  });
});

describe('decades, the log axis of the scaling chart', () => {
  it('covers the values with powers of ten, at least two', () => {
    expect(decades(137, 16_193)).toEqual([100, 1000, 10_000, 100_000]);
    expect(decades(1000, 1000)).toEqual([1000, 10_000]);
    expect(decades(2, 9)).toEqual([1, 10]);
  });
});
