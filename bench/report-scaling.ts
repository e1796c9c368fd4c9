/**
 * The scaling section of docs/benchmarks.md: its targets, its tables and its prose, every figure taken from
 * the run (bench/suite-scaling.ts). How cost grows with concurrency and where it stops growing is computed by
 * stats.scalingShape, never written in by hand.
 */
import { DEFAULT_TIMEOUT_MS } from '../layers/oncely/src/transport/types.js';
import type { LoadResult } from './harness.js';
import {
  againstBestPeer,
  answeredPercent,
  type Evaluated,
  fmtMs,
  fmtPercent,
  fmtRate,
  fmtRatio,
  type LevelPoint,
  median,
  type ScalingShape,
  scalingShape,
  type Target,
} from './stats.js';
import type { Operation, ScalingGroup, ScalingResult, Transport } from './suite-scaling.js';

type Skipped = { skipped: string };

export const TRANSPORTS: readonly Transport[] = ['REST', 'TCP', 'cluster'];
export const TRANSPORT_NAME: Record<Transport, string> = {
  REST: 'REST (local gateway)',
  TCP: 'TCP standalone',
  cluster: 'Cluster (3 masters)',
};
export const OP_NAME: Record<Operation, string> = {
  lock: 'lock acquire + release',
  once: 'withOnce first call',
};
/** The comparisons with a verdict: each transport and operation that has a peer, and the peer. */
const COMPARED: readonly [Transport, Operation, string][] = [
  ['REST', 'lock', '@upstash/lock'],
  ['TCP', 'lock', 'node-redlock'],
  ['cluster', 'lock', 'node-redlock'],
  ['TCP', 'once', 'Powertools'],
  ['cluster', 'once', 'Powertools'],
];
/** A level's calls/s must beat a lower one by this much to count as growth. */
const MIN_GAIN = 1.1;

const count = (n: number) => n.toLocaleString('en-US');
const rateRounds = (c: LoadResult | undefined) => c?.rounds.map((r) => r.perSecond) ?? [];
export const rateOf = (c: LoadResult | undefined) => median(rateRounds(c));
const percentOf = (c: LoadResult | undefined) => (c ? answeredPercent(c.answered, c.calls) : Number.NaN);

/** The highest level a run measured (1,000 in a full run). */
export const topLevel = (s: ScalingResult | undefined) => (s ? Math.max(...s.sizes.concurrency) : 1000);

const groupOf = (s: ScalingResult | undefined, t: Transport, op: Operation) =>
  s?.groups.find((g) => g.transport === t && g.op === op);
const cellOf = (g: ScalingGroup | undefined, id: string, level: number) =>
  g?.cells.find((c) => c.id === id && c.concurrency === level);
const levelsOf = (g: ScalingGroup, id: string): LevelPoint[] =>
  g.cells
    .filter((c) => c.id === id)
    .map((c) => ({ concurrency: c.concurrency, perSecond: rateOf(c), p50: c.summary.p50 }));

/** oncely against the best of the other contenders at `level`, per-round calls/s. */
function vsPeers(g: ScalingGroup | undefined, level: number) {
  if (!g) return undefined;
  const peers = g.ids
    .filter((id) => id !== 'oncely')
    .map((id) => ({ id, rounds: rateRounds(cellOf(g, id, level)) }));
  return againstBestPeer(rateRounds(cellOf(g, 'oncely', level)), peers);
}

const labelOf = (g: ScalingGroup, id: string) => g.cells.find((c) => c.id === id)?.label ?? id;

// ---------------------------------------------------------------------------------------------- targets

