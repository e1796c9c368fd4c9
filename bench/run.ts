/**
 * `npm run bench`: oncely side by side with redlock, @upstash/lock and Powertools idempotency, on servers
 * this script starts (and stops) itself. Prints PASS/FAIL per target and writes docs/benchmarks.md and the
 * charts docs/benchmarks.svg and docs/benchmarks-scaling.svg. Usage: USAGE below (`npm run bench -- --help`).
 *
 * Exit code 0 whatever the verdicts (a FAIL is a finding, reported in the doc); 1 if the run itself broke.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildBundles, coldStarts } from './bundles.js';
import { ceiling } from './ceiling.js';
import { panelsOf, scalingPanels, svgChart, svgScaling } from './chart.js';
import { notes } from './notes.js';
import {
  type BenchData,
  consoleSummary,
  isSkipped,
  type Machine,
  markdown,
  SCALING_CHART,
  type Skipped,
  targets,
} from './report.js';
import { startStack, TOKEN } from './servers.js';
import { effectsSuite } from './suite-effects.js';
import { latencySuite } from './suite-latency.js';
import { lockRest, lockTcp, type Sizes } from './suite-locks.js';
import { onceSuite } from './suite-once.js';
import { lockRedlock } from './suite-redlock.js';
import { replicaSuite } from './suite-replicas.js';
import { SCALING_FULL, SCALING_QUICK, scalingSuite } from './suite-scaling.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const SUITES = [
  'ceiling',
  'tcp',
  'rest',
  'redlock',
  'once',
  'replicas',
  'scaling',
  'latency',
  'effects',
  'bundles',
] as const;
type Suite = (typeof SUITES)[number];

/**
 * Warm-up operations per contender before the first round: enough for V8 to have optimised each path. With 300,
 * the first rounds' client CPU still carried the optimising compiler's threads (process.cpuUsage counts every
 * thread): oncely's TCP pair measured 130-325 µs against 50-75 µs once warm, and the longer a library's
 * path, the more of its first rounds went to compiling it, so the CPU rows compared compile time. From about
 * 2,000 on, the process's CPU and its main thread's agree within a few µs.
 */
const WARMUP = 2000;

const FULL: Sizes & { cold: number; ceilingRequests: number } = {
  rounds: 10,
  perRound: 1000,
  warmup: WARMUP,
  workers: 50,
  durationMs: 1000,
  countN: 20,
  cold: 12,
  ceilingRequests: 100_000,
};
const QUICK: typeof FULL = {
  rounds: 3,
  perRound: 150,
  warmup: WARMUP,
  workers: 50,
  durationMs: 250,
  countN: 10,
  cold: 3,
  ceilingRequests: 20_000,
};

const USAGE = `npm run bench [-- options]
  (none)              full run (under 10 minutes), writes docs/benchmarks.md and its charts
  --quick             fewer rounds, for checking; prints, and writes the docs only with --write
  --only a,b          only these suites: ${SUITES.join(', ')}
                      (--only scaling: under 2 minutes; --only latency: about a minute);
                      writes the docs only with --write
  --no-write          print only
  --report FILE       write the docs again from a run's raw figures (/tmp/oncely-bench-full.json)
  --help              this text`;

function machine(): Machine {
  let redis = 'unknown';
  try {
    redis = /v=(\S+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))?.[1] ?? redis;
  } catch {
    // reported as unknown
  }
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown CPU',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis,
    loadAverage: os.loadavg(),
  };
}

