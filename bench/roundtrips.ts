/**
 * Round trips per operation, counted outside the client: REST requests at the gateway, TCP request/reply
 * exchanges at a proxy (bench/servers.ts), and the Redis commands each operation ran (`INFO commandstats`
 * deltas; script-internal commands count there, not on the wire).
 */
import type { Redis } from 'ioredis';
import type { Held, LockContender } from './locks.js';
import { commandCalls, describeCommands, perOp } from './servers.js';

export type Counter = () => Promise<number>;

export interface OpCount {
  /** Round trips per operation (a mean over `n`; a fraction means the library is not constant). */
  roundTrips: number;
  /** Redis commands per operation, e.g. `evalsha 1 · get 1 · incr 1 · set 1`. */
  commands: string;
}

/** Lets requests still in flight land before a counter is read (Redlock returns at quorum, not at the last
 * node). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

/** Runs `fn` `n` times, one at a time, and returns the per-run round trips and commands. */
export async function countEach(
  counter: Counter,
  admin: Redis,
  n: number,
  fn: (i: number) => Promise<void>,
): Promise<OpCount> {
  await settle();
  const calls0 = await commandCalls(admin);
  const rt0 = await counter();
  for (let i = 0; i < n; i++) await fn(i);
  await settle();
  const rt1 = await counter();
  const calls1 = await commandCalls(admin);
  return { roundTrips: (rt1 - rt0) / n, commands: describeCommands(perOp(calls0, calls1, n)) };
}

export interface LockCounts {
  acquire: OpCount;
  extend: OpCount;
  release: OpCount;
}

/**
 * acquire `n` fresh keys, extend each, release each: three counted phases. `pauseMs` after each operation
 * lets every node answer before the next one starts (Redlock returns at quorum: a straggler's request and
 * the next operation's would otherwise cross the wire as one exchange).
 */
export async function countLock(
  contender: LockContender,
  counter: Counter,
  admin: Redis,
  tag: string,
  n = 20,
  pauseMs = 0,
): Promise<LockCounts> {
  const pause = () => (pauseMs > 0 ? new Promise((resolve) => setTimeout(resolve, pauseMs)) : undefined);
  // Warm: connections open, scripts cached; what is counted is the steady state.
  const w = await contender.acquire(`${tag}:warm`);
  await w.extend();
  await w.release();
  const held: Held[] = [];
  const acquire = await countEach(counter, admin, n, async (i) => {
    held.push(await contender.acquire(`${tag}:${i}`));
    await pause();
  });
  const extend = await countEach(counter, admin, n, async (i) => {
    await held[i]!.extend();
    await pause();
  });
  const release = await countEach(counter, admin, n, async (i) => {
    await held[i]!.release();
    await pause();
  });
  return { acquire, extend, release };
}