export function scalingTargets(raw: ScalingResult | Skipped | undefined): Target[] {
  const s = raw && !('skipped' in raw) ? raw : undefined;
  const note = s
    ? undefined
    : raw && 'skipped' in raw
      ? raw.skipped
      : 'no figures (report older than the suite)';
  const top = topLevel(s);
  const t: Target[] = [];
  for (const transport of TRANSPORTS) {
    const cells = (s?.groups ?? [])
      .filter((g) => g.transport === transport)
      .map((g) => ({ op: g.op, pct: percentOf(cellOf(g, 'oncely', top)) }));
    const lowest = cells.reduce<(typeof cells)[number] | undefined>(
      (low, c) => (low === undefined || !(c.pct >= low.pct) ? c : low),
      undefined,
    );
    t.push({
      id: `scale.${transport}.answered`,
      label: `scaling, ${count(top)} concurrent over ${transport}: oncely calls answered (its lowest operation)`,
      actual: lowest?.pct,
      op: '>=',
      limit: 100,
      unit: 'percent',
      note: note ?? (lowest ? `lowest: ${OP_NAME[lowest.op]}` : 'not measured'),
    });
  }
  for (const [transport, op, peer] of COMPARED) {
    const r = vsPeers(groupOf(s, transport, op), top);
    t.push({
      id: `scale.${transport}.${op}.rate`,
      label: `scaling, ${count(top)} concurrent over ${transport}: ${OP_NAME[op]}, calls/s / ${peer}`,
      actual: r?.ratio,
      spread: r?.spread,
      op: '>=',
      limit: 1.0,
      unit: 'ratio',
      note,
    });
  }
  return t;
}

// ---------------------------------------------------------------------------------------------- prose

function errorsOf(c: LoadResult | undefined): string {
  if (!c) return '—';
  const parts = Object.entries(c.errors)
    .sort((a, b) => b[1].count - a[1].count)
    .map(([name, e]) => `${name} ${count(e.count)}`);
  return parts.length ? parts.join(', ') : '—';
}

/** One sentence on how a contender's cost grew with concurrency, from its own levels. */
export function shapeSentence(label: string, shape: ScalingShape | undefined): string {
  if (!shape) return `${label}: no figures.`;
  const { first, last, peak, plateau } = shape;
  const at = (p: LevelPoint) => `${fmtRate(p.perSecond)}/s at ${count(p.concurrency)}`;
  // Past the plateau: the highest level's rate, and the peak where it is neither the plateau nor the last.
  const beyond = [...(peak !== plateau && peak !== last ? [`highest ${at(peak)}`] : []), at(last)].join(', ');
  const growth = shape.stillGrowing
    ? `calls/s was still growing at ${count(last.concurrency)} (${at(first)} → ${at(last)})`
    : plateau === first
      ? `calls/s did not grow with concurrency: no level was ${fmtRatio(MIN_GAIN, 1)} the ` +
        `${at(first)} (highest ${at(peak)})`
      : `calls/s grew from ${at(first)} to ${at(plateau)} and stopped growing there: no higher level ` +
        `was ${fmtRatio(MIN_GAIN, 1)} faster (${beyond})`;
  // Past the plateau the calls in flight queue: the time per call is concurrency / rate (Little's law).
  const queued = (last.concurrency / last.perSecond) * 1000;
  return (
    `${label}: ${growth}; its p50 went from ${fmtMs(first.p50)} ms to ${fmtMs(last.p50)} ms ` +
    `(${fmtRatio(shape.p50Growth, 0)}); at ${count(last.concurrency)} in flight a call spends ` +
    `${count(last.concurrency)} ÷ its calls/s = ${fmtMs(queued)} ms in flight on average (Little's law).`
  );
}

function groupTable(g: ScalingGroup, levels: readonly number[]): string {
  const header = [
    'concurrent',
    'contender',
    'calls/s',
    'vs best peer',
    'p50 ms',
    'p99 ms',
    'answered',
    'errors',
  ];
  const rows = levels.flatMap((level) => {
    const r = vsPeers(g, level);
    return g.ids.map((id) => {
      const c = cellOf(g, id, level);
      return [
        count(level),
        labelOf(g, id),
        fmtRate(rateOf(c)),
        id === 'oncely' && r ? fmtRatio(r.ratio) : '',
        fmtMs(c?.summary.p50 ?? Number.NaN),
        fmtMs(c?.summary.p99 ?? Number.NaN),
        c ? `${fmtPercent(percentOf(c))} of ${count(c.calls)}` : '—',
        errorsOf(c),
      ];
    });
  });
  const align = ['r', 'l', 'r', 'r', 'r', 'r', 'r', 'l'];
  const line = (r: string[]) => `| ${r.join(' | ')} |`;
  return [line(header), line(align.map((a) => (a === 'r' ? '---:' : ':---'))), ...rows.map(line)].join('\n');
}

