/**
 * The REST transport's connection pool (upstashStore's `maxConnections`), against the gateway and a real
 * redis-server: requests in flight and sockets stay within the bound; calls made while every slot is busy go
 * together when one frees; the wait counts against timeoutMs, and a call that was never sent fails as not
 * ambiguous (nothing reached Redis) while one that was sent and got no reply is ambiguous. The fault proxy
 * (test/support/http-fault-proxy.ts) forwards a request to the gateway but keeps its reply: a slot held
 * until its call times out, the command applied.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type Script,
  type Store,
  StoreUnavailableError,
  upstashStore,
  ValidationError,
} from '../../layers/oncely/src/index.js';
import { type FaultProxy, startFaultProxy } from '../support/http-fault-proxy.js';
import { useGateway, useRedis } from '../support/servers.js';

const MARK_LUA = "redis.call('SET', KEYS[1], ARGV[1]) return 1";
/** Writes its key: a key in Redis afterwards proves the call reached the server. */
const MARK: Script = {
  name: 'mark',
  keys: 1,
  lua: MARK_LUA,
  sha1: createHash('sha1').update(MARK_LUA).digest('hex'),
};

const redis = useRedis();
const gateway = useGateway(redis);
let admin: Redis;
let proxy: FaultProxy | undefined;
const stores: Store[] = [];
const store = (url: string, options: { maxConnections?: number; timeoutMs?: number }) => {
  const s = upstashStore({ url, token: gateway().token, ...options });
  stores.push(s);
  return s;
};

beforeAll(async () => {
  admin = new Redis({ host: redis().host, port: redis().port, protocol: 2 });
  // Loaded up front, so every call is one EVALSHA: no EVAL after NOSCRIPT in the request counts.
  await admin.script('LOAD', MARK_LUA);
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  await proxy?.close();
  proxy = undefined;
});
afterAll(() => {
  admin?.disconnect();
});

let n = 0;
const key = (label: string) => `pool-${label}-${process.pid}-${++n}`;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
/** Blocks the event loop, as a busy machine does: due timers then run in one go, after it. */
const busyFor = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
};
/** How a call settled: its value, or its error. */
const settled = (call: Promise<unknown>) =>
  call.then(
    (value) => ({ value, error: undefined }),
    (error: unknown) => ({ value: undefined, error: error as StoreUnavailableError }),
  );

describe('upstashStore maxConnections', () => {
  it('refuses a bad value, naming the option', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 5000, '8']) {
      expect(() => upstashStore({ url: gateway().url, token: 't', maxConnections: bad as number })).toThrow(
        ValidationError,
      );
      expect(() => upstashStore({ url: gateway().url, token: 't', maxConnections: bad as number })).toThrow(
        /maxConnections must be a whole number from 1 to 1024/,
      );
    }
  });

  it('keeps to its sockets: calls made over many turns are all answered over at most maxConnections', async () => {
    const s = store(gateway().url, { maxConnections: 2 });
    await s.run(MARK, [key('warm')], ['1']); // the client is loaded: the burst below is all requests
    const sockets = gateway().connections;
    const requests = gateway().requests;
    const calls: Promise<unknown>[] = [];
    for (let turn = 0; turn < 40; turn++) {
      for (let i = 0; i < 10; i++) calls.push(s.run(MARK, [key('many')], [String(i)]));
      await nextTurn();
    }
    expect(await Promise.all(calls)).toEqual(calls.map(() => 1));
    expect(gateway().connections - sockets).toBeLessThanOrEqual(2);
    // 40 turns of calls, but whatever waited for a slot went together.
    expect(gateway().requests - requests).toBeLessThan(40);
  });

  it('sends the calls that waited for a busy slot together, as one /pipeline request', async () => {
    proxy = await startFaultProxy(gateway().url);
    const held = key('held');
    proxy.mode = (body) => (body.includes(held) ? 'swallow' : 'pass');
    const s = store(proxy.url, { maxConnections: 1, timeoutMs: 2000 });
    await s.run(MARK, [key('warm')], ['1']);
    const seenBefore = proxy.seen.length;
    const first = settled(s.run(MARK, [held], ['1'])); // takes the one slot and keeps it
    // Halfway through its wait: the calls below still have half their timeoutMs when the slot frees.
    await new Promise((r) => setTimeout(r, 1000));
    const waiting = [];
    for (let turn = 0; turn < 5; turn++) {
      waiting.push(settled(s.run(MARK, [key('waiting')], ['1'])));
      await nextTurn();
    }
    const { error } = await first;
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error?.ambiguous).toBe(true); // sent and applied: the key is there
    expect(await admin.exists(held)).toBe(1);
    const rest = await Promise.all(waiting);
    expect(rest.map((r) => r.value)).toEqual([1, 1, 1, 1, 1]);
    // Six calls, two requests: the held one, then the five that waited, in one pipeline.
    const bodies = proxy.seen.slice(seenBefore).map((x) => JSON.parse(x.body) as unknown[]);
    expect(bodies).toHaveLength(2);
    expect(bodies[1]).toHaveLength(5);
  });

  it('fails a call still waiting for a slot at its deadline as not sent: nothing reaches Redis', async () => {
    proxy = await startFaultProxy(gateway().url);
    const held = key('held');
    proxy.mode = (body) => (body.includes(held) ? 'swallow' : 'pass');
    const timeoutMs = 500;
    const s = store(proxy.url, { maxConnections: 1, timeoutMs });
    await s.run(MARK, [key('warm')], ['1']);
    const seenBefore = proxy.seen.length;
    const first = settled(s.run(MARK, [held], ['1']));
    await nextTurn();
    const queued = key('queued');
    const madeAt = performance.now();
    const second = settled(s.run(MARK, [queued], ['1'])); // waits: the slot is held
    await nextTurn();
    // The process is busy past both deadlines: when it gets to them, the held slot frees and the waiting
    // call's own deadline has passed. Its wait counted, so it is not sent with a fresh timeoutMs.
    busyFor(timeoutMs + 100);
    const [a, b] = await Promise.all([first, second]);
    expect(a.error?.ambiguous).toBe(true);
    expect(b.error).toBeInstanceOf(StoreUnavailableError);
    expect(b.error?.ambiguous).toBe(false);
    expect(b.error?.message).toMatch(/no connection free within 500 ms \(not sent\)/);
    expect(performance.now() - madeAt).toBeGreaterThanOrEqual(timeoutMs);
    expect(proxy.seen.slice(seenBefore).map((x) => x.body.includes(queued))).toEqual([false]);
    expect(await admin.exists(queued)).toBe(0);
  });
});
