/**
 * What the REST connection pool's size does to a burst: `processes` processes each fire `calls` concurrent
 * withOnce deliveries (test/support/burst-worker.ts) at one local gateway, once per pool size per round,
 * the sizes in a rotated order each round so load from other work falls on all of them alike. Prints one
 * line per burst and a table of medians (docs/benchmarks.md, "REST connection pool").
 *
 *   npx tsx bench/rest-pool.ts [--sizes 1,4,8,16,32,64,0] [--rounds 3] [--processes 4] [--calls 1000]
 *                              [--keys 200] [--burners 0]
 *
 * Figures per burst: every process's first-try p50 (median over processes) and p99 (the highest), answered
 * deliveries and tries (InProgressError retries included) per second of the burst's wall time, sockets and
 * requests the gateway saw. Size 0 is "unbounded" (maxConnections: 1024, the most upstashStore takes: never reached by 1,000 calls in batches). `--burners N` spins N CPU-burning processes meanwhile.
 */
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { startGateway } from '../dev/gateway.js';
import { startRedis } from '../dev/redis-server.js';
import { type BurstOutcome, runBurst } from '../test/support/burst.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1,4,8,16,32,64,0' },
    rounds: { type: 'string', default: '3' },
    processes: { type: 'string', default: '4' },
    calls: { type: 'string', default: '1000' },
    keys: { type: 'string', default: '200' },
    burners: { type: 'string', default: '0' },
    'handler-ms': { type: 'string', default: '20' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const rounds = Number(values.rounds);
const processes = Number(values.processes);
const calls = Number(values.calls);

const burners = Array.from({ length: Number(values.burners) }, () =>
  spawn(
    process.execPath,
    [
      '-e',
      'const end = Date.now() + 1800000; let x = 0; while (Date.now() < end) x = (x * 31 + 7) % 1000003;',
    ],
    { stdio: 'ignore' },
  ),
);
const redis = await startRedis();
const gateway = await startGateway({ redis: { host: redis.host, port: redis.port }, token: 'pool-bench' });

interface Row {
  size: number;
  answered: number;
  calls: number;
  storeErrors: number;
  keysRun: number;
  twice: number;
  p50Ms: number;
  p99Ms: number;
  perSecond: number;
  answeredPerSecond: number;
  sockets: number;
  requests: number;
}
const rows: Row[] = [];
let n = 0;
try {
  for (let round = 0; round < rounds; round++) {
    const order = sizes.map((_, i) => sizes[(i + round) % sizes.length]!);
    for (const size of order) {
      const sockets = gateway.connections;
      const requests = gateway.requests;
      const out: BurstOutcome = await runBurst(
        {
          store: {
            kind: 'rest',
            url: gateway.url,
            token: gateway.token,
            maxConnections: size === 0 ? 1024 : size,
          },
          calls,
          keys: Number(values.keys),
          namespace: `pool-${process.pid}-${++n}`,
          handlerMs: Number(values['handler-ms']),
          tries: 40,
          retryMs: 100,
          budgetMs: 60_000,
        },
        processes,
      );
      const row: Row = {
        size,
        answered: out.answered,
        calls: out.calls,
        storeErrors: out.storeErrors,
        keysRun: out.runs.size,
        twice: [...out.runs.values()].filter((v) => v > 1).length,
        p50Ms: median(out.reports.map((r) => r.p50Ms)),
        p99Ms: Math.max(...out.reports.map((r) => r.p99Ms)),
        perSecond: (out.reports.reduce((s, r) => s + r.tries, 0) / out.wallMs) * 1000,
        answeredPerSecond: (out.answered / out.wallMs) * 1000,
        sockets: gateway.connections - sockets,
        requests: gateway.requests - requests,
      };
      rows.push(row);
      console.log(
        `round ${round + 1} size ${size || '∞'}: answered ${row.answered}/${row.calls}, store errors ${row.storeErrors}, keys run ${row.keysRun} (twice ${row.twice}), first try p50 ${row.p50Ms.toFixed(0)} ms p99 ${row.p99Ms.toFixed(0)} ms, ${row.perSecond.toFixed(0)} tries/s, ${row.answeredPerSecond.toFixed(0)} answered/s, sockets ${row.sockets}, requests ${row.requests}, load ${loadavg()[0]!.toFixed(2)}`,
      );
      if (Object.keys(out.errors).length) console.log('  errors', JSON.stringify(out.errors).slice(0, 300));
    }
  }
} finally {
  await gateway.close();
  await redis.stop();
  for (const b of burners) b.kill('SIGKILL');
}

function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

console.log(
  '\n| maxConnections | answered (each round) | store errors | first try p50 ms | p99 ms | answered/s | tries/s | sockets | requests |',
);
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const size of sizes) {
  const mine = rows.filter((r) => r.size === size);
  console.log(
    `| ${size || 'unbounded'} | ${mine.map((r) => `${r.answered}`).join(', ')} | ${mine.map((r) => `${r.storeErrors}`).join(', ')} | ${median(mine.map((r) => r.p50Ms)).toFixed(0)} | ${median(mine.map((r) => r.p99Ms)).toFixed(0)} | ${median(mine.map((r) => r.answeredPerSecond)).toFixed(0)} | ${median(mine.map((r) => r.perSecond)).toFixed(0)} | ${median(mine.map((r) => r.sockets)).toFixed(0)} | ${median(mine.map((r) => r.requests)).toFixed(0)} |`,
  );
}
