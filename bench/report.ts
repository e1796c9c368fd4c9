/**
 * Turns one run's figures into the targets' verdicts, the console summary and docs/benchmarks.md. Everything
 * here is derived from the run: a figure the run did not produce is shown as "not run", never filled in.
 */

import type { BundleSize, ColdResult } from './bundles.js';
import type { CeilingRow } from './ceiling.js';
import type { ConcurrentResult, SequentialResult } from './harness.js';
import { cpuTargets, lockServers, serverRounds } from './report-cpu.js';
import { scalingSection, scalingTargets } from './report-scaling.js';
import type { LockCounts, OpCount } from './roundtrips.js';
import {
  type Evaluated,
  evaluate,
  fmtBytes,
  fmtCount,
  fmtMs,
  fmtRate,
  fmtRatio,
  fmtTarget,
  fmtValue,
  median,
  ratio,
  ratioOfRounds,
  ratioSpread,
  type Target,
  tally,
} from './stats.js';
import { type EffectsSuiteResult, effectsSection, effectsSummary, effectsTargets } from './suite-effects.js';
import { type LatencySuiteResult, latencySection } from './suite-latency.js';
import type { LockSuiteResult, Sizes } from './suite-locks.js';
import { ONCE_WARMUP, type OnceSuiteResult } from './suite-once.js';
import type { ReplicaSuiteResult } from './suite-replicas.js';
import type { ScalingResult } from './suite-scaling.js';

export type Skipped = { skipped: string };
export const isSkipped = (x: unknown): x is Skipped =>
  typeof x === 'object' && x !== null && 'skipped' in (x as Record<string, unknown>);

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  redis: string;
  loadAverage: number[];
}

export interface BenchData {
  mode: 'full' | 'quick';
  startedAt: string;
  durationS: number;
  machine: Machine;
  sizes: Sizes;
  commit: string;
  ceiling: CeilingRow[] | Skipped;
  tcp: LockSuiteResult | Skipped;
  rest: LockSuiteResult | Skipped;
  redlock: (LockSuiteResult | Skipped)[];
  once: OnceSuiteResult | Skipped;
  /** Absent in reports written before the suite existed. */
  replicas?: ReplicaSuiteResult | Skipped;
  /** Absent in reports written before the suite existed. */
  scaling?: ScalingResult | Skipped;
  /** The lock pair and withOnce rows through a 0.5-2 ms delay proxy. Absent in older reports. */
  latency?: LatencySuiteResult | Skipped;
  /** Absent in reports written before the suite existed. */
  effects?: EffectsSuiteResult | Skipped;
  bundles: BundleSize[] | Skipped;
  cold: ColdResult[] | Skipped;
}

// ---------------------------------------------------------------------------------------------- lookups

const find = <T extends { id: string }>(xs: readonly T[] | undefined, id: string) =>
  xs?.find((x) => x.id === id);
const p50Rounds = (r: SequentialResult | undefined) => r?.rounds.map((x) => x.p50) ?? [];
const rateRounds = (r: ConcurrentResult | undefined) => r?.rounds.map((x) => x.perSecond) ?? [];
const suite = (x: LockSuiteResult | Skipped) => (isSkipped(x) ? undefined : x);

/** p50 ratio and pairs/s ratio of `id` against `base`, per-round medians. */
function lockRatios(s: LockSuiteResult | undefined, id: string, base: string) {
  const p = [p50Rounds(find(s?.sequential, id)), p50Rounds(find(s?.sequential, base))] as const;
  const r = [rateRounds(find(s?.concurrent, id)), rateRounds(find(s?.concurrent, base))] as const;
  return {
    p50: ratioOfRounds(...p),
    p50Spread: ratioSpread(...p),
    rate: ratioOfRounds(...r),
    rateSpread: ratioSpread(...r),
  };
}

function bundleRatio(b: BundleSize[] | undefined, id: string, base: string): number {
  return ratio(find(b, id)?.bytes, find(b, base)?.bytes);
}

// ---------------------------------------------------------------------------------------------- targets

