/**
 * Client CPU per call of one hot path, for profiling: `node --import tsx --cpu-prof bench/profile.ts <mode> [n]`
 * writes a .cpuprofile of the loop (open it in Chrome DevTools) and prints µs of client CPU per call.
 *
 *   once-first     withOnce, a new event per call (claim + complete), TCP
 *   once-raw       the same two scripts sent from bare ioredis
 *   once-bench     withOnce as the bench's run-once rows call it (key by expression, no payload check), a new
 *                  event per call
 *   once-dup       the same withOnce, a duplicate per call (one of 50 completed events, as the bench's row)
 *   once-self      withOnce's own client CPU, no network: the bench's options on a store that answers at once
 *                  from memory (what ONCE_CLAIM / ONCE_COMPLETE would), a first call and a duplicate per call,
 *                  interleaved rounds of n calls: µs per call of oncely's code alone
 *   once-server    redis-server µs per call by command (INFO commandstats), the bench's withOnce TCP and
 *                  Powertools contenders, a first call and a duplicate: where a call's server time goes
 *   once-vs        the bench's run-once contenders (suite-once.ts) side by side, interleaved rounds of n calls:
 *                  p50, client CPU and redis CPU per call, and each ratio to Powertools per round (median)
 *   lock           oncely lock pair (acquire + release), TCP
 *   lock-raw       oncely's lock scripts from bare ioredis
 *   redlock        oncely createRedlock pair over 3 masters
 *   node-redlock   the redlock package's pair over the same 3 clients
 *   node-redlock-1 the redlock package's pair on the one client of `lock` (the TCP table's peer)
 *   batch          withOnceBatch, an SQS batch of 10 new records per call (the bench's row), TCP
 *   batch-server   the same batches; redis-server µs per batch, per command (INFO commandstats): where the
 *                  batch's server time goes
 *   server         redis-server time in scripts per pair (INFO commandstats), interleaved rounds: oncely's
 *                  lock scripts, the same without the fence counter (what the fence costs the
 *                  server), and node-redlock's pair
 *
 * Starts its own redis-servers on free ports and stops them.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import Redlock from 'redlock';
import { startMasters } from '../dev/redis-server.js';
import { DEFAULT_FENCE_GRACE_MS } from '../layers/oncely/src/acquire.js';
import { createLock, createRedlock, withOnce } from '../layers/oncely/src/index.js';
import { redisStore } from '../layers/oncely/src/ioredis.js';
import { withOnceBatch } from '../layers/oncely/src/once/batch.js';
import {
  ACQUIRE,
  LOCK_SCRIPTS,
  ONCE_CLAIM,
  ONCE_COMPLETE,
  ONCE_SCRIPTS,
  RELEASE,
  type Script,
} from '../layers/oncely/src/scripts.js';
import type { ScriptArg, Store } from '../layers/oncely/src/transport/types.js';
import { sequential } from './harness.js';
import { CONFIG } from './once-config.js';
import { median } from './stats.js';
import { callContenders, context, type Libs, libs, oncelyCallOptions, sqsEvent } from './suite-once.js';

type Op = (i: number) => Promise<unknown>;

/** ACQUIRE without the fence: SET NX PX, or the holder's PTTL. Only for the `server` mode's comparison. */
const ACQUIRE_UNFENCED = `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, 0} end
return {0, redis.call('PTTL', KEYS[1])}`;

/**
 * redis-server's time in scripts (µs) since its stats were last reset: EVALSHA and EVAL, whose figures include
 * the commands a script calls (commandstats lists those on their own too, so they are not added again).
 */
async function serverUs(c: Redis): Promise<number> {
  const info = (await c.info('commandstats')) as string;
  let us = 0;
  for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=\d+,usec=(\d+)/gm)) us += Number(m[1]);
  return us;
}

