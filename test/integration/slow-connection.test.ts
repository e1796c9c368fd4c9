/**
 * A standalone store's connection outlives one call's timeout (issue 21): a server that stops answering for a
 * while (SIGSTOP, shorter than a probe's bound) makes one call time out, and the other calls in flight on the
 * same connection, and those issued after it, are still answered, each with its own reply, on that same
 * connection, in the order they were issued (transport/connection.ts: Connection, Probes). It used to be dropped on the
 * first timeout, failing every other call in flight on it.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisProcess, startRedis } from '../../dev/redis-server.js';
import { type Store, StoreUnavailableError } from '../../layers/oncely/src/index.js';
import { redisStore } from '../../layers/oncely/src/ioredis.js';
import type { Script } from '../../layers/oncely/src/scripts.js';

/** Long enough that a call issued halfway through the pause still has half a timeout left at the resume. */
const TIMEOUT_MS = 2000;
/** How long the server stays paused after the first call has timed out (well within the probe's bound). */
const PAUSED_AFTER_TIMEOUT_MS = 300;
const BURST = 50;

const script = (name: string, lua: string): Script => ({
  name,
  keys: 1,
  lua,
  sha1: createHash('sha1').update(lua).digest('hex'),
});
const ECHO = script('echo', 'return ARGV[1]');
const SET = script('set', "redis.call('SET', KEYS[1], ARGV[1]) return 1");
const DEL = script('del', "return redis.call('DEL', KEYS[1])");

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail');
}

let server: RedisProcess;
let admin: Redis;
const stores: Store[] = [];
beforeAll(async () => {
  server = await startRedis();
  admin = new Redis({ host: server.host, port: server.port, protocol: 2 });
});
afterAll(async () => {
  if (server?.running) server.resume();
  admin?.disconnect();
  await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
  await server?.stop();
});

async function warmStore(): Promise<Store> {
  const store = redisStore({ host: server.host, port: server.port, timeoutMs: TIMEOUT_MS });
  stores.push(store);
  for (const s of [ECHO, SET, DEL]) await store.run(s, ['warm'], ['warm']);
  return store;
}

/** Connections the server has accepted so far (the admin's own was accepted before). */
async function connectionsAccepted(): Promise<number> {
  const info = String(await admin.info('stats'));
  return Number(/total_connections_received:(\d+)/.exec(info)?.[1]);
}

describe('standalone: one call times out on a paused server', () => {
  it('the other calls in flight and those issued after it are answered on the same connection', async () => {
    const store = await warmStore();
    const acceptedBefore = await connectionsAccepted();
    server.pause();
    let resumed = false;
    try {
      const first = rejection(store.run(ECHO, ['k'], ['first']));
      // Halfway through the first call's timeout: a burst behind it on the connection.
      await sleep(TIMEOUT_MS / 2);
      const inFlight = Array.from({ length: BURST }, (_, i) => store.run(ECHO, ['k'], [`in-flight-${i}`]));
      const err = await first;
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as StoreUnavailableError).ambiguous).toBe(true);
      // Issued after the timeout, while the connection is being probed.
      const after = Array.from({ length: BURST }, (_, i) => store.run(ECHO, ['k'], [`after-${i}`]));
      await sleep(PAUSED_AFTER_TIMEOUT_MS);
      server.resume();
      resumed = true;
      expect(await Promise.all(inFlight)).toEqual(inFlight.map((_, i) => `in-flight-${i}`));
      expect(await Promise.all(after)).toEqual(after.map((_, i) => `after-${i}`));
    } finally {
      if (!resumed) server.resume();
    }
    expect(await connectionsAccepted()).toBe(acceptedBefore);
  });

  it('a call issued after one that timed out runs after it (a give-back after an acquire that timed out)', async () => {
    const store = await warmStore();
    const key = `order-${Date.now()}`;
    server.pause();
    let resumed = false;
    try {
      const set = await rejection(store.run(SET, [key], ['taken']));
      expect((set as StoreUnavailableError).ambiguous).toBe(true);
      // Sent behind the SET on the kept connection once the probe has settled: the DEL runs after it.
      const del = store.run(DEL, [key], []);
      await sleep(PAUSED_AFTER_TIMEOUT_MS);
      server.resume();
      resumed = true;
      expect(await del).toBe(1);
    } finally {
      if (!resumed) server.resume();
    }
    expect(await admin.exists(key)).toBe(0);
  });
});