export function scalingSection(raw: ScalingResult | Skipped | undefined, chart: string): string {
  if (!raw || 'skipped' in raw) {
    const why = raw?.skipped ?? 'no figures (report older than the suite)';
    return ['## Scaling: concurrent calls per process', '', `Not run: ${why}`, ''].join('\n');
  }
  const s = raw;
  const levels = [...s.sizes.concurrency].sort((a, b) => a - b);
  const span = `${count(levels[0] ?? Number.NaN)} to ${count(levels.at(-1) ?? Number.NaN)}`;
  const out = [`## Scaling: ${span} concurrent calls per process`, ''];
  const top = topLevel(s);
  out.push(
    'Each cell keeps N calls in flight in one process (N workers, each issuing its next call when the last',
    `returns) for ${s.sizes.rounds} interleaved rounds of ${count(s.sizes.durationMs)} ms per contender, after`,
    'warming every client with one call at a time and each cell with one burst of N calls. calls/s counts',
    'answered calls (median of rounds); p50 and p99 are over every call, answered or not (a failed call',
    'counts the time its caller waited). A call is not answered when it threw (oncely: its own `timeoutMs`,',
    `${count(DEFAULT_TIMEOUT_MS)} ms by default) or had no answer within ${count(s.sizes.callTimeoutMs)} ms (the harness's bound:`,
    'the peers have no timeout of their own). "vs best peer" is oncely\'s calls/s over the fastest',
    "peer's at that level, the median of per-round ratios. Lock pairs take a fresh key per call, first",
    'calls a fresh event. Each bullet below says, from these figures, how far calls/s grew with',
    `concurrency and where it stopped growing (no higher level ${fmtRatio(MIN_GAIN, 1)} faster), and how the`,
    'median call grew meanwhile.',
    '',
    `![calls/s against concurrency](${chart})`,
    '',
  );
  for (const g of s.groups) {
    out.push(`### ${TRANSPORT_NAME[g.transport]}: ${OP_NAME[g.op]}`, '');
    const alone =
      g.ids.length === 1
        ? " No peer: Powertools' persistence layers are DynamoDB and a Redis-protocol client, none over REST."
        : '';
    out.push(
      `Clients: ${g.ids.map((id) => `${labelOf(g, id)} — ${g.clients[id] ?? 'n/a'}`).join('; ')}.${alone}`,
      '',
    );
    out.push(groupTable(g, levels), '');
    for (const id of g.ids) {
      out.push(`- ${shapeSentence(labelOf(g, id), scalingShape(levelsOf(g, id), MIN_GAIN))}`);
    }
    const r = vsPeers(g, top);
    const o = cellOf(g, 'oncely', top);
    if (r && o) {
      out.push(
        `- At ${count(top)} concurrent oncely answered ${fmtPercent(percentOf(o))} of its calls and ran at ` +
          `${fmtRatio(r.ratio)} the calls/s of ${labelOf(g, r.peer)} (rounds ${fmtRatio(r.spread[0])}–` +
          `${fmtRatio(r.spread[1])}).`,
      );
    }
    out.push('');
  }
  return out.join('\n');
}

/** The paragraph for a scaling row left FAIL: what the cell measured, from the run. */
export function scalingFailNote(raw: ScalingResult | Skipped | undefined, r: Evaluated): string | undefined {
  if (!raw || 'skipped' in raw || !r.id.startsWith('scale.')) return undefined;
  const [, transport, what] = r.id.split('.') as [string, Transport, string];
  const top = topLevel(raw);
  const cells = raw.groups
    .filter((g) => g.transport === transport && (what === 'answered' || g.op === what))
    .flatMap((g) => g.ids.map((id) => ({ g, id, c: cellOf(g, id, top) })));
  const figures = cells
    .map(
      ({ g, id, c }) =>
        `${labelOf(g, id)}${what === 'answered' ? ` (${OP_NAME[g.op]})` : ''} ${fmtRate(rateOf(c))}/s, p50 ${fmtMs(c?.summary.p50 ?? Number.NaN)} ms, ` +
        `p99 ${fmtMs(c?.summary.p99 ?? Number.NaN)} ms, ${count(c?.answered ?? 0)} of ${count(c?.calls ?? 0)} ` +
        `answered${c && Object.keys(c.errors).length ? ` (${errorsOf(c)}: "${Object.values(c.errors)[0]?.example}")` : ''}`,
    )
    .join('; ');
  const value =
    r.unit === 'percent' ? fmtPercent(r.actual ?? Number.NaN) : fmtRatio(r.actual ?? Number.NaN, 3);
  return `**${r.label}: ${value}.** At ${count(top)} concurrent over ${transport}: ${figures}.`;
}
