/**
 * The REST transport's own contract, beyond the lock suite: its node:http requester (timeouts, refused
 * connections, auth, HTTP errors, sync tokens, base64) and the batching of concurrent calls into one request.
 * A stub HTTP server plays the misbehaving endpoint; the gateway plays Upstash.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../dev/redis-server.js';
import {
  createLock,
  type Script,
  StoreAuthError,
  StoreError,
  StoreUnavailableError,
  upstashStore,
} from '../../layers/oncely/src/index.js';
import { useGateway, useRedis } from '../support/servers.js';

const script = (name: string, keys: number, lua: string): Script => ({
  name,
  keys,
  lua,
  sha1: createHash('sha1').update(lua).digest('hex'),
});
const ECHO = script('echo', 0, 'return ARGV');
const STATUS = script('status', 1, "return redis.call('SET', KEYS[1], 'v')");

/** The error a call failed with (the test fails if it succeeded). */
async function failure(call: Promise<unknown>): Promise<StoreError> {
  try {
    await call;
  } catch (err) {
    return err as StoreError;
  }
  throw new Error('expected the call to fail');
}

/** A stub endpoint: `respond` decides per request; every request's headers are recorded. */
async function stub(respond: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void) {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    req.on('end', () => respond(req, res, seen.length));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const json = (
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

describe('REST requester against a stub endpoint', () => {
  it('no reply within timeoutMs: StoreUnavailableError, ambiguous (the command may have run)', async () => {
    const s = await stub(() => {}); // accepts, never answers
    const store = upstashStore({ url: s.url, token: 't', timeoutMs: 200 });
    try {
      const t0 = performance.now();
      const err = await failure(store.run(ECHO, [], ['x']));
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(err).toMatchObject({ ambiguous: true });
      expect(err.message).toMatch(/no reply within 200 ms/);
      expect(performance.now() - t0).toBeLessThan(1000);
    } finally {
      await store.close();
      await s.close();
    }
  });

  it('EVALSHA and the EVAL after NOSCRIPT share one timeoutMs: the EVAL waits only for what is left', async () => {
    // EVALSHA gets NOSCRIPT after 900 ms, the EVAL is never answered: with one deadline the call fails at
    // about 1000 ms; a second full timeoutMs would make it 1900 ms.
    const s = await stub((_req, res, n) => {
      if (n === 1) setTimeout(() => json(res, 400, { error: 'NOSCRIPT No matching script' }), 900);
    });
    const store = upstashStore({ url: s.url, token: 't', timeoutMs: 1000 });
    try {
      const t0 = performance.now();
      const err = await failure(store.run(ECHO, [], ['x']));
      const elapsed = performance.now() - t0;
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(err.message).toMatch(/no reply within 1000 ms/);
      expect(s.seen).toHaveLength(2);
      expect(elapsed).toBeGreaterThanOrEqual(950);
      expect(elapsed).toBeLessThan(1600);
    } finally {
      await store.close();
      await s.close();
    }
  });

  it('connection refused: StoreUnavailableError, not ambiguous', async () => {
    const store = upstashStore({ url: `http://127.0.0.1:${await freePort()}`, token: 't', timeoutMs: 500 });
    const err = await failure(store.run(ECHO, [], ['x']));
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err).toMatchObject({ ambiguous: false });
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('401 and 403: StoreAuthError without the token; 5xx ambiguous; a bare 4xx not', async () => {
    const token = 'secret-token-xyz-0123456789';
    const statuses = [401, 403, 503, 404];
    const s = await stub((_req, res, n) => {
      const status = statuses[(n - 1) % statuses.length]!;
      if (status === 404) res.writeHead(404).end('not found');
      else json(res, status, { error: status === 503 ? `ERR down (${token})` : 'Unauthorized' });
    });
    const store = upstashStore({ url: s.url, token, timeoutMs: 1000 });
    try {
      const errs = [];
      for (let i = 0; i < statuses.length; i++) errs.push(await failure(store.run(ECHO, [], ['x'])));
      expect(errs[0]).toBeInstanceOf(StoreAuthError);
      expect(errs[1]).toBeInstanceOf(StoreAuthError);
      expect(errs[2]).toBeInstanceOf(StoreUnavailableError);
      expect(errs[2]).toMatchObject({ ambiguous: true });
      expect(errs[3]).toBeInstanceOf(StoreUnavailableError);
      expect(errs[3]).toMatchObject({ ambiguous: false });
      for (const e of errs) expect(`${e.message} ${e.stack} ${JSON.stringify(e)}`).not.toContain(token);
      expect(s.seen[0]?.authorization).toBe(`Bearer ${token}`);
    } finally {
      await store.close();
      await s.close();
    }
  });

  it('never retries: a connection reset mid-request is one request, reported as ambiguous', async () => {
    const s = await stub((req) => req.socket.destroy()); // read the command, then drop the connection
    const store = upstashStore({ url: s.url, token: 't', timeoutMs: 2000 });
    try {
      const single = await failure(store.run(ECHO, [], ['x']));
      expect(single).toBeInstanceOf(StoreUnavailableError);
      expect(single).toMatchObject({ ambiguous: true });
      expect(s.seen).toHaveLength(1);
      const batch = await failure(Promise.all([store.run(ECHO, [], ['a']), store.run(ECHO, [], ['b'])]));
      expect(batch).toMatchObject({ ambiguous: true });
      expect(s.seen).toHaveLength(2);
    } finally {
      await store.close();
      await s.close();
    }
  });

  it('echoes the last upstash-sync-token (read-your-writes) and keeps one connection alive', async () => {
    let connections = 0;
    const s = await stub((_req, res, n) =>
      json(res, 200, { result: n }, { 'upstash-sync-token': `sync-${n}` }),
    );
    const store = upstashStore({ url: s.url, token: 't' });
    try {
      for (let i = 0; i < 3; i++) await store.run(ECHO, [], ['x']);
      expect(s.seen.map((h) => h['upstash-sync-token'])).toEqual([undefined, 'sync-1', 'sync-2']);
      connections = new Set(s.seen.map((h) => h.connection)).size;
      expect(connections).toBe(1);
      expect(s.seen.every((h) => h.connection === 'keep-alive')).toBe(true);
    } finally {
      await store.close();
      await s.close();
    }
  });
});

describe('REST transport against the gateway', () => {
  const redis = useRedis();
  const gateway = useGateway(redis);
  let admin: Redis;
  beforeAll(() => {
    admin = new Redis({ host: redis().host, port: redis().port, protocol: 2 });
  });
  afterAll(() => admin?.disconnect());

  it.each([false, true])(
    'base64 %s: strings, nested arrays and a status reply come back as sent',
    async (base64) => {
      const store = upstashStore({ url: gateway().url, token: gateway().token, base64 });
      const text = 'héllo ✓ {"a":1}';
      expect(await store.run(ECHO, [], [text, 'OK', 42])).toEqual([text, 'OK', '42']);
      expect(await store.run(STATUS, [`b64-${base64}`], [])).toBe('OK');
      const [many] = await store.runMany([{ script: ECHO, keys: [], args: [text] }]);
      expect(many).toEqual({ ok: true, value: [text] });
      await store.close();
    },
  );

  it('concurrent calls share one /pipeline request; a failing call fails alone', async () => {
    const store = upstashStore({ url: gateway().url, token: gateway().token });
    const lock = createLock(store);
    await lock.tryAcquire('warm', { ttlMs: 1000 }); // scripts cached, connection open
    await admin.hset('oncely:{batch-bad}:lock', 'f', 'v'); // GET on a hash: WRONGTYPE
    const before = gateway().requests;
    const results = await Promise.allSettled([
      ...Array.from({ length: 20 }, (_, i) => lock.tryAcquire(`batch-${i}`, { ttlMs: 5000 })),
      lock.tryAcquire('batch-bad', { ttlMs: 5000 }),
    ]);
    expect(gateway().requests - before).toBe(1);
    const fences = results.slice(0, 20).map((r) => (r.status === 'fulfilled' ? r.value?.fence : 'failed'));
    expect(fences).toEqual(Array.from({ length: 20 }, () => expect.any(Number)));
    const bad = results[20]!;
    expect(bad.status).toBe('rejected');
    expect((bad as PromiseRejectedResult).reason).toBeInstanceOf(StoreError);
    expect(String((bad as PromiseRejectedResult).reason.message)).toContain('WRONGTYPE');
    await store.close();
  });

  it('more than 32 calls in one tick go as several requests, every call answered', async () => {
    const store = upstashStore({ url: gateway().url, token: gateway().token });
    const lock = createLock(store);
    await lock.tryAcquire('many-warm', { ttlMs: 1000 });
    const before = gateway().requests;
    const leases = await Promise.all(
      Array.from({ length: 40 }, (_, i) => lock.tryAcquire(`many-${i}`, { ttlMs: 5000 })),
    );
    expect(gateway().requests - before).toBe(2); // 32 + 8
    expect(leases.map((l) => l?.fence)).toEqual(Array.from({ length: 40 }, () => expect.any(Number)));
    await store.close();
  });

  it('a batch after SCRIPT FLUSH falls back to EVAL for every call: two requests, all answered', async () => {
    const store = upstashStore({ url: gateway().url, token: gateway().token });
    const lock = createLock(store);
    await lock.tryAcquire('flush-warm', { ttlMs: 1000 });
    await admin.script('FLUSH');
    const before = gateway().requests;
    const leases = await Promise.all(
      Array.from({ length: 5 }, (_, i) => lock.tryAcquire(`flush-${i}`, { ttlMs: 5000 })),
    );
    expect(gateway().requests - before).toBe(2);
    expect(leases.every((l) => l !== null)).toBe(true);
    await store.close();
  });
});
