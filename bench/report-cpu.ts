/**
 * The CPU rows of the targets (issue 23): client CPU and server CPU per operation, oncely against its peer on
 * each row the issue names. Both are measured in the same interleaved rounds as the p50 rows
 * (harness.sequential, around each contender's round: `process.cpuUsage()` for this process, every thread of
 * each server process from /proc/<pid>/task/<tid>/schedstat), so each ratio is the median of per-round ratios
 * and carries its per-round range, like the p50 rows.
 */
import type { SequentialResult } from './harness.js';
import type { BenchData } from './report.js';
import type { OpCount } from './roundtrips.js';
import { type Evaluated, fmtRatio, median, ratioOfRounds, ratioSpread, type Target } from './stats.js';
import type { LockSuiteResult } from './suite-locks.js';

type Skipped = { skipped: string };
const live = <T extends object>(x: T | Skipped | undefined): T | undefined =>
  x === undefined || 'skipped' in x ? undefined : (x as T);
const find = <T extends { id: string }>(xs: readonly T[] | undefined, id: string) =>
  xs?.find((x) => x.id === id);

/** Client CPU per operation ≤ the peer's: nothing but oncely's own code stands between the two figures. */
export const CLIENT_CPU_LIMIT = 1.0;
/** Server CPU per operation ≤ 1.30× the peer's (the fence's price, paid on the server only)... */
export const SERVER_CPU_LIMIT = 1.3;
/** ...and ≤ 1.50× Powertools' for the SQS batch. */
export const BATCH_SERVER_CPU_LIMIT = 1.5;

/** Which servers' CPU a row is charged: a name of `serverUs` counts when `pick` says so. */
type ServerPick = (server: string) => boolean;

/**
 * The servers a lock table's row ran on. The TCP suite measures the 3-master cluster beside the standalone
 * server in every round, so only the cluster row is charged the cluster's masters and every other row only
 * the standalone redis-server (an idle cluster's own cron and bus traffic is nobody's operation).
 */
export function lockServers(suite: { name: string }, id: string): ServerPick {
  if (suite.name !== 'TCP') return () => true;
  return id === 'oncely-cluster' ? (s) => s.startsWith('cluster') : (s) => s === 'redis';
}

/** Per round: the CPU µs per operation of the servers `pick` selects, summed. */
export function serverRounds(r: SequentialResult | undefined, pick: ServerPick): number[] {
  return (
    r?.rounds.map((x) => {
      const names = Object.keys(x.serverUs).filter(pick);
      return names.length ? names.reduce((s, n) => s + (x.serverUs[n] ?? Number.NaN), 0) : Number.NaN;
    }) ?? []
  );
}
export const clientRounds = (r: SequentialResult | undefined) => r?.rounds.map((x) => x.cpuUs) ?? [];
const med = (xs: number[]) => median(xs.filter(Number.isFinite));

/** One row of the table: oncely and its peer, measured in the same rounds. */
export interface CpuRow {
  /** Id suffix of the targets: `cpu.client.<key>` and `cpu.server.<key>`. */
  key: string;
  /** The operation, e.g. `TCP pair`, `SQS batch of 10`. */
  what: string;
  /** The peer's name, e.g. `node-redlock on the same client`. */
  peer: string;
  /** What the server figure sums, e.g. `redis`, `gateway + redis`. */
  server: string;
  oncely: SequentialResult | undefined;
  other: SequentialResult | undefined;
  /** oncely's own scripts sent from the bare client, where the suite runs them (informational). */
  bare: SequentialResult | undefined;
  servers: ServerPick;
  serverLimit: number;
  /** Commands per operation as counted (INFO commandstats), oncely's and the peer's. */
  commands: [string | undefined, string | undefined];
  /** Where the commands were counted, when not on every server the row is charged (` on each master`). */
  commandsWhere: string;
  notRun: string | undefined;
}

const lockCommands = (s: LockSuiteResult | undefined, id: string) => {
  const c = s?.counts[id];
  return c ? `${c.acquire.commands} + ${c.release.commands}` : undefined;
};

