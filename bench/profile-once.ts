/**
 * bench/profile.ts's run-once modes (see its header): withOnce's own CPU on a store answering from memory
 * (once-self), the bench's run-once contenders side by side (once-vs), redis-server time per command
 * (once-server), and the bench's withOnce for a CPU profile (once-bench, once-dup).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { DEFAULT_FENCE_GRACE_MS } from '../layers/oncely/src/acquire.js';
import { withOnce } from '../layers/oncely/src/index.js';
import { redisStore } from '../layers/oncely/src/ioredis.js';
import { ONCE_CLAIM, ONCE_COMPLETE, type Script } from '../layers/oncely/src/scripts.js';
import type { ScriptArg, Store } from '../layers/oncely/src/transport/types.js';
import { sequential } from './harness.js';
import { CONFIG } from './once-config.js';
import { median } from './stats.js';
import { callContenders, context, type Libs, libs, oncelyCallOptions } from './suite-once.js';

type Op = (i: number) => Promise<unknown>;
type Master = { host: string; port: number; pid: number };

/** The modes that run on their own; once-bench and once-dup give an op for profile.ts's loop (onceOp). */
export const ONCE_MODES = new Set(['once-self', 'once-vs', 'once-server']);

/** Runs one of ONCE_MODES on `master`. */
export async function onceMode(mode: string, n: number, master: Master, tag: string): Promise<void> {
  if (mode === 'once-self') return onceSelfMode(n, tag);
  const l = await onceLibs(master);
  const c0 = new Redis({ host: master.host, port: master.port });
  try {
    if (mode === 'once-server') await onceServerMode(l, c0, n);
    else await onceVsMode(l, master, master.pid, n, tag);
  } finally {
    c0.disconnect();
    await l.close();
  }
}

/** once-bench / once-dup: the bench's withOnce TCP contender's call, and what closes its clients. */
export async function onceOp(
  mode: string,
  master: Master,
  tag: string,
): Promise<{ op: Op; close(): Promise<void> } | undefined> {
  if (mode !== 'once-bench' && mode !== 'once-dup') return undefined;
  const l = await onceLibs(master);
  return { op: onceBenchOp(l, tag, mode === 'once-dup'), close: () => l.close() };
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