/** `server` mode: redis-server µs in scripts per pair for each contender, 6 interleaved rounds of n pairs. */
async function serverMode(c0: Redis, n: number, tag: string): Promise<void> {
  const g = DEFAULT_FENCE_GRACE_MS;
  const unfenced = (await c0.script('LOAD', ACQUIRE_UNFENCED)) as string;
  const rl = new Redlock([c0], { retryCount: 0 });
  const tok = () => randomBytes(16).toString('base64url');
  const contenders: Record<string, (i: number) => Promise<unknown>> = {
    'oncely scripts': async (i) => {
      const k = [`oncely:{${tag}-f${i}}:lock`, `oncely:{${tag}-f${i}}:fence`];
      const t = tok();
      await c0.evalsha(ACQUIRE.sha1, 2, ...k, t, 10_000, 10_000 + g, Date.now());
      await c0.evalsha(RELEASE.sha1, 2, ...k, t, g);
    },
    'oncely scripts without the fence counter': async (i) => {
      const k = `oncely:{${tag}-u${i}}:lock`;
      const t = tok();
      await c0.evalsha(unfenced, 1, k, t, 10_000);
      await c0.evalsha(RELEASE.sha1, 1, k, t);
    },
    'node-redlock': async (i) => {
      const lock = await rl.acquire([`${tag}-r${i}`], 10_000);
      await lock.release();
    },
  };
  const perPair: Record<string, number[]> = {};
  for (let round = 0; round < 6; round++) {
    for (const [name, op] of Object.entries(contenders)) {
      for (let i = 0; i < 200; i++) await op(-(round * 1000 + i) - 1); // warm-up
      await c0.config('RESETSTAT');
      for (let i = 0; i < n; i++) await op(round * n + i);
      const us = (await serverUs(c0)) / n;
      perPair[name] = [...(perPair[name] ?? []), us];
    }
  }
  for (const [name, xs] of Object.entries(perPair)) {
    const sorted = [...xs].sort((a, b) => a - b);
    console.log(
      `${name}: redis-server ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} µs/pair ` +
        `(rounds ${sorted[0]!.toFixed(1)}-${sorted.at(-1)!.toFixed(1)})`,
    );
  }
}

/** The bench's run-once contenders (suite-once.ts libs()) on one master; the REST store is never called. */
async function onceLibs(master: { host: string; port: number }): Promise<Libs> {
  const layer = await import('../layers/oncely/src/index.js');
  return libs(layer, master, 'http://127.0.0.1:9');
}

/** `once-bench` / `once-dup`: the bench's withOnce TCP contender, a new event or a duplicate per call. */
function onceBenchOp(l: Libs, tag: string, duplicate: boolean): Op {
  const pool = Array.from({ length: CONFIG.duplicatePool }, (_, i) => ({ id: `${tag}-dup-${i}` }));
  return duplicate
    ? (i) => l.oncelyTcp(pool[Math.abs(i) % pool.length]!)
    : (i) => l.oncelyTcp({ id: `${tag}-${i}` });
}

/** A store answering ONCE_CLAIM and ONCE_COMPLETE at once from memory, as the scripts would (no expiry). */
function memoryOnceStore(): Store {
  const done = new Map<string, unknown>();
  let fence = 1_000;
  const answer = (script: Script, keys: readonly string[], args: readonly ScriptArg[]): unknown => {
    if (script === ONCE_CLAIM) {
      const text = done.get(keys[0]!);
      return text === undefined ? [1, String(++fence)] : [2, text, 3_600_000];
    }
    if (script === ONCE_COMPLETE) {
      done.set(keys[0]!, args[2]);
      return 1;
    }
    throw new Error(`memory store: ${script.name} not supported`);
  };
  return {
    kind: 'redis',
    name: 'memory',
    run: (script, keys, args) => Promise.resolve(answer(script, keys, args)),
    runMany: (calls) =>
      Promise.resolve(calls.map((c) => ({ ok: true, value: answer(c.script, c.keys, c.args) }) as const)),
    close: () => Promise.resolve(),
  };
}

