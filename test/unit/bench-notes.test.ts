/**
 * The notes of docs/benchmarks.md carry only the run's own figures (issue 27): rendered from two fake runs
 * whose every measured figure differs, the two texts may share a number at the same place only where it is
 * configuration (a target's limit, a constant of the suites); a figure of an earlier run written into the
 * generator would be the same in both and fails here, as does any figure from the list of past measurements.
 */
import { describe, expect, it } from 'vitest';
import type { ColdResult } from '../../bench/bundles.js';
import type { ConcurrentResult, SequentialResult } from '../../bench/harness.js';
import { notes } from '../../bench/notes.js';
import { CONFIG } from '../../bench/once-config.js';
import { type BenchData, targets } from '../../bench/report.js';
import type { LockCounts, OpCount } from '../../bench/roundtrips.js';
import { type Evaluated, fmtCount, fmtMs, fmtRatio, fmtValue } from '../../bench/stats.js';
import type { LockSuiteResult } from '../../bench/suite-locks.js';
import { BATCH_CALLS } from '../../layers/oncely/src/transport/upstash-client.js';

/** One fake run: `k(id)` scales every measured figure of a contender; `bump` moves every count. */
interface Variant {
  k: (id: string) => number;
  bump: number;
  workers: number;
  cores: number;
  load: number[];
}

const ROUNDS = [0.95, 1, 1.05];

function seq(v: Variant, id: string, p50Ms: number, cpuUs: number, server: Record<string, number>) {
  const k = v.k(id);
  const result: SequentialResult = {
    id,
    label: `label ${id}`,
    client: `client of ${id}`,
    summary: {
      n: 3,
      p50: p50Ms * k,
      p90: 2 * p50Ms * k,
      p99: 3 * p50Ms * k,
      mean: p50Ms * k,
      min: p50Ms * k * 0.9,
      max: 4 * p50Ms * k,
    },
    rounds: ROUNDS.map((f) => ({
      p50: p50Ms * k * f,
      p99: 3 * p50Ms * k * f,
      cpuUs: cpuUs * k * f,
      serverUs: Object.fromEntries(Object.entries(server).map(([n, x]) => [n, x * k * f])),
    })),
  };
  return result;
}

function conc(v: Variant, id: string, perSecond: number): ConcurrentResult {
  const k = v.k(id);
  return {
    id,
    label: `label ${id}`,
    perSecond: perSecond * k,
    rounds: ROUNDS.map((f) => ({ perSecond: perSecond * k * f, cpuUs: 40 * k * f, serverUs: {} })),
  };
}

const op = (v: Variant, n: number): OpCount => ({
  roundTrips: n + v.bump,
  commands: `evalsha ${n + v.bump} · get ${2 * (n + v.bump)}`,
});
const lockCounts = (v: Variant): LockCounts => ({ acquire: op(v, 1), extend: op(v, 1), release: op(v, 1) });

function lockSuite(
  v: Variant,
  name: string,
  rows: [id: string, p50Ms: number, cpuUs: number, perSecond: number][],
  servers: string[],
): LockSuiteResult {
  const server = (cpu: number) => Object.fromEntries(servers.map((s, i) => [s, cpu * (0.4 + 0.1 * i)]));
  return {
    name,
    ids: rows.map(([id]) => id),
    sequential: rows.map(([id, p50, cpu]) => seq(v, `${id}`, p50, cpu, server(cpu))),
    concurrent: rows.map(([id, , , rate]) => conc(v, id, rate)),
    counts: Object.fromEntries(rows.map(([id]) => [id, lockCounts(v)])),
  };
}

function cold(v: Variant, id: string, loadMs: number, firstMs: number): ColdResult {
  const k = v.k(`cold:${id}`);
  return {
    id,
    label: `label ${id}`,
    samples: ROUNDS.map((f) => (loadMs + firstMs) * k * f),
    load: loadMs * k,
    first: firstMs * k,
    total: (loadMs + firstMs) * k,
    boot: 31 * k,
  };
}

