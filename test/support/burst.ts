/**
 * Runs a burst (test/support/burst-worker.ts) in `processes` child processes at once and gathers their
 * reports: every process starts its deliveries when all of them are ready.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { BurstReport, BurstSpec } from './burst-worker.js';

export type { BurstReport, BurstSpec } from './burst-worker.js';

const WORKER = fileURLToPath(new URL('./burst-worker.ts', import.meta.url));

/** The burst as a whole: every process's report, and the sums over them. */
export interface BurstOutcome {
  reports: BurstReport[];
  calls: number;
  answered: number;
  storeErrors: number;
  /** Deliveries, in one process, whose result differed from an earlier delivery of their id. */
  mismatched: number;
  /** Handler runs per message id, over every process. */
  runs: Map<string, number>;
  /** Message ids whose deliveries got different results (in one process or across processes). */
  disagreeing: string[];
  errors: Record<string, number>;
  /** From the first `go` to the last report, ms. */
  wallMs: number;
}

function lines(child: ChildProcess): AsyncIterator<string> {
  const pending: string[] = [];
  let buffer = '';
  let wake: (() => void) | undefined;
  let ended = false;
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    buffer += chunk;
    let i = buffer.indexOf('\n');
    while (i >= 0) {
      pending.push(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
      i = buffer.indexOf('\n');
    }
    wake?.();
  });
  child.stdout?.on('end', () => {
    ended = true;
    wake?.();
  });
  return {
    async next() {
      while (pending.length === 0 && !ended) await new Promise<void>((r) => (wake = r));
      const line = pending.shift();
      return line === undefined ? { done: true, value: undefined } : { done: false, value: line };
    },
  };
}

export async function runBurst(spec: BurstSpec, processes: number): Promise<BurstOutcome> {
  const children = Array.from({ length: processes }, () =>
    spawn(process.execPath, ['--import', 'tsx', WORKER, JSON.stringify(spec)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
  );
  const stderr = children.map(() => [] as string[]);
  children.forEach((c, i) => {
    c.stderr?.on('data', (d: Buffer) => stderr[i]!.push(d.toString()));
  });
  try {
    const outputs = children.map(lines);
    const readLine = async (i: number) => {
      const { value, done } = await outputs[i]!.next();
      if (done) throw new Error(`burst worker ${i} ended early: ${stderr[i]!.join('').slice(-2000)}`);
      return value as string;
    };
    await Promise.all(children.map((_, i) => readLine(i)));
    const started = performance.now();
    for (const c of children) c.stdin?.write('go\n');
    const reports = await Promise.all(
      children.map(async (_, i) => JSON.parse(await readLine(i)) as BurstReport),
    );
    const wallMs = performance.now() - started;
    await Promise.all(children.map((c) => (c.exitCode === null ? once(c, 'exit') : undefined)));
    return summarize(reports, spec.calls * processes, wallMs);
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}

function summarize(reports: BurstReport[], calls: number, wallMs: number): BurstOutcome {
  const runs = new Map<string, number>();
  const results = new Map<string, Set<string>>();
  const disagreeing = new Set<string>();
  const errors: Record<string, number> = {};
  for (const r of reports) {
    for (const [id, n] of Object.entries(r.runs)) runs.set(id, (runs.get(id) ?? 0) + n);
    for (const [id, text] of Object.entries(r.results)) {
      const seen = results.get(id) ?? new Set<string>();
      seen.add(text);
      results.set(id, seen);
      if (seen.size > 1) disagreeing.add(id);
    }
    for (const [what, n] of Object.entries(r.errors)) errors[what] = (errors[what] ?? 0) + n;
  }
  return {
    reports,
    calls,
    answered: reports.reduce((n, r) => n + r.answered, 0),
    storeErrors: reports.reduce((n, r) => n + r.storeErrors, 0),
    mismatched: reports.reduce((n, r) => n + r.mismatched, 0),
    runs,
    disagreeing: [...disagreeing],
    errors,
    wallMs,
  };
}