/** `once-self`: withOnce's own CPU per first call and per duplicate (memoryOnceStore), interleaved rounds. */
async function onceSelfMode(n: number, tag: string): Promise<void> {
  const h = withOnce(async (e: { id: string }) => ({ ok: e.id }), {
    store: memoryOnceStore(),
    ...oncelyCallOptions,
  });
  const pool = Array.from({ length: CONFIG.duplicatePool }, (_, i) => ({ id: `${tag}-dup-${i}` }));
  let fresh = 0;
  const ops: Record<string, () => Promise<unknown>> = {
    first: () => h({ id: `${tag}-${++fresh}` }, context),
    duplicate: () => h(pool[fresh++ % pool.length]!, context),
  };
  for (const op of Object.values(ops)) for (let i = 0; i < 2000; i++) await op(); // JIT warm-up
  const us: Record<string, number[]> = { first: [], duplicate: [] };
  for (let round = 0; round < 8; round++) {
    for (const [name, op] of Object.entries(ops)) {
      const cpu0 = process.cpuUsage();
      for (let i = 0; i < n; i++) await op();
      const cpu = process.cpuUsage(cpu0);
      us[name]!.push((cpu.user + cpu.system) / n);
    }
  }
  for (const [name, xs] of Object.entries(us))
    console.log(
      `once-self ${name}: ${median(xs).toFixed(1)} µs/call (rounds ${xs.map((x) => x.toFixed(1)).join(' ')})`,
    );
}

/** ONCE_CLAIM then ONCE_COMPLETE (or the stored result) through redisStore on an ioredis client of its own. */
function storeOnly(master: { host: string; port: number }): { op(id: string): Promise<unknown> } {
  const store = redisStore(new Redis({ host: master.host, port: master.port, protocol: 2 }));
  const grace = DEFAULT_FENCE_GRACE_MS;
  return {
    async op(id) {
      const keys = [`oncely:once:{store:${id}}:rec`, `oncely:once:{store:${id}}:fence`];
      const token = randomBytes(16).toString('base64url');
      const reply = (await store.run(ONCE_CLAIM, keys, [token, 30_000, '', 30_000 + grace, Date.now()])) as [
        number,
        string,
      ];
      if (reply[0] === 2) return JSON.parse(reply[1].slice(1));
      const result = { ok: id };
      await store.run(ONCE_COMPLETE, keys, [
        token,
        reply[1],
        `j${JSON.stringify(result)}`,
        CONFIG.retentionMs,
        CONFIG.retentionMs + grace,
        '',
      ]);
      return result;
    },
  };
}

/** `once-server`: redis-server µs per call, per command, for each contender's first call and duplicate. */
async function onceServerMode(l: Libs, c0: Redis, n: number): Promise<void> {
  const { first, duplicate } = callContenders(l, CONFIG.duplicatePool);
  for (const [part, contenders] of [
    ['first', first],
    ['duplicate', duplicate],
  ] as const) {
    for (const c of contenders.filter((x) => x.id === 'oncely' || x.id === 'powertools')) {
      const key = `server-${part}-${c.id}-${process.pid}`;
      for (let i = 0; i < 300; i++) await c.op(key, i); // warm-up (and the duplicates' pool)
      await c0.config('RESETSTAT');
      for (let i = 0; i < n; i++) await c.op(key, i);
      const info = (await c0.info('commandstats')) as string;
      const rows: string[] = [];
      for (const m of info.matchAll(/^cmdstat_(\w+):calls=(\d+),usec=(\d+)/gm))
        if (m[1] !== 'config' && m[1] !== 'info')
          rows.push(`${m[1]} ${(Number(m[2]) / n).toFixed(1)}× ${(Number(m[3]) / n).toFixed(1)} µs`);
      console.log(`${part.padEnd(9)} ${c.id.padEnd(10)} ${rows.join(' · ')}`);
    }
  }
}