export function targets(d: BenchData): Evaluated[] {
  const tcp = suite(d.tcp);
  const rest = suite(d.rest);
  const once = isSkipped(d.once) ? undefined : d.once;
  const bundles = isSkipped(d.bundles) ? undefined : d.bundles;
  const cold = isSkipped(d.cold) ? undefined : d.cold;
  const t: Target[] = [];
  const notRun = (what: Skipped | undefined) => (what ? what.skipped : undefined);

  for (const [name, s, raw] of [
    ['TCP', tcp, d.tcp],
    ['REST', rest, d.rest],
  ] as const) {
    for (const op of ['acquire', 'extend', 'release'] as const) {
      t.push({
        id: `rt.${name}.${op}`,
        label: `round trips, lock ${op} (${name})`,
        actual: s?.counts.oncely?.[op].roundTrips,
        op: '==',
        limit: 1,
        unit: 'count',
        note: notRun(isSkipped(raw) ? raw : undefined),
      });
    }
  }
  for (const [id, name] of [
    ['oncely', 'TCP'],
    ['oncely-rest', 'REST'],
  ] as const) {
    t.push({
      id: `rt.once.first.${name}`,
      label: `round trips, withOnce first call (${name})`,
      actual: once?.counts[id]?.first.roundTrips,
      op: '==',
      limit: 2,
      unit: 'count',
      note: notRun(isSkipped(d.once) ? d.once : undefined),
    });
    t.push({
      id: `rt.once.dup.${name}`,
      label: `round trips, withOnce duplicate (${name})`,
      actual: once?.counts[id]?.duplicate.roundTrips,
      op: '==',
      limit: 1,
      unit: 'count',
      note: notRun(isSkipped(d.once) ? d.once : undefined),
    });
  }
  t.push({
    id: 'rt.sqs',
    label: 'round trips, SQS batch of 10 (TCP)',
    actual: once?.batchCounts.oncely?.roundTrips,
    op: '==',
    limit: 2,
    unit: 'count',
    note: notRun(isSkipped(d.once) ? d.once : undefined),
  });

  // Library overhead (the same two scripts sent from bare ioredis) and the fenced lock against the best
  // unfenced peer (node-redlock on the same client). The old rows against raw SET NX compared a fenced lock
  // with an unfenced one.
  const tcpOwn = lockRatios(tcp, 'oncely', 'raw-fenced');
  t.push({
    id: 'tcp.p50.own',
    label: "TCP pair p50 / oncely's own scripts from bare ioredis",
    actual: tcpOwn.p50,
    spread: tcpOwn.p50Spread,
    op: '<=',
    limit: 1.03,
    unit: 'ratio',
  });
  const tcpRl = lockRatios(tcp, 'oncely', 'redlock');
  t.push({
    id: 'tcp.p50.redlock',
    label: 'TCP pair p50 / node-redlock on the same client',
    actual: tcpRl.p50,
    spread: tcpRl.p50Spread,
    op: '<=',
    limit: 1.0,
    unit: 'ratio',
  });
  t.push({
    id: 'tcp.rate.redlock',
    label: `TCP pairs/s (${d.sizes.workers} workers) / node-redlock`,
    actual: tcpRl.rate,
    spread: tcpRl.rateSpread,
    op: '>=',
    limit: 1.05,
    unit: 'ratio',
  });
  for (const [i, r] of d.redlock.entries()) {
    const s = suite(r);
    const n = s?.name.replace(/^Redlock /, '') ?? String([3, 5][i] ?? '?');
    const rl = lockRatios(s, 'oncely', 'redlock');
    t.push({
      id: `redlock${n}.p50`,
      label: `Redlock ${n} masters, pair p50 / node-redlock`,
      actual: rl.p50,
      spread: rl.p50Spread,
      op: '<=',
      limit: 1.0,
      unit: 'ratio',
      note: notRun(isSkipped(r) ? r : undefined),
    });
    t.push({
      id: `redlock${n}.rate`,
      label: `Redlock ${n} masters, pairs/s / node-redlock`,
      actual: rl.rate,
      spread: rl.rateSpread,
      op: '>=',
      limit: 1.05,
      unit: 'ratio',
      note: notRun(isSkipped(r) ? r : undefined),
    });
  }
  const restR = lockRatios(rest, 'oncely', 'upstash-lock');
  t.push({
    id: 'rest.p50',
    label: 'REST pair p50 / @upstash/lock',
    actual: restR.p50,
    spread: restR.p50Spread,
    op: '<=',
    limit: 0.6,
    unit: 'ratio',
  });
  t.push({
    id: 'rest.rate',
    label: 'REST pairs/s / @upstash/lock',
    actual: restR.rate,
    spread: restR.rateSpread,
    op: '>=',
    limit: 1.5,
    unit: 'ratio',
  });
  const coldPair = [
    find(cold, 'oncely-rest')?.samples ?? [],
    find(cold, 'upstash-lock')?.samples ?? [],
  ] as const;
  t.push({
    id: 'rest.cold',
    label: 'REST cold start to first lock (oncely/locks) / @upstash/lock',
    actual: ratioOfRounds(...coldPair),
    spread: ratioSpread(...coldPair),
    op: '<=',
    limit: 0.6,
    unit: 'ratio',
  });
  // The TCP side of the same (issue 23): oncely/locks and oncely/ioredis from the layer, the store created
  // where a function creates it, against redlock + ioredis bundled into the function.
  const tcpColdPair = [
    find(cold, 'oncely-tcp')?.samples ?? [],
    find(cold, 'redlock')?.samples ?? [],
  ] as const;
  t.push({
    id: 'tcp.cold',
    label: 'TCP cold start to first lock (oncely/locks + oncely/ioredis) / redlock + ioredis',
    actual: ratioOfRounds(...tcpColdPair),
    spread: ratioSpread(...tcpColdPair),
    op: '<=',
    limit: 1.0,
    unit: 'ratio',
  });
  // Like for like: the cached row against Powertools with its own local cache on (useLocalCache, the same
  // size), both answering a duplicate from memory; no round trip on either side.
  for (const [kind, id, label, limit] of [
    ['first', 'oncely', 'first call', 0.95],
    ['duplicate', 'oncely', 'duplicate', 0.5],
    ['duplicate', 'oncely-cached', 'duplicate, warm container, both local caches on,', 1.0],
  ] as const) {
    const rs = once?.[kind];
    const pair = [p50Rounds(find(rs, id)), p50Rounds(find(rs, peerOf(id)))] as const;
    t.push({
      id: `once.${kind}${id === 'oncely' ? '' : '.cached'}`,
      label: `withOnce ${label} p50 / Powertools (TCP)`,
      actual: ratioOfRounds(...pair),
      spread: ratioSpread(...pair),
      op: '<=',
      limit,
      unit: 'ratio',
      note: notRun(isSkipped(d.once) ? d.once : undefined),
    });
  }
  const batchPair = [
    p50Rounds(find(once?.batch, 'oncely')),
    p50Rounds(find(once?.batch, 'powertools')),
  ] as const;
  t.push({
    id: 'once.batch',
    label: 'SQS batch of 10, batch p50 / Powertools BatchProcessor + makeIdempotent (TCP)',
    actual: ratioOfRounds(...batchPair),
    spread: ratioSpread(...batchPair),
    op: '<=',
    limit: 0.8,
    unit: 'ratio',
    note: notRun(isSkipped(d.once) ? d.once : undefined),
  });
  t.push({
    id: 'rt.once.dup.cached',
    label: 'round trips, withOnce duplicate, warm container with the local cache on (TCP)',
    actual: once?.counts['oncely-cached']?.duplicate.roundTrips,
    op: '==',
    limit: 0,
    unit: 'count',
    note: notRun(isSkipped(d.once) ? d.once : undefined),
  });
  // Client and server CPU per operation on every row of issue 23's table, per-round ratios like the rest.
  t.push(...cpuTargets(d));
  // The REST path now carries @upstash/redis itself (issue 14), so these compare like with like: the lock
  // entry against @upstash/lock on the same client, and the whole layer against that client alone (oncely's
  // every feature may add at most the client's own weight). See the Bytes note.
  t.push({
    id: 'size.rest.layer',
    label: 'layer REST path bytes / @upstash/redis alone (client included in both)',
    actual: bundleRatio(bundles, 'oncely-rest-index', 'upstash-redis'),
    op: '<=',
    limit: 1.35,
    unit: 'ratio',
  });
  t.push({
    id: 'size.rest.entry',
    label: 'REST lock entry bytes / @upstash/lock + @upstash/redis (same client)',
    actual: bundleRatio(bundles, 'oncely-rest-entry', 'upstash-lock'),
    op: '<=',
    limit: 1.15,
    unit: 'ratio',
  });
  t.push({
    id: 'size.tcp.entry',
    label: 'TCP lock entry bytes / ioredis alone',
    actual: bundleRatio(bundles, 'oncely-tcp-entry', 'ioredis'),
    op: '<=',
    limit: 1.1,
    unit: 'ratio',
  });
  t.push({
    id: 'size.tcp.layer',
    label: 'layer TCP path bytes / ioredis alone',
    actual: bundleRatio(bundles, 'oncely-tcp-index', 'ioredis'),
    op: '<=',
    limit: 1.25,
    unit: 'ratio',
  });
  t.push(...scalingTargets(d.scaling));
  t.push(...effectsTargets(d.effects));
  return t.map(evaluate);
}

