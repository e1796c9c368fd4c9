/**
 * The CPU rows of the targets (bench/report-cpu.ts): every row of issue 23's table gets a client CPU and a
 * server CPU target, each the median of per-round ratios with its per-round range, charged to the servers
 * the row ran on.
 */
import { describe, expect, it } from 'vitest';
import type { SequentialResult } from '../../bench/harness.js';
import { type BenchData, targets } from '../../bench/report.js';
import { cpuTargets } from '../../bench/report-cpu.js';
import { evaluate, fmtTarget } from '../../bench/stats.js';
import type { LockSuiteResult } from '../../bench/suite-locks.js';

/** A row whose rounds have these client CPU figures and, per round, these server figures. */
function row(id: string, cpu: number[], server: Record<string, number>[]): SequentialResult {
  return {
    id,
    label: id,
    summary: { n: 1, p50: 1, p90: 1, p99: 1, mean: 1, min: 1, max: 1 },
    rounds: cpu.map((cpuUs, i) => ({ p50: 1, p99: 1, cpuUs, serverUs: server[i] ?? {} })),
  };
}
const lockSuite = (name: string, rows: SequentialResult[]): LockSuiteResult => ({
  name,
  ids: rows.map((r) => r.id),
  sequential: rows,
  concurrent: [],
  counts: {},
});
const skipped = { skipped: 'not selected (--only)' };

function run(over: Partial<BenchData>): BenchData {
  return {
    mode: 'quick',
    startedAt: '',
    durationS: 0,
    machine: { cpu: '', cores: 2, memoryGiB: 1, os: '', node: '', redis: '', loadAverage: [0, 0, 0] },
    sizes: { rounds: 3, perRound: 1, warmup: 1, workers: 1, durationMs: 1, countN: 1 },
    commit: '',
    ceiling: skipped,
    tcp: skipped,
    rest: skipped,
    redlock: [skipped],
    once: skipped,
    bundles: skipped,
    cold: skipped,
    ...over,
  };
}

describe('cpuTargets', () => {
  it('a client and a server row for every row of the issue, at its limits', () => {
    const ts = cpuTargets(run({ redlock: [skipped, skipped] }));
    expect(ts.map((t) => `${t.id} ${t.op} ${t.limit}`)).toEqual([
      'cpu.client.tcp <= 1',
      'cpu.server.tcp <= 1.3',
      'cpu.client.redlock3 <= 1',
      'cpu.server.redlock3 <= 1.3',
      'cpu.client.redlock5 <= 1',
      'cpu.server.redlock5 <= 1.3',
      'cpu.client.once.first <= 1',
      'cpu.server.once.first <= 1.3',
      'cpu.client.once.duplicate <= 1',
      'cpu.server.once.duplicate <= 1.3',
      'cpu.client.batch <= 1',
      'cpu.server.batch <= 1.5',
      'cpu.client.rest <= 1',
      'cpu.server.rest <= 1.3',
    ]);
    // Not run: NOT RUN with the suite's reason, never a PASS.
    expect(ts.map(evaluate).every((t) => t.verdict === 'NOT RUN' && t.note === skipped.skipped)).toBe(true);
  });

  it('the median of per-round ratios, so one disturbed round does not move it, with the range', () => {
    const tcp = lockSuite('TCP', [
      row('oncely', [100, 900, 110], [{ redis: 30 }, { redis: 30 }, { redis: 30 }]),
      row('redlock', [100, 100, 100], [{ redis: 20 }, { redis: 25 }, { redis: 30 }]),
    ]);
    const [client, server] = cpuTargets(run({ tcp }));
    expect(client?.actual).toBeCloseTo(1.1);
    expect(client?.spread).toEqual([1, 9]);
    expect(server?.actual).toBeCloseTo(1.2);
    expect(evaluate(client!).verdict).toBe('FAIL');
    expect(fmtTarget(evaluate(client!))).toContain('(target ≤ 1.00×; rounds 1.00×–9.00×)');
  });

  it('charges a TCP row its own server, not the idle cluster beside it; Redlock every master; REST both', () => {
    const idle = { cluster0: 50, cluster1: 50, cluster2: 50 };
    const tcp = lockSuite('TCP', [
      row('oncely', [1], [{ redis: 30, ...idle }]),
      row('redlock', [1], [{ redis: 20, ...idle }]),
    ]);
    const rl = lockSuite('Redlock 3', [
      row('oncely', [1], [{ redis0: 10, redis1: 10, redis2: 10 }]),
      row('redlock', [1], [{ redis0: 5, redis1: 5, redis2: 10 }]),
    ]);
    const rest = lockSuite('REST', [
      row('oncely', [1], [{ gateway: 40, redis: 20 }]),
      row('upstash-lock', [1], [{ gateway: 100, redis: 20 }]),
    ]);
    const ts = cpuTargets(run({ tcp, rest, redlock: [rl, skipped] }));
    const actual = (id: string) => ts.find((t) => t.id === id)?.actual;
    expect(actual('cpu.server.tcp')).toBeCloseTo(1.5);
    expect(actual('cpu.server.redlock3')).toBeCloseTo(1.5);
    expect(actual('cpu.server.rest')).toBeCloseTo(0.5);
    expect(ts.find((t) => t.id === 'cpu.server.redlock3')?.label).toContain('redis (3 masters)');
  });
});

describe('targets: the p50 rows issue 23 sets', () => {
  it('withOnce duplicate ≤ 0.50× and the SQS batch ≤ 0.80× Powertools, per-round ratios', () => {
    const batch = (id: string, p50s: number[]) => ({
      ...row(id, [1, 1, 1], []),
      rounds: p50s.map((p50) => ({ p50, p99: p50, cpuUs: 1, serverUs: {} })),
    });
    const once = {
      first: [],
      duplicate: [],
      batch: [batch('oncely', [0.7, 0.9, 2]), batch('powertools', [1, 1, 1])],
      counts: {},
      batchCounts: {},
    };
    const ts = targets(run({ once }));
    expect(ts.find((t) => t.id === 'once.duplicate')?.limit).toBe(0.5);
    const b = ts.find((t) => t.id === 'once.batch');
    expect(b).toMatchObject({ limit: 0.8, op: '<=', spread: [0.7, 2], verdict: 'FAIL' });
    expect(b?.actual).toBeCloseTo(0.9);
  });
});
