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
 *   own-lock, own-redlock, own-node-redlock-1, own-node-redlock
 *                  the library's own CPU per pair, without ioredis, the socket or a server: the same pairs
 *                  on clients that answer every EVALSHA at once (OwnClient), 200,000 pairs a round, three
 *                  rounds; far less noisy than the figures above on a busy machine
 *
 * Starts its own redis-servers on free ports and stops them.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import Redlock from 'redlock';
import { startMasters } from '../dev/redis-server.js';
import { DEFAULT_FENCE_GRACE_MS } from '../layers/oncely/src/acquire.js';
import { createLock, createRedlock, withOnce } from '../layers/oncely/src/index.js';
import { redisStore } from '../layers/oncely/src/ioredis.js';
import { withOnceBatch } from '../layers/oncely/src/once/batch.js';
import { ACQUIRE, LOCK_SCRIPTS, ONCE_SCRIPTS, RELEASE } from '../layers/oncely/src/scripts.js';
import { CONFIG } from './once-config.js';
import { ONCE_MODES, onceMode, onceOp } from './profile-once.js';
import { context, sqsEvent } from './suite-once.js';

type Op = (i: number) => Promise<unknown>;

/**
 * A client that answers at once, for the own-* modes: what oncely (or node-redlock) spends around a call, with
 * no ioredis, socket or server behind it. An acquire (four or more ARGV) answers {1, fence}, anything else 1.
 */
class OwnClient extends EventEmitter {
  readonly options = { host: 'own', port: 0 };
  readonly status = 'ready';
  readonly commandQueue = { length: 0 };
  fence = 1;
  evalsha(_sha: string, keys: number, ...rest: unknown[]): Promise<unknown> {
    return Promise.resolve(rest.length - keys >= 4 ? [1, this.fence++] : 1);
  }
  eval(_lua: string, keys: number, ...rest: unknown[]): Promise<unknown> {
    return this.evalsha('', keys, ...rest);
  }
  info(): Promise<string> {
    return Promise.resolve('connected_slaves:0');
  }
  pipeline() {
    const replies: Promise<unknown>[] = [];
    const p = {
      info: () => {
        replies.push(this.info());
        return p;
      },
      evalsha: (sha: string, keys: number, ...rest: unknown[]) => {
        replies.push(this.evalsha(sha, keys, ...rest));
        return p;
      },
      eval: (lua: string, keys: number, ...rest: unknown[]) => {
        replies.push(this.eval(lua, keys, ...rest));
        return p;
      },
      exec: () => Promise.all(replies.map((r) => r.then((v) => [null, v]))),
    };
    return p;
  }
}

/** The own-* modes: `pair` on OwnClients, three rounds of n pairs after a warm-up, µs of CPU per pair. */
async function ownMode(mode: string, n: number): Promise<void> {
  const own = (count: number) => Array.from({ length: count }, () => new OwnClient() as unknown as Redis);
  let op: Op;
  if (mode === 'own-lock') {
    const lock = createLock(redisStore(own(1)[0]!));
    op = async (i) => (await lock.tryAcquire(`k-${i}`, { ttlMs: 10_000 }))?.release();
  } else if (mode === 'own-redlock') {
    const rl = createRedlock(own(3).map((c) => redisStore(c)));
    op = async (i) => (await rl.tryAcquire(`k-${i}`, { ttlMs: 10_000 }))?.release();
  } else if (mode === 'own-node-redlock-1' || mode === 'own-node-redlock') {
    const rl = new Redlock(own(mode === 'own-node-redlock' ? 3 : 1), { retryCount: 0 });
    op = async (i) => (await rl.acquire([`k-${i}`], 10_000)).release();
  } else throw new Error(`unknown mode ${mode}`);
  for (let i = 0; i < 20_000; i++) await op(-i - 1);
  for (let round = 0; round < 3; round++) {
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < n; i++) await op(round * n + i);
    const cpu = process.cpuUsage(cpu0);
    console.log(`${mode}: ${n} pairs, own CPU ${((cpu.user + cpu.system) / n).toFixed(2)} µs/pair`);
  }
}

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

async function main(): Promise<void> {
  const mode = process.argv[2] ?? 'once-first';
  if (mode.startsWith('own-')) return ownMode(mode, Number(process.argv[3] ?? 200_000));
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
  if (mode === 'server') {
    try {
      await serverMode(c0, n, tag);
    } finally {
      for (const c of clients) c.disconnect();
      await masters.stop();
    }
    return;
  }
  if (ONCE_MODES.has(mode)) {
    try {
      await onceMode(mode, n, masters.nodes[0]!, tag);
    } finally {
      for (const c of clients) c.disconnect();
      await masters.stop();
    }
    return;
  }
  const once = await onceOp(mode, masters.nodes[0]!, tag);
  let op: Op;
  switch (mode) {
    case 'once-bench':
    case 'once-dup':
      op = once!.op;
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