// ---------------------------------------------------------------------------------------------- tables

type Row = string[];

function replicaTable(r: ReplicaSuiteResult): string {
  const wait = find(r.sequential, 'wait');
  const none = find(r.sequential, 'no-wait');
  const rows = [wait, none].flatMap((x) =>
    x
      ? [
          [
            x.label,
            clientOf(x),
            fmtMs(x.summary.p50),
            fmtMs(x.summary.p99),
            x === wait ? fmtRatio(ratioOfRounds(p50Rounds(wait), p50Rounds(none))) : '1',
          ],
        ]
      : [],
  );
  return [
    table(['contender', 'client', 'pair p50 ms', 'pair p99 ms', 'p50 / no wait'], rows, [
      'l',
      'l',
      'r',
      'r',
      'r',
    ]),
    '',
    'With the wait, acquire is followed by WAIT 1 in the same pipeline (one round trip, plus the time the',
    "replica takes to acknowledge); release grants nothing and does not wait. See README's replica section.",
  ].join('\n');
}

function table(header: Row, rows: Row[], align?: ('l' | 'r')[]): string {
  const a = align ?? header.map((h, i) => (i === 0 || h === 'client' ? 'l' : 'r'));
  const sep = a.map((x) => (x === 'r' ? '---:' : ':---'));
  const line = (r: Row) => `| ${r.join(' | ')} |`;
  return [line(header), line(sep), ...rows.map(line)].join('\n');
}