export function cpuRows(d: BenchData): CpuRow[] {
  const rows: CpuRow[] = [];
  const lock = (key: string, what: string, peer: string, server: string, raw: LockSuiteResult | Skipped) => {
    const s = live(raw);
    const peerId = s?.name === 'REST' ? 'upstash-lock' : 'redlock';
    const pick = s ? lockServers(s, 'oncely') : () => true;
    rows.push({
      key,
      what,
      peer,
      server,
      oncely: find(s?.sequential, 'oncely'),
      other: find(s?.sequential, peerId),
      bare: find(s?.sequential, 'raw-fenced'),
      servers: pick,
      serverLimit: SERVER_CPU_LIMIT,
      commands: [lockCommands(s, 'oncely'), lockCommands(s, peerId)],
      commandsWhere: s?.name.startsWith('Redlock') ? ' on each master' : '',
      notRun: s ? undefined : (raw as Skipped).skipped,
    });
  };
  lock('tcp', 'TCP pair', 'node-redlock on the same client', 'redis', d.tcp);
  for (const [i, raw] of d.redlock.entries()) {
    const n = live(raw)?.name.replace(/^Redlock /, '') ?? String([3, 5][i] ?? '?');
    lock(`redlock${n}`, `Redlock ${n} pair`, 'node-redlock', `redis (${n} masters)`, raw);
  }
  const once = live(d.once);
  const notRun = once ? undefined : (d.once as Skipped).skipped;
  const redis: ServerPick = (s) => s === 'redis';
  for (const kind of ['first', 'duplicate'] as const) {
    const ops = (id: string): OpCount | undefined => once?.counts[id]?.[kind];
    rows.push({
      key: `once.${kind}`,
      what: kind === 'first' ? 'withOnce first call' : 'withOnce duplicate',
      peer: 'Powertools (TCP)',
      server: 'redis',
      oncely: find(once?.[kind], 'oncely'),
      other: find(once?.[kind], 'powertools'),
      bare: find(once?.[kind], 'raw-once'),
      servers: redis,
      serverLimit: SERVER_CPU_LIMIT,
      commands: [ops('oncely')?.commands, ops('powertools')?.commands],
      commandsWhere: '',
      notRun,
    });
  }
  rows.push({
    key: 'batch',
    what: 'SQS batch of 10',
    peer: 'Powertools',
    server: 'redis',
    oncely: find(once?.batch, 'oncely'),
    other: find(once?.batch, 'powertools'),
    bare: undefined,
    servers: redis,
    serverLimit: BATCH_SERVER_CPU_LIMIT,
    commands: [once?.batchCounts.oncely?.commands, once?.batchCounts.powertools?.commands],
    commandsWhere: '',
    notRun,
  });
  lock('rest', 'REST pair', '@upstash/lock', 'gateway + redis', d.rest);
  return rows;
}

/** Client CPU and server CPU per operation for every row of the table, as targets. */
export function cpuTargets(d: BenchData): Target[] {
  return cpuRows(d).flatMap((r) => {
    const client = [clientRounds(r.oncely), clientRounds(r.other)] as const;
    const server = [serverRounds(r.oncely, r.servers), serverRounds(r.other, r.servers)] as const;
    const note = r.notRun === undefined ? {} : { note: r.notRun };
    return [
      {
        id: `cpu.client.${r.key}`,
        label: `client CPU per ${r.what} / ${r.peer}`,
        actual: ratioOfRounds(...client),
        spread: ratioSpread(...client),
        op: '<=',
        limit: CLIENT_CPU_LIMIT,
        unit: 'ratio',
        ...note,
      },
      {
        id: `cpu.server.${r.key}`,
        label: `${r.server} CPU per ${r.what} / ${r.peer}`,
        actual: ratioOfRounds(...server),
        spread: ratioSpread(...server),
        op: '<=',
        limit: r.serverLimit,
        unit: 'ratio',
        ...note,
      },
    ] satisfies Target[];
  });
}

const us = (x: number) => (Number.isFinite(x) ? `${Math.round(x).toLocaleString('en-US')} µs` : 'n/a');

/**
 * The paragraph of a CPU row left FAIL, every figure from this run: both sides' CPU per operation (medians of
 * the rounds), the bare scripts where the suite sends them (which part is the scripts, which the library), and
 * for the server the commands each side ran per operation, as counted.
 */
export function cpuFailNote(d: BenchData, r: Evaluated): string | undefined {
  const m = /^cpu\.(client|server)\.(.+)$/.exec(r.id);
  const row = m && cpuRows(d).find((x) => x.key === m[2]);
  if (!m || !row) return undefined;
  const range =
    r.spread && Number.isFinite(r.spread[0])
      ? `single rounds ranged ${fmtRatio(r.spread[0])}–${fmtRatio(r.spread[1])}`
      : 'no per-round range';
  const head = `**${r.label}: ${fmtRatio(r.actual ?? Number.NaN, 3)} (${range}).**`;
  const per = row.what.endsWith('pair') ? 'pair' : row.what.startsWith('SQS') ? 'batch' : 'call';
  if (m[1] === 'client') {
    const bare = row.bare
      ? ` oncely's scripts sent from the bare client, with no library around them, cost the client ` +
        `${us(med(clientRounds(row.bare)))}; the rest of oncely's figure is the library's own work around them.`
      : '';
    return (
      `${head} This run, client CPU per ${per} (this process, every thread, median of the rounds): oncely ` +
      `${us(med(clientRounds(row.oncely)))}, ${row.peer} ${us(med(clientRounds(row.other)))}.${bare} ` +
      'bench/profile.ts profiles each path under `--cpu-prof` (its header lists the modes).'
    );
  }
  const bare = row.bare
    ? ` oncely's scripts sent from the bare client, with no library around them, cost the server ` +
      `${us(med(serverRounds(row.bare, row.servers)))}.`
    : '';
  const [mine, theirs] = row.commands;
  return (
    `${head} This run, ${row.server} CPU per ${per} (every thread of the server processes, median of the ` +
    `rounds): oncely ${us(med(serverRounds(row.oncely, row.servers)))}, ${row.peer} ` +
    `${us(med(serverRounds(row.other, row.servers)))}.${bare} Commands per ${per}${row.commandsWhere}, as ` +
    'counted: oncely ' +
    `${mine ?? 'n/a'}; ${row.peer} ${theirs ?? 'n/a'}.`
  );
}
