/**
 * Interleaved measurement: every contender runs in every round, in a rotated order, on the same servers, so
 * drift in the machine's load (two cores shared with other work) hits all of them alike. Figures are pooled
 * over rounds; ratios are taken per round and their median reported (stats.ratioOfRounds).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { median, percentile, type Summary, summarize } from './stats.js';

/** Server processes whose CPU time is charged per operation (e.g. `{ redis: pid, gateway: pid }`). */
export type Servers = Record<string, number>;

/**
 * CPU time of a process in µs, every thread (GC and I/O threads too), from /proc/<pid>/task/<tid>/schedstat
 * (ns resolution); NaN where unavailable.
 */
export function cpuUsOf(pid: number): number {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    }
    return ns / 1000;
  } catch {
    return Number.NaN;
  }
}

function serverCpu(servers: Servers | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(servers ?? {})) out[name] = cpuUsOf(pid);
  return out;
}

function perOpDelta(before: Record<string, number>, after: Record<string, number>, ops: number) {
  const out: Record<string, number> = {};
  for (const name of Object.keys(before)) out[name] = (after[name]! - before[name]!) / ops;
  return out;
}

/** Something measured: one operation (a lock pair, a handler call) on a key. */
export interface Contender {
  readonly id: string;
  readonly label: string;
  /** One operation. `key` is unique to the worker; a contender may derive fresh keys from it. */
  op(key: string, i: number): Promise<void>;
}

export interface SequentialResult {
  id: string;
  label: string;
  /** Every sample, ms, pooled over rounds. */
  summary: Summary;
  /** Per round: p50 and p99 (ms), client CPU per operation (µs) and each server's CPU per operation (µs). */
  rounds: { p50: number; p99: number; cpuUs: number; serverUs: Record<string, number> }[];
}

export interface ConcurrentResult {
  id: string;
  label: string;
  /** Operations per second, median of rounds. */
  perSecond: number;
  rounds: { perSecond: number; cpuUs: number; serverUs: Record<string, number> }[];
}

const rotate = <T>(xs: readonly T[], by: number): T[] => xs.map((_, i) => xs[(i + by) % xs.length]!);

async function warm(contenders: readonly Contender[], n: number, tag: string): Promise<void> {
  for (const c of contenders) {
    for (let i = 0; i < n; i++) await c.op(`${tag}:${c.id}:warm`, i);
  }
}

/** One operation at a time, `perRound` per contender per round. */
export async function sequential(
  contenders: readonly Contender[],
  opts: { rounds: number; perRound: number; warmup: number; tag: string; servers?: Servers },
): Promise<SequentialResult[]> {
  await warm(contenders, opts.warmup, opts.tag);
  const samples = new Map<string, number[]>(contenders.map((c) => [c.id, []]));
  const rounds = new Map<string, SequentialResult['rounds']>(contenders.map((c) => [c.id, []]));
  for (let r = 0; r < opts.rounds; r++) {
    for (const c of rotate(contenders, r)) {
      const key = `${opts.tag}:${c.id}:seq`;
      const times: number[] = new Array(opts.perRound);
      const server0 = serverCpu(opts.servers);
      const cpu0 = process.cpuUsage();
      for (let i = 0; i < opts.perRound; i++) {
        const t0 = performance.now();
        await c.op(key, i);
        times[i] = performance.now() - t0;
      }
      const cpu = process.cpuUsage(cpu0);
      const serverUs = perOpDelta(server0, serverCpu(opts.servers), opts.perRound);
      samples.get(c.id)!.push(...times);
      rounds.get(c.id)!.push({
        p50: median(times),
        p99: percentile(times, 99),
        cpuUs: (cpu.user + cpu.system) / opts.perRound,
        serverUs,
      });
    }
  }
  return contenders.map((c) => ({
    id: c.id,
    label: c.label,
    summary: summarize(samples.get(c.id)!),
    rounds: rounds.get(c.id)!,
  }));
}

/** `workers` loops per contender, each on its own key, for `durationMs` per round. */
export async function concurrent(
  contenders: readonly Contender[],
  opts: { rounds: number; workers: number; durationMs: number; tag: string; servers?: Servers },
): Promise<ConcurrentResult[]> {
  const rounds = new Map<string, ConcurrentResult['rounds']>(contenders.map((c) => [c.id, []]));
  // Warm every worker's connection path (REST agents open one socket per concurrent request).
  for (const c of contenders) {
    await Promise.all(Array.from({ length: opts.workers }, (_, w) => c.op(`${opts.tag}:${c.id}:w${w}`, 0)));
  }
  for (let r = 0; r < opts.rounds; r++) {
    for (const c of rotate(contenders, r)) {
      let done = 0;
      const server0 = serverCpu(opts.servers);
      const cpu0 = process.cpuUsage();
      const start = performance.now();
      const deadline = start + opts.durationMs;
      await Promise.all(
        Array.from({ length: opts.workers }, async (_, w) => {
          const key = `${opts.tag}:${c.id}:w${w}`;
          for (let i = 0; performance.now() < deadline; i++) {
            await c.op(key, i);
            done++;
          }
        }),
      );
      const elapsed = performance.now() - start;
      const cpu = process.cpuUsage(cpu0);
      rounds.get(c.id)!.push({
        perSecond: (done / elapsed) * 1000,
        cpuUs: (cpu.user + cpu.system) / done,
        serverUs: perOpDelta(server0, serverCpu(opts.servers), done),
      });
    }
  }
  return contenders.map((c) => {
    const rs = rounds.get(c.id)!;
    return { id: c.id, label: c.label, perSecond: median(rs.map((x) => x.perSecond)), rounds: rs };
  });
}