function commit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'layers', 'bench'], {
      cwd: root,
      encoding: 'utf8',
    }).trim();
    return dirty ? `${sha}+changes` : sha;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      write: { type: 'boolean' },
      'no-write': { type: 'boolean', default: false },
      report: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.report) {
    const data = JSON.parse(readFileSync(values.report, 'utf8')) as BenchData;
    const results = targets(data);
    console.log(consoleSummary(data, results));
    writeDocs(data, results);
    return;
  }
  const only = new Set((values.only?.split(',') ?? SUITES).map((s) => s.trim()) as Suite[]);
  for (const s of only)
    if (!SUITES.includes(s)) throw new Error(`--only: unknown suite "${s}" (${SUITES.join(', ')})`);
  const quick = values.quick ?? false;
  // Only a full run of every suite replaces the committed doc, unless --write says otherwise.
  const write = !values['no-write'] && (values.write ?? (!quick && values.only === undefined));
  const sizes = quick ? QUICK : FULL;
  // Suites with no CPU rows keep the warm-up they were tuned with (dynalite and the replica wait are slow).
  const noCpuRows = { ...sizes, warmup: 300 };
  const started = performance.now();
  const log = (s: string) =>
    console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${s}`);
  const skip = (why: string): Skipped => ({ skipped: why });
  const off = skip('not selected (--only)');

  const data: BenchData = {
    mode: quick ? 'quick' : 'full',
    startedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    durationS: 0,
    machine: machine(),
    sizes,
    commit: commit(),
    ceiling: off,
    tcp: off,
    rest: off,
    redlock: [off],
    once: off,
    replicas: off,
    scaling: off,
    latency: off,
    effects: off,
    bundles: off,
    cold: off,
  };
  log(`${data.mode} run on ${data.machine.cpu} × ${data.machine.cores}, Node ${data.machine.node}`);
  const stack = await startStack();
  const tmp = mkdtempSync(join(os.tmpdir(), 'oncely-bench-'));
  try {
    log(
      `redis-server pid ${stack.redis.pid} :${stack.redis.port}, gateway pid ${stack.gateway.pid} ` +
        `${stack.gateway.url}`,
    );
    if (only.has('ceiling')) {
      log('loopback ceiling (redis-benchmark)');
      data.ceiling = await ceiling(stack.redis, sizes.ceilingRequests);
    }
    if (only.has('tcp')) {
      log('lock pairs over TCP');
      data.tcp = await lockTcp(stack, sizes, log);
    }
    if (only.has('rest')) {
      log('lock pairs over REST');
      data.rest = await lockRest(stack, sizes, log);
    }
    if (only.has('redlock')) {
      log('Redlock');
      data.redlock = [await lockRedlock(3, sizes, log), await lockRedlock(5, sizes, log)];
    }
    if (only.has('once')) {
      log('run-once');
      data.once = await onceSuite(stack, sizes, log);
    }
    if (only.has('replicas')) {
      log('the replica wait (3 + 3 cluster)');
      data.replicas = await replicaSuite(noCpuRows, log);
    }
    if (only.has('scaling')) {
      log('scaling: 1 to 1,000 concurrent calls (REST, TCP, 3-master cluster)');
      data.scaling = await scalingSuite(stack, quick ? SCALING_QUICK : SCALING_FULL, log);
    }
    if (only.has('latency')) {
      log('latency: lock pairs and withOnce at a 0.5-2 ms round trip (delay proxy), every contender alike');
      data.latency = await latencySuite(stack, sizes, log);
    }
    if (only.has('effects')) {
      log('fenced writes vs the same writes unfenced (Redis, PostgreSQL, DynamoDB on dynalite)');
      data.effects = await effectsSuite(stack, noCpuRows, log);
    }
    if (only.has('bundles')) {
      log('bundles (esbuild)');
      const built = await buildBundles(tmp);
      data.bundles = built;
      log(`cold starts: ${sizes.cold} fresh processes per bundle`);
      data.cold = await coldStarts(
        built,
        (i) => ({
          url: stack.gateway.url,
          token: TOKEN,
          host: stack.redis.host,
          port: stack.redis.port,
          key: `bench:cold:${process.pid}:${i}`,
        }),
        sizes.cold,
      );
    }
  } finally {
    await stack.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  data.durationS = (performance.now() - started) / 1000;

  const results = targets(data);
  // A partial run names its suites, so it never overwrites a whole run's raw figures.
  const part = values.only === undefined ? '' : `-${[...only].join('-')}`;
  const rawPath = join(os.tmpdir(), `oncely-bench-${data.mode}${part}.json`);
  writeFileSync(rawPath, JSON.stringify(data, null, 2));
  console.log(`\n${consoleSummary(data, results)}\nraw figures: ${rawPath}`);
  if (write) writeDocs(data, results);
}

function writeDocs(data: BenchData, results: ReturnType<typeof targets>): void {
  const docs = join(root, 'docs');
  mkdirSync(docs, { recursive: true });
  const caption =
    `oncely (blue) vs peers, ${data.mode} run ${data.startedAt}, ` +
    `${data.machine.cores} cores, Node ${data.machine.node}`;
  writeFileSync(join(docs, 'benchmarks.svg'), svgChart(panelsOf(data), caption));
  if (data.scaling && !isSkipped(data.scaling)) {
    const levels = data.scaling.sizes.concurrency;
    const title = `oncely (blue) vs peers, calls/s at ${levels.join(', ')} calls in flight, ${caption.slice(caption.indexOf(',') + 2)}`;
    writeFileSync(join(docs, SCALING_CHART), svgScaling(scalingPanels(data.scaling), levels, title));
  }
  writeFileSync(join(docs, 'benchmarks.md'), markdown(data, results, notes(data, results)));
  console.log(
    `wrote docs/benchmarks.md, docs/benchmarks.svg${data.scaling && !isSkipped(data.scaling) ? ` and docs/${SCALING_CHART}` : ''}`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
