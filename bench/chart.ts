/**
 * The chart docs/benchmarks.md embeds: small multiples, one panel per measurement, a horizontal bar per
 * contender on the panel's own scale, oncely's bars in the accent colour. Plain SVG, no dependencies.
 */

import type { ConcurrentResult, SequentialResult } from './harness.js';
import { type BenchData, isSkipped } from './report.js';
import { fmtBytes, fmtMs, fmtRate } from './stats.js';

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
  panels.push(ratePanel('TCP lock pairs/s, 50 workers (higher is better)', tcp?.concurrent));
  panels.push(seqPanel('REST lock pair, p50 (lower is better)', rest?.sequential));
  panels.push(ratePanel('REST lock pairs/s, 50 workers (higher is better)', rest?.concurrent));
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
