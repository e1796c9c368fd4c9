import { createHash } from 'node:crypto';
import { Redis } from '@upstash/redis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Gateway, startGateway } from '../../dev/gateway.js';
import { useGateway, useRedis } from '../support/servers.js';

/** The conformance suite of the REST gateway against the real `@upstash/redis` client. */

const redis = useRedis();
const gateway = useGateway(redis);

let n = 0;
const key = (label: string) => `gw:${label}:${++n}`;
const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');

type Encoding = 'base64' | false;

function upstash(gw: Gateway, responseEncoding: Encoding, enableAutoPipelining: boolean, token = gw.token) {
  return new Redis({
    url: gw.url,
    token,
    responseEncoding,
    enableAutoPipelining,
    automaticDeserialization: false,
    retry: false,
    enableTelemetry: false,
  });
}

/** A raw request, bypassing the client: status and parsed JSON body. */
async function post(
  gw: Gateway,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: unknown; headers: Headers }> {
  const res = await fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gw.token}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json(), headers: res.headers };
}

const NESTED_LUA = `
  -- integers, bulk strings (UTF-8), nil (false), an empty array, a status reply, nesting three deep
  return { 1, ARGV[1], { 2, false, 'OK', {} }, redis.status_reply('OK'), KEYS[1], -7, { { ARGV[1] } } }
`;

describe.each([
  { encoding: 'base64' as Encoding, autoPipelining: false },
  { encoding: false as Encoding, autoPipelining: false },
  { encoding: 'base64' as Encoding, autoPipelining: true },
  { encoding: false as Encoding, autoPipelining: true },
])(
  '@upstash/redis, responseEncoding $encoding, auto-pipelining $autoPipelining',
  ({ encoding, autoPipelining }) => {
    const client = () => upstash(gateway(), encoding, autoPipelining);

    it('SET NX PX, GET, PTTL, PEXPIRE, EXISTS, INCR, DEL', async () => {
      const r = client();
      const k = key('str');
      const counter = key('counter');
      expect(await r.set(k, 'é✓', { nx: true, px: 5000 })).toBe('OK');
      expect(await r.set(k, 'other', { nx: true, px: 5000 })).toBeNull();
      expect(await r.get(k)).toBe('é✓');
      const pttl = await r.pttl(k);
      expect(pttl).toBeGreaterThan(4000);
      expect(pttl).toBeLessThanOrEqual(5000);
      expect(await r.pexpire(k, 60_000)).toBe(1);
      expect(await r.pttl(k)).toBeGreaterThan(5000);
      expect(await r.exists(k, key('missing'))).toBe(1);
      expect(await r.incr(counter)).toBe(1);
      expect(await r.incr(counter)).toBe(2);
      expect(await r.del(k, counter)).toBe(2);
      expect(await r.get(k)).toBeNull();
      expect(await r.pttl(k)).toBe(-2);
      expect(await r.pexpire(k, 1000)).toBe(0);
    });

    it('values that look like protocol tokens survive: "OK", base64 text, "", digits, JSON', async () => {
      const r = client();
      for (const value of ['OK', 'dmFsdWU=', 'T0s=', '', '0042', '{"a":[1,"é✓"]}', ' spaced \n line ']) {
        const k = key('value');
        await r.set(k, value);
        expect(await r.get(k)).toBe(value);
      }
    });

    it('HSET, HGET, HGETALL (a flat field/value array: automaticDeserialization is off)', async () => {
      const r = client();
      const h = key('hash');
      expect(await r.hset(h, { state: 'IN_PROGRESS', owner: 'é✓' })).toBe(2);
      expect(await r.hget(h, 'owner')).toBe('é✓');
      expect(await r.hget(h, 'missing')).toBeNull();
      const all = (await r.hgetall(h)) as unknown as string[];
      expect(all).toHaveLength(4);
      expect(Object.fromEntries([0, 2].map((i) => [all[i], all[i + 1]]))).toEqual({
        state: 'IN_PROGRESS',
        owner: 'é✓',
      });
    });

    it('EVAL returns nested arrays, nil, integers, status replies and UTF-8 strings intact', async () => {
      const r = client();
      const k = key('lua');
      expect(await r.eval(NESTED_LUA, [k], ['é✓'])).toEqual([
        1,
        'é✓',
        [2, null, 'OK', []],
        'OK',
        k,
        -7,
        [['é✓']],
      ]);
      expect(await r.eval('return nil', [], [])).toBeNull();
      expect(await r.eval('return tonumber(ARGV[1]) + 1', [], [41])).toBe(42);
      expect(await r.eval("return 'OK'", [], [])).toBe('OK');
    });

    it('SCRIPT LOAD / EXISTS / FLUSH, EVALSHA, and the NOSCRIPT error', async () => {
      const r = client();
      const lua = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}";
      const k = key('sha');
      const sha = await r.scriptLoad(lua);
      expect(sha).toBe(sha1(lua));
      expect(await r.scriptExists(sha, sha1('never loaded'))).toEqual([1, 0]);
      expect(await r.evalsha(sha, [k], ['é✓'])).toEqual([k, 'é✓', 1]);
      expect(await r.scriptFlush()).toBe('OK');
      expect(await r.scriptExists(sha)).toEqual([0]);
      const error = await r.evalsha(sha, [k], ['x']).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toContain('NOSCRIPT');
    });

    it('a pipeline keeps going past an error in the middle (keepErrors)', async () => {
      const r = client();
      const k = key('pipe');
      const lua = 'return ARGV[1]';
      const p = r.pipeline();
      p.set(k, 'text');
      p.incr(k); // WRONGTYPE-ish: not an integer
      p.get(k);
      p.evalsha(sha1(lua), [], ['x']); // never loaded: NOSCRIPT per item, as runMany's fallback expects
      p.eval(NESTED_LUA, [k], ['é✓']);
      p.pttl(k);
      const results = await p.exec({ keepErrors: true });
      expect(results).toHaveLength(6);
      expect(results[0]).toEqual({ result: 'OK', error: undefined });
      expect(results[1]?.error).toMatch(/^ERR value is not an integer/);
      expect(results[2]?.result).toBe('text');
      expect(results[3]?.error).toMatch(/^NOSCRIPT/);
      expect(results[4]?.result).toEqual([1, 'é✓', [2, null, 'OK', []], 'OK', k, -7, [['é✓']]]);
      expect(results[5]?.result).toBe(-1);
      // without keepErrors the client throws on the first failed command
      const strict = r.pipeline();
      strict.set(k, 'text');
      strict.incr(k);
      await expect(strict.exec()).rejects.toThrow(/Command 2 \[ incr \] failed: ERR value is not an integer/);
    });

    it('multi(): one MULTI/EXEC, run-time errors per command', async () => {
      const r = client();
      const k = key('multi');
      const text = key('multi-text');
      await r.set(text, 'not a number');
      const m = r.multi();
      m.set(k, '1');
      m.incr(k);
      m.incr(text);
      m.get(k);
      m.hset(key('multi-h'), { a: 'é✓' });
      const results = await m.exec({ keepErrors: true });
      expect(results.map((x) => x.result ?? x.error)).toEqual([
        'OK',
        2,
        'ERR value is not an integer or out of range',
        '2',
        1,
      ]);
    });
  },
);