function fakeRun(v: Variant): BenchData {
  const redis = ['redis'];
  const bundle = (id: string, bytes: number, byPackage: Record<string, number>) => {
    const k = v.k(`bundle:${id}`);
    return {
      id,
      label: `label ${id}`,
      bytes: bytes * k,
      gzipBytes: Math.round((bytes * k) / 3),
      byPackage: Object.fromEntries(Object.entries(byPackage).map(([p, n]) => [p, Math.round(n * k)])),
      bundle: `${id}.mjs`,
    };
  };
  const onceCounts = (first: number, duplicate: number) => ({
    first: op(v, first),
    duplicate: op(v, duplicate),
  });
  return {
    mode: 'full',
    startedAt: '2026-12-07T00:00:00Z',
    durationS: 300 * v.k('duration'),
    machine: {
      cpu: 'fake CPU',
      cores: v.cores,
      memoryGiB: 8,
      os: 'Linux',
      node: 'v20.0.0',
      redis: '7.2.0',
      loadAverage: v.load,
    },
    sizes: { rounds: 10, perRound: 1000, warmup: 300, workers: v.workers, durationMs: 1000, countN: 20 },
    commit: 'abcdef0',
    ceiling: [
      { label: 'SET', clients: 1, rps: 20_000 * v.k('ceiling'), p50: 0.047 * v.k('ceiling'), p99: 0.2 },
    ],
    tcp: lockSuite(
      v,
      'TCP',
      [
        ['oncely', 0.213, 37, 9000],
        ['raw', 0.171, 29, 11_000],
        ['redlock', 0.187, 33, 10_500],
        ['raw-fenced', 0.197, 31, 9800],
        ['oncely-own', 0.229, 39, 8700],
        ['oncely-cluster', 0.263, 44, 7100],
      ],
      redis,
    ),
    rest: lockSuite(
      v,
      'REST',
      [
        ['oncely', 0.517, 91, 4100],
        ['oncely-before', 0.483, 83, 4300],
        ['upstash-lock', 0.811, 133, 2900],
        ['raw', 0.733, 121, 3100],
      ],
      ['gateway', 'redis'],
    ),
    redlock: [3, 5].map((n) =>
      lockSuite(
        v,
        `Redlock ${n}`,
        [
          ['oncely', 0.3 * n, 20 * n, 3000 / n],
          ['redlock', 0.27 * n, 17 * n, 3400 / n],
        ],
        Array.from({ length: n }, (_, i) => `redis${i}`),
      ),
    ),
    once: {
      first: [
        seq(v, 'oncely', 0.331, 47, { redis: 23, gateway: 0 }),
        seq(v, 'powertools', 0.307, 44, { redis: 13, gateway: 0 }),
        seq(v, 'oncely-rest', 1.17, 139, { redis: 25, gateway: 61 }),
        seq(v, 'raw-once', 0.219, 29, { redis: 21, gateway: 0 }),
      ],
      duplicate: [
        seq(v, 'oncely', 0.143, 24, { redis: 11, gateway: 0 }),
        seq(v, 'powertools', 0.257, 45, { redis: 12, gateway: 0 }),
        seq(v, 'oncely-rest', 0.611, 71, { redis: 12, gateway: 33 }),
        seq(v, 'raw-once', 0.089, 15, { redis: 10, gateway: 0 }),
        seq(v, 'oncely-cached', 0.0137, 11, { redis: 0.02, gateway: 0 }),
        seq(v, 'powertools-cached', 0.0191, 17, { redis: 0.02, gateway: 0 }),
      ],
      batch: [
        seq(v, 'batch:oncely', 1.37, 311, { redis: 143 }),
        seq(v, 'batch:powertools', 1.13, 397, { redis: 91 }),
      ].map((r) => ({ ...r, id: r.id.replace('batch:', '') })),
      counts: {
        oncely: onceCounts(2, 1),
        'oncely-cached': onceCounts(2, 0),
        powertools: onceCounts(2, 2),
        'powertools-cached': onceCounts(2, 0),
        'oncely-rest': onceCounts(2, 1),
      },
      batchCounts: { oncely: op(v, 2), powertools: op(v, 2) },
    },
    replicas: { skipped: 'not selected (--only)' },
    scaling: { skipped: 'not selected (--only)' },
    bundles: [
      bundle('oncely-rest', 150_000, { oncely: 45_000, '@upstash/redis': 100_000, entry: 5000 }),
      bundle('oncely-rest-index', 230_000, { oncely: 100_000, '@upstash/redis': 125_000, entry: 5000 }),
      bundle('oncely-rest-before', 110_000, { oncely: 105_000, entry: 5000 }),
      bundle('oncely-tcp', 300_000, { oncely: 40_000, ioredis: 255_000, entry: 5000 }),
      bundle('oncely-tcp-index', 360_000, { oncely: 95_000, ioredis: 260_000, entry: 5000 }),
      bundle('oncely-rest-entry', 127_000, { oncely: 60_000, '@upstash/redis': 67_000 }),
      bundle('oncely-tcp-entry', 240_000, {
        oncely: 60_000,
        ioredis: 170_000,
        '@aws-lambda-powertools/jmespath': 10_000,
      }),
      bundle('upstash-lock', 110_000, { '@upstash/lock': 9000, '@upstash/redis': 101_000 }),
      bundle('upstash-redis', 100_000, { '@upstash/redis': 100_000 }),
      bundle('ioredis', 200_000, { ioredis: 200_000 }),
      bundle('redlock', 215_000, { redlock: 15_000, ioredis: 200_000 }),
    ],
    cold: [
      cold(v, 'oncely-rest', 13.3, 19.7),
      cold(v, 'oncely-rest-index', 17.9, 16.1),
      cold(v, 'upstash-lock', 19.1, 23.9),
    ],
  };
}

