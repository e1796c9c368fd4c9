/**
 * The chart docs/benchmarks.md embeds: small multiples, one panel per measurement, a horizontal bar per
 * contender on the panel's own scale, oncely's bars in the accent colour. Plain SVG, no dependencies.
 */

import type { ConcurrentResult, SequentialResult } from './harness.js';
import { type BenchData, isSkipped } from './report.js';
import { OP_NAME, rateOf, TRANSPORT_NAME } from './report-scaling.js';
import { fmtBytes, fmtMs, fmtRate } from './stats.js';
import type { ScalingResult } from './suite-scaling.js';

export interface Bar {
  label: string;
  value: number;
  oncely: boolean;
}

export interface Panel {
  title: string;
  /** How a value is printed next to its bar. */
  format: (v: number) => string;
  bars: Bar[];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const WIDTH = 1100;
const COLUMNS = 2;
const GAP = 24;
const BAR_H = 16;
const ROW_H = 22;
const LABEL_W = 235;
const VALUE_W = 70;

function panelHeight(p: Panel): number {
  return 28 + p.bars.length * ROW_H + 6;
}

function renderPanel(p: Panel, x: number, y: number, w: number): string {
  const max = Math.max(...p.bars.map((b) => (Number.isFinite(b.value) ? b.value : 0)), Number.MIN_VALUE);
  const barMax = w - LABEL_W - VALUE_W;
  const parts = [`<text x="${x}" y="${y + 16}" class="t">${esc(p.title)}</text>`];
  p.bars.forEach((b, i) => {
    const by = y + 28 + i * ROW_H;
    const len = Number.isFinite(b.value) ? Math.max(1, (b.value / max) * barMax) : 0;
    const bx = x + LABEL_W;
    const value = Number.isFinite(b.value) ? p.format(b.value) : 'n/a';
    parts.push(
      `<text x="${bx - 8}" y="${by + 12}" class="l">${esc(b.label)}</text>`,
      `<rect x="${bx}" y="${by}" width="${len.toFixed(1)}" height="${BAR_H}" ` +
        `class="${b.oncely ? 'o' : 'p'}"/>`,
      `<text x="${(bx + len + 6).toFixed(1)}" y="${by + 12}" class="v">${esc(value)}</text>`,
    );
  });
  return parts.join('\n');
}

export function svgChart(panels: readonly Panel[], caption: string): string {
  const colW = (WIDTH - GAP * (COLUMNS + 1)) / COLUMNS;
  const body: string[] = [];
  let y = 40;
  for (let i = 0; i < panels.length; i += COLUMNS) {
    const row = panels.slice(i, i + COLUMNS);
    row.forEach((p, j) => {
      body.push(renderPanel(p, GAP + j * (colW + GAP), y, colW));
    });
    y += Math.max(...row.map(panelHeight)) + 12;
  }
  const height = y + 10;
  const size = `width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}"`;
  return `<svg xmlns="http://www.w3.org/2000/svg" ${size} font-family="system-ui, -apple-system, sans-serif">
<style>
.t { font-size: 13px; font-weight: 600; fill: #1f2328; }
.l { font-size: 11px; fill: #1f2328; text-anchor: end; }
.v { font-size: 11px; fill: #59636e; }
.o { fill: #0969da; }
.p { fill: #afb8c1; }
.c { font-size: 12px; fill: #59636e; }
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="${GAP}" y="24" class="c">${esc(caption)}</text>
${body.join('\n')}
</svg>
`;
}

// ------------------------------------------------------------------------------------ panels of a run

const SHORT: [RegExp, string][] = [
  [/ \(SET NX PX \+ EVALSHA\)/, ''],
  [/ \(@redis\/client\)/, ''],
  [/Powertools BatchProcessor \+ makeIdempotent/, 'Powertools batch + idempotency'],
  [/Powertools idempotency \+ @redis\/client/, 'Powertools + @redis/client'],
];
/** A label short enough for the label column (about 36 characters at 11 px). */
export const shortLabel = (label: string) => {
  const s = SHORT.reduce((acc, [re, by]) => acc.replace(re, by), label);
  return s.length > 36 ? `${s.slice(0, 35)}…` : s;
};

function seqPanel(title: string, rs: readonly SequentialResult[] | undefined): Panel | undefined {
  if (!rs?.length) return undefined;
  return {
    title,
    format: (v) => `${fmtMs(v)} ms`,
    bars: rs.map((r) => ({
      label: shortLabel(r.label),
      value: r.summary.p50,
      oncely: r.id.startsWith('oncely'),
    })),
  };
}

function ratePanel(title: string, rs: readonly ConcurrentResult[] | undefined): Panel | undefined {
  if (!rs?.length) return undefined;
  return {
    title,
    format: (v) => `${fmtRate(v)}/s`,
    bars: rs.map((r) => ({
      label: shortLabel(r.label),
      value: r.perSecond,
      oncely: r.id.startsWith('oncely'),
    })),
  };
}

export function panelsOf(d: BenchData): Panel[] {
  const panels: (Panel | undefined)[] = [];
  const tcp = isSkipped(d.tcp) ? undefined : d.tcp;
  const rest = isSkipped(d.rest) ? undefined : d.rest;
  panels.push(seqPanel('TCP lock pair, p50 (lower is better)', tcp?.sequential));
  panels.push(ratePanel(`TCP lock pairs/s, ${d.sizes.workers} workers (higher is better)`, tcp?.concurrent));
  panels.push(seqPanel('REST lock pair, p50 (lower is better)', rest?.sequential));
  panels.push(
    ratePanel(`REST lock pairs/s, ${d.sizes.workers} workers (higher is better)`, rest?.concurrent),
  );
  for (const s of d.redlock) {
    if (!isSkipped(s)) panels.push(seqPanel(`${s.name} masters: lock pair p50`, s.sequential));
  }
  if (!isSkipped(d.once)) {
    panels.push(seqPanel('withOnce vs Powertools: first call p50', d.once.first));
    panels.push(seqPanel('withOnce vs Powertools: duplicate p50', d.once.duplicate));
    panels.push(seqPanel('SQS batch of 10: p50', d.once.batch));
  }
  if (!isSkipped(d.cold)) {
    panels.push({
      title: 'Cold start: import + first lock (lower is better)',
      format: (v) => `${fmtMs(v)} ms`,
      bars: d.cold.map((c) => ({
        label: shortLabel(c.label),
        value: c.total,
        oncely: c.id.startsWith('oncely'),
      })),
    });
  }
  if (!isSkipped(d.bundles)) {
    panels.push({
      title: 'Minified bytes loaded (lower is better)',
      format: fmtBytes,
      bars: d.bundles.map((b) => ({
        label: shortLabel(b.label),
        value: b.bytes,
        oncely: b.id.startsWith('oncely'),
      })),
    });
  }
  return panels.filter((p): p is Panel => p !== undefined);
}

// ------------------------------------------------------------------------------------ scaling chart

/** One line of the scaling chart: a contender's calls/s at each level, and whether it answered every call. */
export interface Series {
  label: string;
  oncely: boolean;
  points: { concurrency: number; perSecond: number; complete: boolean }[];
}

export interface LinePanel {
  title: string;
  series: Series[];
}

const PEER_COLOURS = ['#8c959f', '#bc4c00', '#8250df'];
const PANEL_W = 340;
const PANEL_H = 230;
const PLOT = { left: 52, right: 12, top: 44, bottom: 34 };

/** Powers of ten covering [lo, hi], at least two. */
export function decades(lo: number, hi: number): number[] {
  const a = Math.floor(Math.log10(Math.max(lo, 1e-9)));
  const b = Math.max(a + 1, Math.ceil(Math.log10(Math.max(hi, 1e-9))));
  return Array.from({ length: b - a + 1 }, (_, i) => 10 ** (a + i));
}

const fmtTick = (v: number) => (v >= 1000 ? `${v / 1000}k` : String(v));

function renderLinePanel(p: LinePanel, x: number, y: number, levels: readonly number[]): string {
  const rates = p.series.flatMap((s) => s.points.map((q) => q.perSecond)).filter((v) => v > 0);
  const ys = rates.length ? decades(Math.min(...rates), Math.max(...rates)) : [1, 10];
  const [yLo, yHi] = [Math.log10(ys[0]!), Math.log10(ys[ys.length - 1]!)];
  const [xLo, xHi] = [Math.log10(Math.min(...levels)), Math.log10(Math.max(...levels))];
  const w = PANEL_W - PLOT.left - PLOT.right;
  const h = PANEL_H - PLOT.top - PLOT.bottom;
  const px = (c: number) => x + PLOT.left + (xHi > xLo ? ((Math.log10(c) - xLo) / (xHi - xLo)) * w : w / 2);
  const py = (v: number) => y + PLOT.top + h - ((Math.log10(v) - yLo) / (yHi - yLo)) * h;
  const parts = [`<text x="${x}" y="${y + 14}" class="t">${esc(p.title)}</text>`];
  for (const v of ys) {
    parts.push(
      `<line x1="${px(levels[0]!).toFixed(1)}" x2="${(x + PLOT.left + w).toFixed(1)}" y1="${py(v).toFixed(1)}" ` +
        `y2="${py(v).toFixed(1)}" class="g"/>`,
      `<text x="${x + PLOT.left - 6}" y="${(py(v) + 4).toFixed(1)}" class="l">${fmtTick(v)}</text>`,
    );
  }
  for (const c of levels) {
    parts.push(
      `<text x="${px(c).toFixed(1)}" y="${y + PLOT.top + h + 16}" class="x">${c.toLocaleString('en-US')}</text>`,
    );
  }
  parts.push(`<text x="${x + PLOT.left + w / 2}" y="${y + PANEL_H - 4}" class="x">calls in flight</text>`);
  let peer = 0;
  p.series.forEach((s, i) => {
    const colour = s.oncely ? '#0969da' : PEER_COLOURS[peer++ % PEER_COLOURS.length]!;
    const pts = s.points.filter((q) => q.perSecond > 0).sort((a, b) => a.concurrency - b.concurrency);
    const d = pts.map((q) => `${px(q.concurrency).toFixed(1)},${py(q.perSecond).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${d}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    for (const q of pts) {
      // A hollow point: some calls at this level were not answered.
      parts.push(
        `<circle cx="${px(q.concurrency).toFixed(1)}" cy="${py(q.perSecond).toFixed(1)}" r="3.5" ` +
          `stroke="${colour}" stroke-width="1.5" fill="${q.complete ? colour : '#ffffff'}"/>`,
      );
    }
    const ly = y + 30;
    const lx = x + PLOT.left + i * 110;
    parts.push(
      `<rect x="${lx}" y="${ly - 8}" width="10" height="10" fill="${colour}"/>`,
      `<text x="${lx + 14}" y="${ly + 1}" class="k">${esc(shortLabel(s.label).slice(0, 18))}</text>`,
    );
  });
  return parts.join('\n');
}

/** calls/s against calls in flight, both on log scales, a panel per transport and operation. */
export function svgScaling(panels: readonly LinePanel[], levels: readonly number[], caption: string): string {
  const columns = 3;
  const width = GAP + columns * (PANEL_W + GAP);
  const rows = Math.max(1, Math.ceil(panels.length / columns));
  const height = 40 + rows * (PANEL_H + 16) + 24;
  const body = panels.map((p, i) =>
    renderLinePanel(
      p,
      GAP + (i % columns) * (PANEL_W + GAP),
      40 + Math.floor(i / columns) * (PANEL_H + 16),
      levels,
    ),
  );
  const size = `width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"`;
  return `<svg xmlns="http://www.w3.org/2000/svg" ${size} font-family="system-ui, -apple-system, sans-serif">
<style>
.t { font-size: 13px; font-weight: 600; fill: #1f2328; }
.l { font-size: 10px; fill: #59636e; text-anchor: end; }
.x { font-size: 10px; fill: #59636e; text-anchor: middle; }
.k { font-size: 10px; fill: #1f2328; }
.g { stroke: #d0d7de; stroke-width: 1; }
.c { font-size: 12px; fill: #59636e; }
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="${GAP}" y="24" class="c">${esc(caption)}</text>
${body.join('\n')}
<text x="${GAP}" y="${height - 10}" class="c">calls/s (answered), log scales; a hollow point: some calls at that level were not answered</text>
</svg>
`;
}

/** The scaling chart's panels from a run: one per transport and operation, a line per contender. */
export function scalingPanels(s: ScalingResult): LinePanel[] {
  return s.groups.map((g) => ({
    title: `${TRANSPORT_NAME[g.transport]}: ${OP_NAME[g.op]}`,
    series: g.ids.map((id) => {
      const cells = g.cells.filter((c) => c.id === id);
      return {
        label: cells[0]?.label ?? id,
        oncely: id.startsWith('oncely'),
        points: cells.map((c) => ({
          concurrency: c.concurrency,
          perSecond: rateOf(c),
          complete: c.answered === c.calls,
        })),
      };
    }),
  }));
}