const us = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');
const medianOf = (xs: number[]) => median(xs.filter((x) => Number.isFinite(x)));
const clientUs = (r?: { rounds: { cpuUs: number }[] }) => medianOf(r?.rounds.map((x) => x.cpuUs) ?? []);
const serverUs = (r: { rounds: { serverUs: Record<string, number> }[] } | undefined, name: string) =>
  medianOf(r?.rounds.map((x) => x.serverUs[name] ?? Number.NaN) ?? []);

/** The client a row's contender talks through ('—' in reports written before rows named it). */
const clientOf = (r: { client?: string }) => r.client ?? '—';

/** The Powertools row an oncely run-once row is compared with: its local cache on where oncely's is. */
const peerOf = (id: string) => (id.endsWith('-cached') ? 'powertools-cached' : 'powertools');

function rt(c: OpCount | undefined): string {
  return c ? fmtCount(c.roundTrips) : '—';
}

function lockTable(s: LockSuiteResult, base: string, server: string, workers: number): string {
  const rows = s.ids.map((id) => {
    const seq = find(s.sequential, id);
    const conc = find(s.concurrent, id);
    const r = lockRatios(s, id, base);
    const counts: LockCounts | undefined = s.counts[id];
    return [
      seq?.label ?? id,
      clientOf(seq ?? {}),
      fmtMs(seq?.summary.p50 ?? Number.NaN),
      fmtMs(seq?.summary.p99 ?? Number.NaN),
      fmtRatio(r.p50),
      fmtRate(conc?.perSecond ?? Number.NaN),
      fmtRatio(r.rate),
      us(clientUs(seq)),
      us(medianOf(serverRounds(seq, lockServers(s, id)))),
      counts ? `${rt(counts.acquire)} / ${rt(counts.extend)} / ${rt(counts.release)}` : '—',
    ];
  });
  const baseLabel = find(s.sequential, base)?.label ?? base;
  return [
    table(
      [
        'contender',
        'client',
        'pair p50 ms',
        'p99 ms',
        `p50 vs ${base}`,
        `pairs/s (${workers} workers)`,
        `pairs/s vs ${base}`,
        'client CPU µs/pair',
        `${server} CPU µs/pair`,
        'round trips acquire / extend / release',
      ],
      rows,
    ),
    '',
    `Ratios are against ${baseLabel}, the median of per-round ratios.` +
      (s.name === 'TCP'
        ? " The cluster row's redis CPU is its three masters'; every other row's is the standalone" +
          " redis-server's (the cluster idles beside it)."
        : ''),
    '',
    table(
      ['contender', 'acquire', 'extend', 'release'],
      s.ids
        .filter((id) => s.counts[id])
        .map((id) => {
          const c = s.counts[id];
          return [
            find(s.sequential, id)?.label ?? id,
            c?.acquire.commands ?? '—',
            c?.extend.commands ?? '—',
            c?.release.commands ?? '—',
          ];
        }),
      ['l', 'l', 'l', 'l'],
    ),
  ].join('\n');
}