/** Every target of the run as a FAIL, so that every row's paragraph is rendered (scaling did not run). */
const allFailed = (d: BenchData): Evaluated[] =>
  targets(d)
    .filter((r) => !r.id.startsWith('scale.'))
    .map((r) => ({ ...r, verdict: 'FAIL' }));

/** The numbers of a text, in order ("issue 14" is a name, not a figure). */
const numbers = (text: string) => located(text).map((x) => x.n);

/** Each number of a text with the words around it, for a readable failure. */
const located = (text: string) =>
  [...text.replace(/issue \d+/g, 'issue').matchAll(/(?<![\w.,])\d+(?:[.,]\d+)*/g)].map((m) => ({
    n: m[0],
    at: m.input.slice(Math.max(0, m.index - 50), m.index + m[0].length + 10),
  }));

/** Distinct scale factors, at least 25 % apart, so every figure and every ratio between contenders moves. */
function scales(): (id: string) => number {
  const seen = new Map<string, number>();
  return (id) => {
    let k = seen.get(id);
    if (k === undefined) {
      k = 1.3 * 1.25 ** seen.size;
      seen.set(id, k);
    }
    return k;
  };
}

const A: Variant = { k: () => 1, bump: 0, workers: 50, cores: 2, load: [1.11, 2.22, 3.33] };
const B: Variant = { k: scales(), bump: 2, workers: 64, cores: 8, load: [4.44, 5.55, 6.66] };

/**
 * Figures the notes may print alike for both runs: configuration (the targets' limits as printed, the suites'
 * constants) and what the results themselves say alike (the rows' labels, how many rows failed).
 */
function configured(results: readonly Evaluated[]): Set<string> {
  const out = new Set<string>([String(results.filter((r) => r.verdict === 'FAIL').length)]);
  for (const r of results) for (const n of numbers(`${fmtValue(r.unit, r.limit)} ${r.label}`)) out.add(n);
  for (const x of [BATCH_CALLS, CONFIG.batchSize, CONFIG.localCacheEntries, CONFIG.duplicatePool])
    out.add(fmtCount(x));
  return out;
}