/** `once-vs`: the bench's first-call and duplicate rows, interleaved rounds of n calls per contender. */
async function onceVsMode(
  l: Libs,
  master: { host: string; port: number },
  redisPid: number,
  n: number,
  tag: string,
): Promise<void> {
  const { first, duplicate } = callContenders(l, CONFIG.duplicatePool);
  const keep = new Set(['oncely', 'powertools', 'raw-once', 'store']);
  // oncely's two scripts through redisStore (the transport withOnce uses), without the engine.
  const store = storeOnly(master);
  let fresh = 0;
  first.push({
    id: 'store',
    label: 'redisStore, two scripts',
    op: async (key) => {
      await store.op(`${key}-${++fresh}`);
    },
  });
  duplicate.push({
    id: 'store',
    label: 'redisStore, two scripts',
    op: async (key, i) => {
      await store.op(`${key}-d${i % CONFIG.duplicatePool}`);
    },
  });
  for (const [name, contenders] of [
    ['first', first],
    ['duplicate', duplicate],
  ] as const) {
    const results = await sequential(
      contenders.filter((c) => keep.has(c.id)),
      { rounds: 6, perRound: n, warmup: 500, tag: `${tag}-${name}`, servers: { redis: redisPid } },
    );
    const peer = results.find((r) => r.id === 'powertools')!;
    for (const r of results) {
      const ratios = r.rounds.map((x, i) => x.p50 / peer.rounds[i]!.p50);
      const cpuRatios = r.rounds.map((x, i) => x.cpuUs / peer.rounds[i]!.cpuUs);
      const f = (xs: number[], d = 0) => median(xs).toFixed(d);
      console.log(
        `${name.padEnd(9)} ${r.id.padEnd(10)} p50 ${f(r.rounds.map((x) => x.p50 * 1000))} µs ` +
          `(${f(ratios, 3)}× Powertools), client CPU ${f(r.rounds.map((x) => x.cpuUs))} µs ` +
          `(${f(cpuRatios, 3)}×; rounds ${r.rounds.map((x) => x.cpuUs.toFixed(0)).join(' ')}), ` +
          `redis ${f(r.rounds.map((x) => x.serverUs.redis ?? Number.NaN))} µs`,
      );
    }
  }
}