function onceTables(o: OnceSuiteResult): string {
  const rows = (kind: 'first' | 'duplicate') =>
    o[kind].map((r) => [
      r.label,
      clientOf(r),
      fmtMs(r.summary.p50),
      fmtMs(r.summary.p99),
      r.id === 'oncely-rest'
        ? 'n/a (REST)'
        : fmtRatio(ratioOfRounds(p50Rounds(r), p50Rounds(find(o[kind], peerOf(r.id))))),
      us(clientUs(r)),
      us(serverUs(r, 'redis')),
      rt(o.counts[r.id]?.[kind]),
      o.counts[r.id]?.[kind].commands ?? '—',
    ]);
  const header = [
    'contender',
    'client',
    'p50 ms',
    'p99 ms',
    'p50 vs Powertools (cache on: vs Powertools cache on)',
    'client CPU µs/call',
    'redis CPU µs/call',
    'round trips',
    'commands',
  ];
  const batch = o.batch.map((r) => [
    r.label,
    clientOf(r),
    fmtMs(r.summary.p50),
    fmtMs(r.summary.p99),
    fmtRatio(ratioOfRounds(p50Rounds(r), p50Rounds(find(o.batch, 'powertools')))),
    us(clientUs(r)),
    us(serverUs(r, 'redis')),
    rt(o.batchCounts[r.id]),
    o.batchCounts[r.id]?.commands ?? '—',
  ]);
  return [
    '### First call (a new event)',
    '',
    table(header, rows('first')),
    '',
    '### Duplicate call (an event already completed)',
    '',
    table(header, rows('duplicate')),
    '',
    '### SQS batch of 10 new records',
    '',
    table(
      [
        'contender',
        'client',
        'batch p50 ms',
        'p99 ms',
        'p50 vs Powertools',
        'client CPU µs/batch',
        'redis CPU µs/batch',
        'round trips',
        'commands',
      ],
      batch,
    ),
  ].join('\n');
}

function bundleTable(b: BundleSize[], cold: ColdResult[] | undefined): string {
  const ref = (id: string) =>
    id.startsWith('oncely-rest') || id === 'upstash-lock'
      ? 'upstash-redis'
      : id.startsWith('oncely-tcp') || id === 'redlock'
        ? 'ioredis'
        : undefined;
  const top = (s: BundleSize) =>
    Object.entries(s.byPackage)
      .sort((x, y) => y[1] - x[1])
      .filter(([, n]) => n >= 1024)
      .slice(0, 4)
      .map(([p, n]) => `${p} ${fmtBytes(n)}`)
      .join(', ');
  const coldOf = (id: string) => find(cold, id);
  const upstashLock = coldOf('upstash-lock');
  return table(
    [
      'bundle',
      'bytes',
      'gzip',
      'vs reference',
      'largest parts',
      'import ms',
      'first lock ms',
      'import + first lock ms',
      'vs @upstash/lock',
    ],
    b.map((s) => {
      const r = ref(s.id);
      const c = coldOf(s.id);
      return [
        s.label,
        fmtBytes(s.bytes),
        fmtBytes(s.gzipBytes),
        r
          ? `${fmtRatio(ratio(s.bytes, find(b, r)?.bytes))} ${r === 'ioredis' ? 'ioredis' : '@upstash/redis'}`
          : '',
        top(s),
        fmtMs(c?.load ?? Number.NaN),
        fmtMs(c?.first ?? Number.NaN),
        fmtMs(c?.total ?? Number.NaN),
        c && upstashLock ? fmtRatio(ratioOfRounds(c.samples, upstashLock.samples)) : '—',
      ];
    }),
    ['l', 'r', 'r', 'r', 'l', 'r', 'r', 'r', 'r'],
  );
}