/** Measurements of earlier runs that the generator used to print as this run's (now in docs/bench-history.md). */
const HISTORICAL = [
  '0.659× and 1.376×',
  '0.645× p50 and 1.353×',
  'The row passed (0.561×)',
  '0.729× vs 0.728×',
  '2.113× → 1.999×',
  '3.01× to 2.28×',
  '0.52–0.59×',
  '0.54–0.62×',
  '0.55–0.68×',
  '8.1 → 3.7',
  '12.4–13.3',
  '8.8–9.2',
  '48.5 → 47.1',
  '25.9 → 24.7',
  '44.6 KiB',
  '98.3 KiB',
  '240 004',
  '127 183',
  '12–14 KiB',
  '30.5 and 33.6',
  '29.5–30.1',
  '37.0–37.6',
  '42–47 µs',
  '16.2–16.6',
  '21–23 µs',
  '22–31 ms',
  '10–14 ms',
  '0.2–1 ms',
  '0.05–0.25 %',
  '104 → 98',
  '72–86 µs',
];

describe('bench notes: only the figures of the run they are given', () => {
  const dA = fakeRun(A);
  const dB = fakeRun(B);
  const rA = allFailed(dA);
  const rB = allFailed(dB);
  const textA = notes(dA, rA);
  const textB = notes(dB, rB);

  it('renders a paragraph for every row left FAIL, from either run', () => {
    for (const [text, results] of [
      [textA, rA],
      [textB, rB],
    ] as const) {
      for (const r of results.filter((x) => !x.id.startsWith('rt.'))) expect(text).toContain(`**${r.label}:`);
    }
  });

  it('prints no measurement of an earlier run', () => {
    for (const text of [textA, textB]) for (const h of HISTORICAL) expect(text).not.toContain(h);
  });

  it('every number that does not change with the results is a target or a configured constant', () => {
    const a = located(textA);
    const b = numbers(textB);
    expect(b.length).toBe(a.length); // the same sentences, other figures
    const allowed = configured(rA);
    const fixed = a.filter((x, i) => x.n === b[i] && !allowed.has(x.n)).map((x) => `${x.n} in "${x.at}"`);
    expect(fixed).toEqual([]);
  });

  it("prints each run's own figures: p50s, ratios, CPU, counts, sizes and load", () => {
    for (const [d, text, r] of [
      [dA, textA, rA],
      [dB, textB, rB],
    ] as const) {
      const once = d.once as Exclude<BenchData['once'], { skipped: string }>;
      const p50 = (rows: SequentialResult[], id: string) =>
        `${fmtMs(rows.find((x) => x.id === id)!.summary.p50)} ms`;
      expect(text).toContain(p50(once.duplicate, 'oncely-cached'));
      expect(text).toContain(p50(once.duplicate, 'powertools-cached'));
      expect(text).toContain(p50(once.first, 'powertools'));
      const first = r.find((x) => x.id === 'once.first')!;
      expect(text).toContain(`${fmtRatio(first.actual!, 3)} (single rounds ranged`);
      expect(text).toContain(`Under ${d.sizes.workers} workers`);
      expect(text).toContain(`on ${d.machine.cores} cores`);
      expect(text).toContain(d.machine.loadAverage.map((x) => x.toFixed(1)).join(' '));
      expect(text).toContain(`oncely ${fmtCount(once.batchCounts.oncely!.roundTrips)}, Powertools`);
      // The CPU rows' paragraphs: both sides' client CPU per pair, medians of this run's rounds.
      const tcp = d.tcp as LockSuiteResult;
      for (const id of ['oncely', 'redlock']) {
        const cpu = tcp.sequential.find((x) => x.id === id)!.rounds.map((x) => x.cpuUs)[1]!;
        expect(text).toMatch(new RegExp(`client CPU per pair \\([^)]*\\): .*${Math.round(cpu)} µs`));
      }
      const limit = r.find((x) => x.id === 'size.rest.entry')!.limit;
      expect(text).toContain(`≤ ${fmtRatio(limit)}`);
    }
  });
});
