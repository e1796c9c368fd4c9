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
  /** The client it talks through and how it is set up, as docs/benchmarks.md states it on its row. */
  readonly client?: string;
  /** One operation. `key` is unique to the worker; a contender may derive fresh keys from it. */
  op(key: string, i: number): Promise<void>;
}

export interface SequentialResult {
  id: string;
  label: string;
  /** Absent in reports written before contenders named their client. */
  client?: string;
  /** Every sample, ms, pooled over rounds. */
  summary: Summary;
  /** Per round: p50 and p99 (ms), client CPU per operation (µs) and each server's CPU per operation (µs). */
  rounds: { p50: number; p99: number; cpuUs: number; serverUs: Record<string, number> }[];
}

export interface ConcurrentResult {
  id: string;
  label: string;
  /** Absent in reports written before contenders named their client. */
  client?: string;
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
    ...(c.client === undefined ? {} : { client: c.client }),
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
    const client = c.client === undefined ? {} : { client: c.client };
    return { id: c.id, label: c.label, ...client, perSecond: median(rs.map((x) => x.perSecond)), rounds: rs };
  });
}

/** One contender at one concurrency: every call's outcome, pooled over rounds. */
export interface LoadResult {
  id: string;
  label: string;
  concurrency: number;
  /** Calls issued and calls answered (resolved); the rest failed or got no answer within `callTimeoutMs`. */
  calls: number;
  answered: number;
  /** Failed calls by error name (`no answer` for the harness's own bound), with one message of each. */
  errors: Record<string, { count: number; example: string }>;
  /** Every call's time, answered or not (a failed call counts the time its caller waited), ms. */
  summary: Summary;
  /** Per round: answered calls per second, calls issued, calls answered. */
  rounds: { perSecond: number; calls: number; answered: number }[];
}

const NO_ANSWER = 'no answer';

/** `'ok'` when `work` resolves within `ms`, `NO_ANSWER` when it has not by then; its rejection otherwise. */
async function bounded(work: Promise<unknown>, ms: number): Promise<'ok' | typeof NO_ANSWER> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<typeof NO_ANSWER>((resolve) => {
    timer = setTimeout(() => resolve(NO_ANSWER), ms);
  });
  try {
    return await Promise.race([work.then(() => 'ok' as const), bound]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `concurrency` workers per contender, each issuing one call after another for `durationMs` per round,
 * contenders interleaved and rotated per round like `concurrent`. Unlike `concurrent`, a call may fail: its
 * error is counted, not thrown, and the worker goes on. A call with no answer within `callTimeoutMs` (the
 * peers have no timeout of their own) is counted as `no answer` and its worker stops for the round, so no
 * more than `concurrency` calls are ever in flight. Before its first round each contender is warmed with one
 * burst of `concurrency` calls (connections opened, scripts loaded), not counted.
 */
export async function underLoad(
  contenders: readonly Contender[],
  opts: { concurrency: number; rounds: number; durationMs: number; callTimeoutMs: number; tag: string },
): Promise<LoadResult[]> {
  const state = new Map(
    contenders.map((c) => [
      c.id,
      { times: [] as number[], errors: {} as LoadResult['errors'], rounds: [] as LoadResult['rounds'] },
    ]),
  );
  for (const c of contenders) {
    await Promise.allSettled(
      Array.from({ length: opts.concurrency }, (_, w) =>
        bounded(c.op(`${opts.tag}:${c.id}:warm:w${w}`, 0), opts.callTimeoutMs),
      ),
    );
  }
  for (let r = 0; r < opts.rounds; r++) {
    for (const c of rotate(contenders, r)) {
      const s = state.get(c.id)!;
      let calls = 0;
      let answered = 0;
      const fail = (name: string, message: string) => {
        s.errors[name] ??= { count: 0, example: message.slice(0, 160) };
        s.errors[name].count++;
      };
      const start = performance.now();
      const deadline = start + opts.durationMs;
      await Promise.all(
        Array.from({ length: opts.concurrency }, async (_, w) => {
          const key = `${opts.tag}:${c.id}:r${r}:w${w}`;
          for (let i = 0; performance.now() < deadline; i++) {
            calls++;
            const t0 = performance.now();
            try {
              const out = await bounded(c.op(key, i), opts.callTimeoutMs);
              s.times.push(performance.now() - t0);
              if (out === 'ok') answered++;
              else {
                fail(NO_ANSWER, `no answer within ${opts.callTimeoutMs} ms (the harness's bound)`);
                return;
              }
            } catch (err) {
              s.times.push(performance.now() - t0);
              const e = err instanceof Error ? err : new Error(String(err));
              fail(e.name, e.message);
            }
          }
        }),
      );
      const elapsed = performance.now() - start;
      s.rounds.push({ perSecond: (answered / elapsed) * 1000, calls, answered });
    }
  }
  return contenders.map((c) => {
    const s = state.get(c.id)!;
    return {
      id: c.id,
      label: c.label,
      concurrency: opts.concurrency,
      calls: s.rounds.reduce((n, x) => n + x.calls, 0),
      answered: s.rounds.reduce((n, x) => n + x.answered, 0),
      errors: s.errors,
      summary: summarize(s.times),
      rounds: s.rounds,
    };
  });
}