// ---------------------------------------------------------------------------------------------- output

export function consoleSummary(d: BenchData, results: readonly Evaluated[]): string {
  const lines = results.map(fmtTarget);
  if (d.replicas !== undefined && !isSkipped(d.replicas)) {
    const [wait, none] = [find(d.replicas.sequential, 'wait'), find(d.replicas.sequential, 'no-wait')];
    if (wait && none)
      lines.push(
        `replica wait: pair p50 ${fmtMs(wait.summary.p50)} ms with, ${fmtMs(none.summary.p50)} ms without ` +
          `(${fmtRatio(ratioOfRounds(p50Rounds(wait), p50Rounds(none)))})`,
      );
  }
  lines.push(...effectsSummary(d.effects));
  const t = tally(results);
  lines.push(
    '',
    `${t.PASS} PASS, ${t.FAIL} FAIL, ${t['NOT RUN']} NOT RUN (${d.mode} run, ${Math.round(d.durationS)} s)`,
  );
  return lines.join('\n');
}

/** The scaling chart, next to docs/benchmarks.md. */
export const SCALING_CHART = 'benchmarks-scaling.svg';

export function markdown(d: BenchData, results: readonly Evaluated[], notes: string): string {
  const t = tally(results);
  const m = d.machine;
  const out: string[] = [];
  out.push(
    '# Benchmarks',
    '',
    '<!-- Generated by `npm run bench` (bench/run.ts). Do not edit by hand: run it again. -->',
    '',
    'oncely side by side with `redlock`, `@upstash/lock` and Powertools idempotency, in one run on the',
    'same servers: one redis-server, one Upstash-compatible REST gateway in front of it (dev/gateway.ts, in',
    'its own process), five independent masters for Redlock. Rounds are interleaved (every contender in',
    'every round, in a rotated order); figures are pooled over rounds, and every ratio is the median of the',
    'per-round ratios, so load from other work on the machine cancels out as far as it can.',
    '',
    `**${t.PASS} PASS, ${t.FAIL} FAIL, ${t['NOT RUN']} NOT RUN** — ${d.mode} run of ` +
      `${Math.round(d.durationS)} s at commit \`${d.commit}\`, ${d.startedAt}.`,
    '',
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB; ${m.os}; Node ${m.node}; redis-server ` +
      `${m.redis}; load average at start ${m.loadAverage.map((x) => x.toFixed(2)).join(' ')}.`,
    `Sizes: ${d.sizes.rounds} rounds × ${d.sizes.perRound} sequential pairs per contender (after ` +
      `${d.sizes.warmup} warm-up operations each, ${Math.max(d.sizes.warmup, ONCE_WARMUP)} for the run-once rows), ` +
      `${d.sizes.workers} workers × ${d.sizes.durationMs} ms per round for throughput, ${d.sizes.countN} ` +
      `operations per counted phase.`,
    '',
    `![oncely vs peers](benchmarks.svg)`,
    '',
    '## Targets',
    '',
    table(
      ['', 'target', 'measured', 'goal', 'rounds: lowest – highest'],
      results.map((r) => {
        const op = r.op === '<=' ? '≤' : r.op === '>=' ? '≥' : '=';
        return [
          `**${r.verdict}**`,
          r.label,
          r.actual === undefined || Number.isNaN(r.actual)
            ? `not run${r.note ? `: ${r.note}` : ''}`
            : fmtValue(r.unit, r.actual, 3),
          `${op} ${fmtValue(r.unit, r.limit)}`,
          r.spread && Number.isFinite(r.spread[0])
            ? `${fmtRatio(r.spread[0])} – ${fmtRatio(r.spread[1])}`
            : '',
        ];
      }),
      ['l', 'l', 'r', 'r', 'r'],
    ),
    '',
    'A ratio is the median of the per-round ratios (cold start: of the per-process ratios, interleaved);',
    'the last column shows how far single rounds strayed on this machine. CPU rows are taken in the rounds',
    "of the p50 rows: client CPU is this process's (`process.cpuUsage()`, every thread), server CPU every",
    "thread of the row's server processes (/proc/<pid>/task/*/schedstat), each per operation.",
    '',
  );
  out.push('## Loopback ceiling (redis-benchmark, same server)', '');
  if (isSkipped(d.ceiling)) out.push(`Not run: ${d.ceiling.skipped}`, '');
  else
    out.push(
      table(
        ['command', 'connections', 'requests/s', 'p50 ms', 'p99 ms'],
        d.ceiling.map((r) => [r.label, String(r.clients), fmtRate(r.rps), fmtMs(r.p50), fmtMs(r.p99)]),
      ),
      '',
      'A lock pair is two round trips; one connection of redis-benchmark shows what one round trip',
      'costs here.',
      '',
    );
  for (const [title, s, base, server] of [
    ['Lock acquire + release over TCP (ioredis, one shared client)', d.tcp, 'raw', 'redis'],
    ['Lock acquire + release over REST (same gateway)', d.rest, 'upstash-lock', 'gateway + redis'],
  ] as const) {
    out.push(`## ${title}`, '');
    out.push(isSkipped(s) ? `Not run: ${s.skipped}` : lockTable(s, base, server, d.sizes.workers), '');
  }
  out.push('## Redlock (oncely createRedlock vs redlock, same clients)', '');
  for (const s of d.redlock) {
    if (isSkipped(s)) out.push(`Not run: ${s.skipped}`, '');
    else
      out.push(
        `### ${s.name} masters`,
        '',
        lockTable(s, 'redlock', 'redis (all masters)', d.sizes.workers),
        '',
        'Round trips are summed over the masters (one per master, in parallel).',
        '',
      );
  }
  out.push('## Run-once: withOnce vs Powertools makeIdempotent', '');
  out.push(isSkipped(d.once) ? `Not run: ${d.once.skipped}` : onceTables(d.once), '');
  out.push('## The replica wait (oncely on a 3 masters + 3 replicas cluster)', '');
  out.push(
    d.replicas === undefined || isSkipped(d.replicas)
      ? `Not run: ${d.replicas?.skipped ?? 'no figures'}`
      : replicaTable(d.replicas),
    '',
  );
  out.push(scalingSection(d.scaling, SCALING_CHART), '');
  out.push(latencySection(d.latency), '');
  out.push(effectsSection(d.effects), '');
  out.push('## Bundle size and cold start', '');
  if (isSkipped(d.bundles)) out.push(`Not run: ${d.bundles.skipped}`, '');
  else
    out.push(
      bundleTable(d.bundles, isSkipped(d.cold) ? undefined : d.cold),
      '',
      '"Layer" rows are the layer that ships (scripts/build.ts buildLayer): what a function using it',
      'loads, the entry point it imports (`oncely/locks` for a function that only takes locks, or the',
      "whole index) and its shared chunks, and the chunk of its client: oncely's requester and",
      '@upstash/redis on the REST path, ioredis on the TCP path (the layer is one esbuild bundle, minified,',
      'its dependencies inlined); the other client is never loaded. The other rows are bundled as the',
      'project deploys a function',
      '(ESM, minified, keepNames); "lock entry" rows bundle oncely\'s source into the function,',
      'tree-shaken to the lock API. Cold start: a fresh `node` per sample',
      "(interleaved), timed from before the import of the bundle to the first lock released; Node's own",
      'start-up (the same for all) is excluded.',
      isSkipped(d.cold)
        ? `Cold starts not run: ${d.cold.skipped}`
        : `Node start-up alone: ${fmtMs(median(d.cold.map((c) => c.boot)))} ms.`,
      '',
    );
  out.push(
    // Measured by a separate script (bench/rest-pool.ts), not by this run: its figures live in a page of
    // their own, docs/rest-pool.md, which the generator never writes.
    'REST connection pool: how `maxConnections` was chosen, measured with `npx tsx bench/rest-pool.ts`, is in',
    '[rest-pool.md](rest-pool.md).',
    '',
    '## Notes',
    '',
    notes.trim(),
    '',
    '## How to run',
    '',
    '```sh',
    'npm run bench            # full run',
    'npm run bench -- --quick # fewer rounds: for checking, not for quoting',
    'npm run bench -- --only scaling   # the scaling section alone, printed',
    'npm run bench -- --only latency   # the lock pair and withOnce rows at a 0.5-2 ms round trip, printed',
    'npm run bench -- --only effects   # fenced writes vs unfenced (needs PostgreSQL on 127.0.0.1:5432)',
    'npm run bench -- --help',
    '```',
    '',
  );
  return `${out.join('\n')}\n`;
}