async function main(): Promise<void> {
  const mode = process.argv[2] ?? 'once-first';
  const n = Number(process.argv[3] ?? 5000);
  const masters = await startMasters(3);
  const clients = masters.nodes.map((m) => new Redis({ host: m.host, port: m.port, protocol: 2 }));
  const c0 = clients[0]!;
  for (const c of clients) for (const s of [...ONCE_SCRIPTS, ...LOCK_SCRIPTS]) await c.script('LOAD', s.lua);
  const tag = `${mode}-${process.pid}`;
  const tok = () => randomBytes(16).toString('base64url');
  const handler = async (e: { id: string }) => ({ ok: e.id });
  const batch = () =>
    withOnceBatch(async (r) => ({ ok: r.messageId }), {
      store: redisStore(c0),
      key: { jmespath: CONFIG.recordKey },
      payload: { jmespath: CONFIG.recordPayload },
      retentionMs: CONFIG.retentionMs,
      logger: () => {},
    });
  if (mode === 'batch-server') {
    try {
      const h = batch();
      for (let i = 0; i < 200; i++) await h(sqsEvent(`${tag}-w`), context);
      await c0.config('RESETSTAT');
      for (let i = 0; i < n; i++) await h(sqsEvent(tag), context);
      const info = (await c0.info('commandstats')) as string;
      for (const m of info.matchAll(/^cmdstat_(\w+):calls=(\d+),usec=(\d+)/gm))
        if (m[1] !== 'config' && m[1] !== 'info')
          console.log(
            `${m[1]}: ${(Number(m[2]) / n).toFixed(1)} calls, ${(Number(m[3]) / n).toFixed(1)} µs per batch`,
          );
    } finally {
      for (const c of clients) c.disconnect();
      await masters.stop();
    }
    return;
  }
  if (mode === 'once-self') {
    try {
      await onceSelfMode(n, tag);
    } finally {
      for (const c of clients) c.disconnect();
      await masters.stop();
    }
    return;
  }
  if (mode === 'server') {
    try {
      await serverMode(c0, n, tag);
    } finally {
      for (const c of clients) c.disconnect();
      await masters.stop();
    }
    return;
  }
  const once =
    mode === 'once-bench' || mode === 'once-dup' || mode === 'once-vs' || mode === 'once-server'
      ? await onceLibs(masters.nodes[0]!)
      : undefined;
  if (once && mode === 'once-server') {
    try {
      await onceServerMode(
        once,
        new Redis({ host: masters.nodes[0]!.host, port: masters.nodes[0]!.port }),
        n,
      );
    } finally {
      await once.close();
      for (const c of clients) c.disconnect();
      await masters.stop();
    }
    return;
  }
  if (once && mode === 'once-vs') {
    try {
      await onceVsMode(once, masters.nodes[0]!, masters.nodes[0]!.pid, n, tag);
    } finally {
      await once.close();
      for (const c of clients) c.disconnect();
      await masters.stop();
    }
    return;
  }
  let op: Op;
  switch (mode) {
    case 'once-bench':
    case 'once-dup':
      op = onceBenchOp(once!, tag, mode === 'once-dup');
      break;
    case 'once-first': {
      const h = withOnce(handler, {
        store: redisStore(c0),
        key: (e: { id: string }) => e.id,
        logger: () => {},
      });
      op = (i) => h({ id: `${tag}-${i}` }, context);
      break;
    }
    case 'once-raw': {
      const [claim, complete] = ONCE_SCRIPTS;
      const g = DEFAULT_FENCE_GRACE_MS;
      op = async (i) => {
        const keys = [`oncely:once:{raw:${tag}-${i}}:rec`, `oncely:once:{raw:${tag}-${i}}:fence`];
        const t = tok();
        const r = (await c0.evalsha(claim!.sha1, 2, ...keys, t, 30_000, '', 30_000 + g, Date.now())) as [
          number,
          string,
        ];
        const result = await handler({ id: String(i) });
        await c0.evalsha(
          complete!.sha1,
          2,
          ...keys,
          t,
          r[1],
          `j${JSON.stringify(result)}`,
          86_400_000,
          86_400_000 + g,
          '',
        );
      };
      break;
    }
    case 'lock': {
      const lock = createLock(redisStore(c0));
      op = async (i) => {
        const lease = await lock.tryAcquire(`${tag}-${i}`, { ttlMs: 10_000 });
        await lease?.release();
      };
      break;
    }
    case 'lock-raw': {
      const g = DEFAULT_FENCE_GRACE_MS;
      op = async (i) => {
        const k = [`oncely:{${tag}-${i}}:lock`, `oncely:{${tag}-${i}}:fence`];
        const t = tok();
        await c0.evalsha(ACQUIRE.sha1, 2, ...k, t, 10_000, 10_000 + g, Date.now());
        await c0.evalsha(RELEASE.sha1, 2, ...k, t, g);
      };
      break;
    }
    case 'redlock': {
      const rl = createRedlock(clients.map((c) => redisStore(c)));
      op = async (i) => {
        const lease = await rl.tryAcquire(`${tag}-${i}`, { ttlMs: 10_000 });
        await lease?.release();
      };
      break;
    }
    case 'node-redlock': {
      const rl = new Redlock(clients, { retryCount: 0 });
      op = async (i) => {
        const lock = await rl.acquire([`${tag}-${i}`], 10_000);
        await lock.release();
      };
      break;
    }
    case 'node-redlock-1': {
      const rl = new Redlock([c0], { retryCount: 0 });
      op = async (i) => {
        const lock = await rl.acquire([`${tag}-${i}`], 10_000);
        await lock.release();
      };
      break;
    }
    case 'batch': {
      const h = batch();
      op = (i) => h(sqsEvent(`${tag}-${i}`), context);
      break;
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
  try {
    for (let i = 0; i < 500; i++) await op(-i - 1); // warm-up: connections, scripts, JIT
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await op(i);
    const cpu = process.cpuUsage(cpu0);
    const wall = performance.now() - t0;
    console.log(
      `${mode}: ${n} calls, client CPU ${((cpu.user + cpu.system) / n).toFixed(1)} µs/call ` +
        `(user ${(cpu.user / n).toFixed(1)}), wall ${((wall * 1000) / n).toFixed(0)} µs/call`,
    );
  } finally {
    await once?.close();
    for (const c of clients) c.disconnect();
    await masters.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