describe('REST protocol details', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('401 {"error":"Unauthorized"} for a missing or wrong token; no token in messages or logs', async () => {
    const gw = gateway();
    const logged: unknown[] = [];
    for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
      vi.spyOn(console, method).mockImplementation((...args: unknown[]) => void logged.push(...args));
    }
    const wrong = 'wrong-token-0123456789abcdef';
    for (const encoding of ['base64', false] as const) {
      const error = (await upstash(gw, encoding, false, wrong)
        .get('k')
        .catch((e: unknown) => e)) as Error;
      expect(error).toBeInstanceOf(Error);
      expect(error.message).toMatch(/Unauthorized/);
      expect(`${error.message}\n${error.stack}`).not.toContain(wrong);
      expect(`${error.message}\n${error.stack}`).not.toContain(gw.token);
    }
    for (const authorization of [
      undefined,
      `Bearer ${wrong}`,
      `Bearer ${gw.token}x`,
      gw.token,
      `Basic ${gw.token}`,
    ]) {
      const res = await fetch(gw.url, {
        method: 'POST',
        headers: authorization ? { authorization } : {},
        body: '["PING"]',
      });
      expect(res.status).toBe(401);
      const text = await res.text();
      expect(JSON.parse(text)).toEqual({ error: 'Unauthorized' });
      expect(text).not.toContain(gw.token);
    }
    expect((await post(gw, '/', ['PING'])).json).toEqual({ result: 'PONG' });
    expect(JSON.stringify(logged)).not.toContain(gw.token);
    expect(String(gw)).not.toContain(gw.token);
    expect(JSON.stringify(gw)).not.toContain(gw.token);
  });

  it('malformed JSON and bad bodies are 400; a Redis error on / is 400 with its message', async () => {
    const gw = gateway();
    expect(await post(gw, '/', '{"nope"')).toMatchObject({
      status: 400,
      json: { error: expect.any(String) },
    });
    expect(await post(gw, '/pipeline', '[["PING"]')).toMatchObject({ status: 400 });
    expect(await post(gw, '/', [])).toMatchObject({ status: 400 });
    expect(await post(gw, '/', { cmd: 'PING' })).toMatchObject({ status: 400 });
    expect(await post(gw, '/', ['SET', 'k', { nested: true }])).toMatchObject({ status: 400 });
    expect(await post(gw, '/pipeline', [])).toMatchObject({ status: 400 });
    expect(await post(gw, '/pipeline', ['PING'])).toMatchObject({ status: 400 });
    expect(await post(gw, '/', ['GET'])).toEqual({
      status: 400,
      json: { error: "ERR wrong number of arguments for 'get' command" },
      headers: expect.anything(),
    });
    expect(await post(gw, '/', ['NOSUCHCOMMAND', 'x'])).toMatchObject({
      status: 400,
      json: { error: expect.stringMatching(/^ERR unknown command/) },
    });
    // commands that would change the one shared connection's state are refused
    for (const command of [['MULTI'], ['SUBSCRIBE', 'c'], ['SELECT', '1'], ['BLPOP', 'l', '0']]) {
      expect(await post(gw, '/', command)).toMatchObject({
        status: 400,
        json: { error: expect.stringMatching(/not supported/) },
      });
    }
    // numbers and booleans are sent as their text, as the client serializes them
    const k = key('numbers');
    expect((await post(gw, '/', ['SET', k, 12.5, 'PX', 60000])).json).toEqual({ result: 'OK' });
    expect((await post(gw, '/', ['GET', k])).json).toEqual({ result: '12.5' });
  });

  it('server administration Upstash refuses is refused as an error reply: SHUTDOWN, CONFIG, DEBUG, ...', async () => {
    const gw = gateway();
    for (const command of [
      ['SHUTDOWN', 'NOSAVE'],
      ['shutdown'],
      ['CONFIG', 'SET', 'maxmemory', '1'],
      ['DEBUG', 'SLEEP', '5'],
      ['SAVE'],
      ['REPLICAOF', '127.0.0.1', '1'],
      ['ACL', 'SETUSER', 'x'],
    ]) {
      expect(await post(gw, '/', command), command.join(' ')).toMatchObject({
        status: 400,
        json: {
          error: expect.stringMatching(/^ERR '\w+' is server administration, which Upstash .*refuses/),
        },
      });
    }
    expect(await post(gw, '/pipeline', [['PING'], ['SHUTDOWN', 'NOSAVE']])).toMatchObject({ status: 400 });
    // Still up, and the server behind it too.
    expect((await post(gw, '/', ['PING'])).json).toEqual({ result: 'PONG' });
  });

  it('base64 on the wire: every string but a top-level "OK" is base64; numbers and nil as is', async () => {
    const gw = gateway();
    const b64 = { 'upstash-encoding': 'base64' };
    const enc = (s: string) => Buffer.from(s).toString('base64');
    const k = key('wire');
    expect((await post(gw, '/', ['SET', k, 'é✓'], b64)).json).toEqual({ result: 'OK' });
    expect((await post(gw, '/', ['GET', k], b64)).json).toEqual({ result: enc('é✓') });
    expect((await post(gw, '/', ['GET', k])).json).toEqual({ result: 'é✓' });
    expect((await post(gw, '/', ['PING'], b64)).json).toEqual({ result: enc('PONG') });
    expect((await post(gw, '/', ['EVAL', NESTED_LUA, '1', k, 'é✓'], b64)).json).toEqual({
      result: [1, enc('é✓'), [2, null, enc('OK'), []], enc('OK'), enc(k), -7, [[enc('é✓')]]],
    });
    expect(
      (
        await post(
          gw,
          '/pipeline',
          [
            ['SET', k, 'v'],
            ['INCR', k],
            ['GET', k],
          ],
          b64,
        )
      ).json,
    ).toEqual([
      { result: 'OK' },
      { error: 'ERR value is not an integer or out of range' },
      { result: enc('v') },
    ]);
    // binary-safe: bytes that are not UTF-8 come back exact in base64
    const bin = key('binary');
    await post(gw, '/', ['EVAL', "redis.call('SET', KEYS[1], string.char(255, 0, 128)) return 1", '1', bin]);
    expect((await post(gw, '/', ['GET', bin], b64)).json).toEqual({
      result: Buffer.from([255, 0, 128]).toString('base64'),
    });
  });

  it('/multi-exec is atomic: concurrent transactions never interleave on the shared connection', async () => {
    const gw = gateway();
    const k = key('atomic');
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? post(gw, '/multi-exec', [
              ['INCR', k],
              ['INCR', k],
              ['INCR', k],
            ])
          : post(gw, '/', ['INCR', k]).then((r) => ({ ...r, json: [r.json] })),
      ),
    );
    const seen: number[] = [];
    for (const [i, reply] of replies.entries()) {
      expect(reply.status).toBe(200);
      const values = (reply.json as { result: number }[]).map((x) => x.result);
      if (i % 2 === 0) expect(values).toEqual([values[0], values[0]! + 1, values[0]! + 2]);
      seen.push(...values);
    }
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    // a command that fails while queueing aborts the whole transaction
    const aborted = await post(gw, '/multi-exec', [['INCR', k], ['NOSUCHCOMMAND']]);
    expect(aborted).toMatchObject({ status: 400, json: { error: expect.stringMatching(/^EXECABORT/) } });
    expect((await post(gw, '/', ['GET', k])).json).toEqual({ result: '40' });
  });

  it('keep-alive: sequential requests reuse one connection', async () => {
    const gw = gateway();
    const r = upstash(gw, false, false);
    await r.set(key('warm'), '1'); // a pooled connection may exist already; make sure one does
    const connections = gw.connections;
    const requests = gw.requests;
    for (let i = 0; i < 10; i++) await r.incr(key('ka'));
    expect(gw.requests - requests).toBe(10);
    expect(gw.connections - connections).toBe(0);
    const res = await fetch(gw.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.token}` },
      body: '["PING"]',
    });
    await res.text();
    expect(res.headers.get('keep-alive')).toMatch(/timeout=\d+/);
  });

  it('path form: /set/k/v and /get/k, URL-decoded; a POST body is the last argument', async () => {
    const gw = gateway();
    const headers = { authorization: `Bearer ${gw.token}` };
    const k = encodeURIComponent(key('path/é✓'));
    const set = await fetch(`${gw.url}/set/${k}/${encodeURIComponent('a b/c')}`, { method: 'POST', headers });
    expect(await set.json()).toEqual({ result: 'OK' });
    const get = await fetch(`${gw.url}/get/${k}`, { headers });
    expect(await get.json()).toEqual({ result: 'a b/c' });
    const body = await fetch(`${gw.url}/set/${k}`, { method: 'POST', headers, body: '{"json":"é✓"}' });
    expect(await body.json()).toEqual({ result: 'OK' });
    expect(await (await fetch(`${gw.url}/get/${k}`, { headers })).json()).toEqual({
      result: '{"json":"é✓"}',
    });
  });
});

describe('when redis-server goes away', () => {
  const server = useRedis();
  const gw = useGateway(server);

  it('fails fast with 503 while it is down and recovers once it is back', async () => {
    expect((await post(gw(), '/', ['SET', 'k', 'v'])).status).toBe(200);
    await server().kill();
    const startedAt = performance.now();
    const down = await post(gw(), '/', ['GET', 'k']);
    expect(performance.now() - startedAt).toBeLessThan(1000);
    expect(down.status).toBe(503);
    expect(down.json).toEqual({ error: expect.stringMatching(/^ERR gateway: redis unavailable/) });
    expect((await post(gw(), '/pipeline', [['GET', 'k']])).status).toBe(503);
    await server().restart();
    const deadline = performance.now() + 5000;
    let status = 0;
    while (performance.now() < deadline) {
      status = (await post(gw(), '/', ['PING'])).status;
      if (status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(status).toBe(200);
    expect((await post(gw(), '/', ['GET', 'k'])).json).toEqual({ result: null }); // nothing persisted
  });

  it('while it is paused a request hangs (the client times out); close() returns at once', async () => {
    const extra = await startGateway({ redis: server(), token: gw().token });
    server().pause();
    try {
      const hung = await fetch(extra.url, {
        method: 'POST',
        headers: { authorization: `Bearer ${extra.token}` },
        body: '["PING"]',
        signal: AbortSignal.timeout(200),
      }).catch((e: unknown) => e);
      expect((hung as Error).name).toBe('TimeoutError');
      const startedAt = performance.now();
      await extra.close();
      expect(performance.now() - startedAt).toBeLessThan(500);
    } finally {
      server().resume();
    }
    expect((await post(gw(), '/', ['PING'])).json).toEqual({ result: 'PONG' });
  });
});
