import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  InProgressError,
  isResultNotStored,
  LockLostError,
  MissingKeyError,
  type OnceOptions,
  type OnceRun,
  PayloadMismatchError,
  ResultNotStorableError,
  StoreAuthError,
  StoreUnavailableError,
  ValidationError,
  withOnce,
  withOnceBatch,
} from '../../layers/oncely/src/index.js';
import { digest, encodeResult } from '../../layers/oncely/src/once/record.js';
import { ADAPTERS, deferred, fakeOnce, gated, lambdaContext, logSink, wrap } from '../support/once.js';
import { OnceFakeStore } from '../support/once-fake-store.js';

type Ev = { id?: string; n?: number; note?: string };
const clock = { now: () => Date.now() };

const setup = (extra: Partial<OnceOptions<Ev>> = {}) =>
  fakeOnce<Ev>({
    key: { jmespath: 'id' },
    payload: { jmespath: 'n' },
    clock,
    wallClock: () => Date.now(),
    ...extra,
  });

const unavailable = () => new StoreUnavailableError('fake: down', { store: 'fake', ambiguous: false });

describe.each(ADAPTERS)('run-once through the $type', ({ type }) => {
  it('first invocation: 2 round trips (claim, complete); a duplicate: 1, answered with the stored result', async () => {
    const { store, options } = setup();
    let runs = 0;
    const h = wrap(type, async (e: Ev) => ({ runs: ++runs, n: e.n }), options);
    const first = await h({ id: 'a', n: 1 }, lambdaContext());
    expect(first).toEqual({ runs: 1, n: 1 });
    expect(store.roundTrips).toBe(2);
    expect(store.calls.map((c) => c.script)).toEqual(['once-claim', 'once-complete']);
    const again = await h({ id: 'a', n: 1 }, lambdaContext());
    expect(again).toEqual({ runs: 1, n: 1 });
    expect(store.roundTrips).toBe(3);
    expect(store.calls.map((c) => c.script)).toEqual(['once-claim', 'once-complete', 'once-claim']);
    expect(runs).toBe(1);
  });

  it('records are per key and per namespace; keys share one hash tag', async () => {
    const { store, options } = setup();
    let runs = 0;
    const h = wrap(type, async () => ++runs, options);
    const other = wrap(type, async () => ++runs, { ...options, namespace: 'other-fn' });
    await h({ id: 'a', n: 1 }, lambdaContext());
    await h({ id: 'b', n: 1 }, lambdaContext());
    await other({ id: 'a', n: 1 }, lambdaContext());
    expect(runs).toBe(3);
    const [rec, fence] = store.calls[0]!.keys as [string, string];
    expect(rec).toMatch(/^oncely:once:\{fn:[A-Za-z0-9_-]{22}\}:rec$/);
    expect(fence).toBe(rec.replace(/:rec$/, ':fence'));
    expect(store.calls[4]!.keys[0]).toMatch(/^oncely:once:\{other-fn:/);
  });

  it('the handler gets the lease signal, the fence and the key; a later owner gets a higher fence', async () => {
    const { options } = setup();
    const seen: OnceRun[] = [];
    const h = wrap(
      type,
      async (e: Ev, _c, once) => {
        seen.push(once);
        if (e.note === 'fail') throw new Error('x');
        return 'ok';
      },
      options,
    );
    await expect(h({ id: 'k', n: 1, note: 'fail' }, lambdaContext())).rejects.toThrow('x');
    await h({ id: 'k', n: 1 }, lambdaContext());
    expect(seen).toHaveLength(2);
    expect(seen[0]!.key).toBe('k');
    expect(seen[0]!.signal).toBeInstanceOf(AbortSignal);
    expect(seen[0]!.signal.aborted).toBe(false);
    expect(seen[1]!.fence).toBeGreaterThan(seen[0]!.fence);
  });

  it('a throwing handler: the same error object is rethrown, the record released, and a retry runs', async () => {
    const { store, options, log } = setup();
    const boom = new TypeError('boom');
    let runs = 0;
    const h = wrap(
      type,
      async () => {
        runs++;
        if (runs === 1) throw boom;
        return 'second';
      },
      options,
    );
    const err = await h({ id: 'a', n: 1 }, lambdaContext()).catch((e) => e);
    expect(err).toBe(boom);
    expect(store.calls.map((c) => c.script)).toEqual(['once-claim', 'once-release']);
    expect(store.hash(store.calls[0]!.keys[0]!)).toBeUndefined();
    expect(log.decisions()).toEqual(['claimed', 'released']);
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe('second');
  });

  it("duplicate: 'throw' while in progress: InProgressError carrying the holder's remaining lease", async () => {
    const { options, log } = setup({ ttlMs: 5000 });
    const { h, gate, runs } = gated<Ev>(type, options);
    const first = h({ id: 'a', n: 1 }, lambdaContext());
    await vi.waitFor(() => expect(runs()).toBe(1));
    const err = await h({ id: 'a', n: 1 }, lambdaContext()).catch((e) => e);
    expect(err).toBeInstanceOf(InProgressError);
    expect(err.name).toBe('InProgressError');
    expect(err.key).toBe('a');
    expect(err.retryAfterMs).toBeGreaterThan(4000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(5000);
    gate.resolve('done');
    expect(await first).toBe('done');
    expect(runs()).toBe(1);
    expect(log.decisions()).toEqual(['claimed', 'in-progress', 'completed']);
  });

  it("duplicate: 'skip' answers undefined without running the handler", async () => {
    const { options, log } = setup({ duplicate: 'skip' });
    const { h, gate, runs } = gated<Ev>(type, options);
    const first = h({ id: 'a', n: 1 }, lambdaContext());
    await vi.waitFor(() => expect(runs()).toBe(1));
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBeUndefined();
    gate.resolve('done');
    await first;
    expect(runs()).toBe(1);
    expect(log.decisions()).toContain('skipped');
  });

  it("duplicate: 'wait' polls until the first invocation completes, then answers with its result", async () => {
    const { options, store, log } = setup({ duplicate: 'wait', pollMs: 5 });
    const { h, gate, runs } = gated<Ev>(type, options);
    const first = h({ id: 'a', n: 1 }, lambdaContext());
    await vi.waitFor(() => expect(runs()).toBe(1));
    const second = h({ id: 'a', n: 1 }, lambdaContext());
    await vi.waitFor(() => expect(store.script('once-claim')).toBeGreaterThanOrEqual(3));
    gate.resolve('result');
    expect(await second).toBe('result');
    expect(await first).toBe('result');
    expect(runs()).toBe(1);
    const returned = log.parsed().find((l) => l.decision === 'duplicate-returned')!;
    expect(returned.waitedMs).toBeGreaterThan(0);
  });

  it("duplicate: 'wait' runs the handler itself when the first invocation fails meanwhile", async () => {
    const { options } = setup({ duplicate: 'wait', pollMs: 5 });
    const { h, gate, runs } = gated<Ev>(type, options, (_e, run) => (run === 1 ? undefined : 'second'));
    const first = h({ id: 'a', n: 1 }, lambdaContext());
    await vi.waitFor(() => expect(runs()).toBe(1));
    const second = h({ id: 'a', n: 1 }, lambdaContext());
    gate.reject(new Error('first failed'));
    await expect(first).rejects.toThrow('first failed');
    expect(await second).toBe('second');
    expect(runs()).toBe(2);
  });

  it("duplicate: 'wait' gives up with InProgressError after maxWaitMs", async () => {
    // A wait long enough for several polls even when timers fire late on a loaded machine.
    const { options, store } = setup({ duplicate: 'wait', pollMs: 10, maxWaitMs: 300 });
    const gate = deferred<string>();
    const h = wrap(type, async () => gate.promise, options);
    const first = h({ id: 'a', n: 1 }, lambdaContext());
    await vi.waitFor(() => expect(store.script('once-claim')).toBe(1));
    const started = Date.now();
    const err = await h({ id: 'a', n: 1 }, lambdaContext()).catch((e) => e);
    expect(err).toBeInstanceOf(InProgressError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(295);
    expect(store.script('once-claim')).toBeGreaterThanOrEqual(3);
    gate.resolve('x');
    await first;
  });

  it('same key, different payload: PayloadMismatchError, for a completed and for an in-progress record', async () => {
    const { options, log } = setup();
    const { h, gate, runs } = gated<Ev>(type, options, (e) => (e.id === 'slow' ? undefined : 'ok'));
    await h({ id: 'a', n: 1 }, lambdaContext());
    const done = await h({ id: 'a', n: 2 }, lambdaContext()).catch((e) => e);
    expect(done).toBeInstanceOf(PayloadMismatchError);
    expect(done.name).toBe('PayloadMismatchError');
    const slow = h({ id: 'slow', n: 1 }, lambdaContext());
    await vi.waitFor(() => expect(runs()).toBe(2));
    await expect(h({ id: 'slow', n: 2 }, lambdaContext())).rejects.toBeInstanceOf(PayloadMismatchError);
    gate.resolve('slow');
    await slow;
    expect(runs()).toBe(2);
    expect(log.decisions().filter((d) => d === 'mismatch')).toHaveLength(2);
  });

  it("payload: false turns the check off; payload: 'event' checks the whole event", async () => {
    const off = setup({ payload: false });
    const h = wrap(type, async (e: Ev) => e.n, off.options);
    await h({ id: 'a', n: 1 }, lambdaContext());
    expect(await h({ id: 'a', n: 2 }, lambdaContext())).toBe(1);

    const whole = setup({ payload: 'event' });
    const g = wrap(type, async (e: Ev) => e.n, whole.options);
    await g({ id: 'a', n: 1, note: 'x' }, lambdaContext());
    expect(await g({ note: 'x', n: 1, id: 'a' }, lambdaContext())).toBe(1); // key order does not matter
    await expect(g({ id: 'a', n: 1, note: 'y' }, lambdaContext())).rejects.toBeInstanceOf(
      PayloadMismatchError,
    );
  });

  it("no key: MissingKeyError by default; missingKey: 'run' runs without a record (fence 0)", async () => {
    const { options, store } = setup();
    const h = wrap(type, async () => 'ran', options);
    const err = await h({ n: 1 }, lambdaContext()).catch((e) => e);
    expect(err).toBeInstanceOf(MissingKeyError);
    expect(err.name).toBe('MissingKeyError');
    expect(store.roundTrips).toBe(0);

    const run = setup({ missingKey: 'run' });
    const seen: OnceRun[] = [];
    const g = wrap(
      type,
      async (_e: Ev, _c, once) => {
        seen.push(once);
        return 'ran';
      },
      run.options,
    );
    expect(await g({ n: 1 }, lambdaContext())).toBe('ran');
    expect(await g({ n: 1 }, lambdaContext())).toBe('ran');
    expect(seen.map((s) => s.fence)).toEqual([0, 0]);
    expect(run.store.roundTrips).toBe(0);
    expect(run.log.decisions()).toEqual(['no-key', 'no-key']);
  });

  it('store unavailable at claim: fails closed, the handler never runs', async () => {
    const { options, store, log } = setup();
    let runs = 0;
    const h = wrap(type, async () => ++runs, options);
    store.down = unavailable();
    const err = await h({ id: 'a', n: 1 }, lambdaContext()).catch((e) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(runs).toBe(0);
    expect(log.parsed()).toMatchObject([{ level: 'ERROR', decision: 'store-error', keyDigest: digest('a') }]);
  });

  it('failOpen: the handler runs without dedupe and an ERROR line says so; auth errors still fail', async () => {
    const { options, store, log } = setup({ failOpen: true });
    const seen: OnceRun[] = [];
    const h = wrap(
      type,
      async (_e: Ev, _c, once) => {
        seen.push(once);
        return 'ran';
      },
      options,
    );
    store.down = unavailable();
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe('ran');
    expect(seen[0]!.fence).toBe(0);
    expect(log.parsed()).toMatchObject([{ level: 'ERROR', decision: 'fail-open', keyDigest: digest('a') }]);
    store.down = new StoreAuthError('fake: authentication failed', { store: 'fake', ambiguous: false });
    await expect(h({ id: 'a', n: 1 }, lambdaContext())).rejects.toBeInstanceOf(StoreAuthError);
    expect(seen).toHaveLength(1);
  });

  it('an ambiguous claim failure gives the record back, so a retry can run at once', async () => {
    const { options, store } = setup();
    let runs = 0;
    const h = wrap(type, async () => ++runs, options);
    store.next.push('apply-then-fail');
    await expect(h({ id: 'a', n: 1 }, lambdaContext())).rejects.toBeInstanceOf(StoreUnavailableError);
    await vi.waitFor(() => expect(store.script('once-release')).toBe(1));
    expect(store.hash(store.calls[0]!.keys[0]!)).toBeUndefined();
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe(1);
  });

  it("a result JSON cannot hold, with unstorable: 'throw': ResultNotStorableError and the record released", async () => {
    const { options, store } = setup({ unstorable: 'throw' });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const h = wrap(type, async (e: Ev) => (e.note === 'bigint' ? 10n : cyclic), options);
    const err = await h({ id: 'a', n: 1 }, lambdaContext()).catch((e) => e);
    expect(err).toBeInstanceOf(ResultNotStorableError);
    expect(err.reason).toBe('not-serialisable');
    expect(store.calls.map((c) => c.script)).toEqual(['once-claim', 'once-release']);
    await expect(h({ id: 'b', n: 1, note: 'bigint' }, lambdaContext())).rejects.toMatchObject({
      name: 'ResultNotStorableError',
      reason: 'not-serialisable',
    });
  });

  it("a result over maxResultBytes: a marker by default; unstorable: 'throw' is an error", async () => {
    const big = 'x'.repeat(200);
    const strict = setup({ maxResultBytes: 100, unstorable: 'throw' });
    const h = wrap(type, async () => big, strict.options);
    const err = await h({ id: 'a', n: 1 }, lambdaContext()).catch((e) => e);
    expect(err).toMatchObject({ name: 'ResultNotStorableError', reason: 'too-large', bytes: 202 });

    const marked = setup({ maxResultBytes: 100 });
    let runs = 0;
    const g = wrap(
      type,
      async () => {
        runs++;
        return big;
      },
      marked.options,
    );
    expect(await g({ id: 'a', n: 1 }, lambdaContext())).toBe(big);
    const dup = await g({ id: 'a', n: 1 }, lambdaContext());
    expect(isResultNotStored(dup)).toBe(true);
    expect(dup).toEqual({
      oncely: 'result-not-stored',
      reason: 'too-large',
      detail: '202 bytes of JSON, the limit is 100',
      bytes: 202,
    });
    expect(runs).toBe(1);
  });

  it('undefined, null and falsy results round-trip exactly', async () => {
    const { options } = setup();
    const values: unknown[] = [undefined, null, 0, '', false, [], {}];
    const h = wrap(type, async (e: Ev) => values[e.n!], options);
    for (let n = 0; n < values.length; n++) {
      await h({ id: `v${n}`, n }, lambdaContext());
      expect(await h({ id: `v${n}`, n }, lambdaContext())).toEqual(values[n]);
      expect(await h({ id: `v${n}`, n }, lambdaContext())).toStrictEqual(values[n]);
    }
  });

  it('ONCELY_DISABLED=true: the handler runs every time and the store is not touched', async () => {
    const { options, store } = setup();
    vi.stubEnv('ONCELY_DISABLED', 'true');
    try {
      let runs = 0;
      const h = wrap(type, async () => ++runs, options);
      await h({ id: 'a', n: 1 }, lambdaContext());
      await h({ id: 'a', n: 1 }, lambdaContext());
      expect(runs).toBe(2);
      expect(store.roundTrips).toBe(0);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('one JSON line per decision, the same decisions to onDecision, and no secrets or payloads', async () => {
    const { options, log, decisions } = setup();
    const h = wrap(type, async () => 'result-secret-value', options);
    await h({ id: 'a', n: 1, note: 'payload-secret' }, lambdaContext());
    await h({ id: 'a', n: 1, note: 'payload-secret' }, lambdaContext());
    const lines = log.parsed();
    expect(lines.map((l) => l.decision)).toEqual(['claimed', 'completed', 'duplicate-returned']);
    expect(decisions.map((d) => d.decision)).toEqual(['claimed', 'completed', 'duplicate-returned']);
    for (const l of lines) {
      expect(l).toMatchObject({ logger: 'oncely', namespace: 'fn', keyDigest: digest('a') });
      expect(l).not.toHaveProperty('key');
      expect(l.level).toMatch(/^(INFO|WARN|ERROR)$/);
      expect(Date.parse(l.timestamp as string)).not.toBeNaN();
    }
    expect(lines[0]).toMatchObject({ fence: expect.any(Number), ttlMs: expect.any(Number) });
    expect(log.lines.join('\n')).not.toMatch(/secret/);
  });

  it('a line is exactly JSON.stringify of level, timestamp, logger, message, the Lambda fields and the decision (logKeys: key shortened)', async () => {
    const { options, log, decisions } = setup({
      wallClock: () => 1_700_000_000_123,
      payload: false,
      logKeys: true,
    });
    const key = `k"\u00e9\n${'x'.repeat(200)}`;
    const h = wrap(type, async () => 1, { ...options, key: () => key });
    await h({ id: 'ignored' }, lambdaContext());
    expect(decisions.map((d) => d.decision)).toEqual(['claimed', 'completed']);
    log.lines.forEach((line, i) => {
      const { key: _raw, ...d } = decisions[i]!;
      // whether this is the process's first invocation depends on which tests ran before
      const coldStart = (JSON.parse(line) as { cold_start: unknown }).cold_start;
      expect(typeof coldStart).toBe('boolean');
      expect(line).toBe(
        JSON.stringify({
          level: 'INFO',
          timestamp: '2023-11-14T22:13:20.123Z',
          logger: 'oncely',
          message: `oncely: ${d.decision}`,
          cold_start: coldStart,
          function_request_id: 'req',
          function_name: 'test-fn',
          ...d,
          keyDigest: digest(key),
          key: `${key.slice(0, 117)}...`,
        }),
      );
    });
  });

  it('logLevel: warn drops the INFO lines but onDecision still hears everything', async () => {
    const { options, log, decisions } = setup({ logLevel: 'warn' });
    const h = wrap(type, async () => 1, options);
    await h({ id: 'a', n: 1 }, lambdaContext());
    await expect(h({ id: 'a', n: 2 }, lambdaContext())).rejects.toBeInstanceOf(PayloadMismatchError);
    expect(log.decisions()).toEqual(['mismatch']);
    expect(decisions).toHaveLength(3);
  });

  it('completion fails: retried; then the StoreError (fail closed), or the result with completeFailure: return', async () => {
    const closed = setup();
    const h = wrap(type, async () => 'done', closed.options);
    closed.store.next.push('ok', unavailable(), unavailable(), unavailable());
    await expect(h({ id: 'a', n: 1 }, lambdaContext())).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(closed.store.script('once-complete')).toBe(0); // the fake fails before applying
    expect(closed.store.roundTrips).toBe(4);
    expect(closed.log.decisions()).toEqual(['claimed', 'complete-failed']);

    const open = setup({ completeFailure: 'return' });
    const g = wrap(type, async () => 'done', open.options);
    open.store.next.push('ok', unavailable(), unavailable(), unavailable());
    expect(await g({ id: 'a', n: 1 }, lambdaContext())).toBe('done');

    const transient = setup();
    const t = wrap(type, async () => 'done', transient.options);
    transient.store.next.push('ok', 'apply-then-fail');
    expect(await t({ id: 'a', n: 1 }, lambdaContext())).toBe('done'); // the retry finds it completed by us
    expect(transient.log.decisions()).toEqual(['claimed', 'completed']);
  });

  it("a late completion never overwrites a successor's record: LockLostError, successor intact", async () => {
    const { options, store, log } = setup({ ttlMs: 1000 });
    const { h, gate, runs } = gated<Ev>(type, options, (e) => (e.note === 'slow' ? undefined : 'successor'));
    const first = h({ id: 'a', n: 1, note: 'slow' }, lambdaContext());
    await vi.waitFor(() => expect(runs()).toBe(1));
    // The first owner's record expires behind its back (a stalled process; the fake store's clock jumps).
    const rec = store.calls[0]!.keys[0]!;
    store.data.get(rec)!.expiresAt = Date.now() - 1;
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe('successor');
    gate.resolve('late');
    const err = await first.catch((e) => e);
    expect(err).toBeInstanceOf(LockLostError);
    expect(err.reason).toBe('stolen');
    expect(store.hash(rec)?.get('r')).toBe('j"successor"');
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe('successor');
    expect(log.decisions()).toContain('lost');
  });

  it('a completion after the lease ran out is kept when nobody has claimed since', async () => {
    const { options, store, log } = setup({ ttlMs: 1000 });
    const gate = deferred<string>();
    const h = wrap(type, async () => gate.promise, options);
    const first = h({ id: 'a', n: 1 }, lambdaContext());
    await vi.waitFor(() => expect(store.script('once-claim')).toBe(1));
    store.data.delete(store.calls[0]!.keys[0]!); // expired, and nobody came
    gate.resolve('late');
    expect(await first).toBe('late');
    expect(await h({ id: 'a', n: 1 }, lambdaContext())).toBe('late');
    expect(log.parsed().find((l) => l.decision === 'completed')?.reason).toMatch(/after the lease ran out/);
  });
});

describe.each(ADAPTERS)('HTTP events through the $type', ({ type }) => {
  const request = (key: string | undefined, body: string, extra: Record<string, unknown> = {}) => ({
    version: '2.0',
    rawPath: '/orders',
    rawQueryString: '',
    headers: key === undefined ? {} : { 'idempotency-key': key },
    requestContext: { http: { method: 'POST', path: '/orders' } },
    body,
    isBase64Encoded: false,
    ...extra,
  });

  function httpSetup(extra: Partial<OnceOptions<unknown>> = {}) {
    const store = new OnceFakeStore(() => Date.now());
    const log = logSink();
    return {
      store,
      log,
      options: { store, namespace: 'api', clock, logger: log.logger, ...extra } as OnceOptions<unknown>,
    };
  }

  it('a replay carries Idempotent-Replayed; a key reused with another body is 422; no key is 400', async () => {
    const { options } = httpSetup();
    let runs = 0;
    const h = wrap(
      type,
      async () => ({ statusCode: 201, headers: { x: '1' }, body: String(++runs) }),
      options,
    );
    expect(await h(request('k1', '{"a":1}'), lambdaContext())).toEqual({
      statusCode: 201,
      headers: { x: '1' },
      body: '1',
    });
    expect(await h(request('k1', '{ "a": 1 }'), lambdaContext())).toEqual({
      statusCode: 201,
      headers: { x: '1', 'idempotent-replayed': 'true' },
      body: '1',
    });
    const mismatch = (await h(request('k1', '{"a":2}'), lambdaContext())) as {
      statusCode: number;
      body: string;
    };
    expect(mismatch.statusCode).toBe(422);
    expect(JSON.parse(mismatch.body).error).toBe('PayloadMismatchError');
    const missing = (await h(request(undefined, '{}'), lambdaContext())) as {
      statusCode: number;
      body: string;
    };
    expect(missing.statusCode).toBe(400);
    expect(JSON.parse(missing.body).message).toMatch(/looked for an Idempotency-Key header/);
    expect(runs).toBe(1);
  });

  it('in progress: 409 with Retry-After in whole seconds', async () => {
    const { options } = httpSetup({ ttlMs: 4500 });
    const gate = deferred<{ statusCode: number }>();
    let runs = 0;
    const h = wrap(
      type,
      async () => {
        runs++;
        return gate.promise;
      },
      options,
    );
    const first = h(request('k', '{}'), lambdaContext());
    await vi.waitFor(() => expect(runs).toBe(1));
    const busy = (await h(request('k', '{}'), lambdaContext())) as { statusCode: number; headers: object };
    expect(busy.statusCode).toBe(409);
    expect(busy.headers).toMatchObject({ 'retry-after': '5' });
    gate.resolve({ statusCode: 200 });
    await first;
  });

  it('a 5xx answer is not stored: the record is released and the next request runs', async () => {
    const { options, store } = httpSetup();
    let runs = 0;
    const h = wrap(type, async () => ({ statusCode: runs++ === 0 ? 503 : 200 }), options);
    expect(await h(request('k', '{}'), lambdaContext())).toEqual({ statusCode: 503 });
    expect(store.script('once-release')).toBe(1);
    expect(await h(request('k', '{}'), lambdaContext())).toEqual({ statusCode: 200 });
  });

  it('the store down is 503 with Retry-After; http: false throws instead', async () => {
    const { options, store } = httpSetup();
    store.down = unavailable();
    const h = wrap(type, async () => ({ statusCode: 200 }), options);
    expect(await h(request('k', '{}'), lambdaContext())).toMatchObject({
      statusCode: 503,
      headers: { 'retry-after': '1' },
    });
    const g = wrap(type, async () => ({ statusCode: 200 }), { ...options, http: false });
    await expect(g(request('k', '{}'), lambdaContext())).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});

describe('lease timing (fake timers)', () => {
  beforeEach(() => vi.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => vi.useRealTimers());

  it('lease = min(ttlMs, remaining time − marginMs)', async () => {
    const { options, store } = setup({ ttlMs: 30_000, marginMs: 1000 });
    const h = withOnce(async () => 1, options);
    await h({ id: 'a', n: 1 }, lambdaContext(10_000));
    await h({ id: 'b', n: 1 }, lambdaContext(100_000));
    const leases = store.calls.filter((c) => c.script === 'once-claim').map((c) => c.args[1]);
    expect(leases).toEqual([9000, 30_000]);
    expect(store.calls[0]!.args[3]).toBe(9000 + 15 * 60_000); // the fence counter outlives the lease
  });

  it('auto-extends at half the lease while the handler runs, never past the deadline minus the margin', async () => {
    const { options, store } = setup({ ttlMs: 1000, marginMs: 200 });
    const gate = deferred<string>();
    let signal: AbortSignal | undefined;
    const h = withOnce(async (_e: Ev, _c, once) => {
      signal = once.signal;
      return gate.promise;
    }, options);
    const done = h({ id: 'a', n: 1 }, lambdaContext(2000));
    await vi.advanceTimersByTimeAsync(0);
    expect(store.script('once-extend')).toBe(0);
    await vi.advanceTimersByTimeAsync(500);
    expect(store.script('once-extend')).toBe(1);
    expect(store.calls.at(-1)!.args[1]).toBe(1000);
    await vi.advanceTimersByTimeAsync(500);
    expect(store.script('once-extend')).toBe(2);
    // The second extension is capped: it reaches exactly the deadline (2000) minus the margin (200).
    const capped = store.calls.at(-1)!;
    expect(capped.at - 1_000_000 + Number(capped.args[1])).toBe(1800);
    await vi.advanceTimersByTimeAsync(770); // t = 1770
    expect(signal!.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(30); // t = 1800
    expect(signal!.aborted).toBe(true); // the lease has run out before Lambda would stop us
    expect(store.script('once-extend')).toBe(2); // nothing to gain from extending past the cap
    expect(signal!.reason).toBeInstanceOf(LockLostError);
    gate.resolve('late');
    await expect(done).resolves.toBe('late'); // nobody claimed since: the late completion is kept
  });

  it("after completion the lease's timer running out does not abort the handler's signal", async () => {
    const { options } = setup({ ttlMs: 1000 });
    let signal: AbortSignal | undefined;
    const h = withOnce(async (_e: Ev, _c, once) => {
      signal = once.signal;
      return 1;
    }, options);
    await h({ id: 'a', n: 1 }, lambdaContext());
    await vi.advanceTimersByTimeAsync(5000);
    expect(signal!.aborted).toBe(false);
  });

  it('an extend that finds another owner aborts the signal with reason stolen', async () => {
    const { options, store } = setup({ ttlMs: 1000 });
    let signal: AbortSignal | undefined;
    const gate = deferred<string>();
    const h = withOnce(async (_e: Ev, _c, once) => {
      signal = once.signal;
      return gate.promise;
    }, options);
    const done = h({ id: 'a', n: 1 }, lambdaContext());
    await vi.advanceTimersByTimeAsync(0);
    store.hash(store.calls[0]!.keys[0]!)!.set('t', 'someone-else');
    await vi.advanceTimersByTimeAsync(500);
    expect(signal!.aborted).toBe(true);
    expect(signal!.reason).toMatchObject({ name: 'LockLostError', reason: 'stolen' });
    gate.resolve('x');
    await expect(done).rejects.toMatchObject({ name: 'LockLostError', reason: 'stolen' });
  });

  it('a signal first read after the lease was lost is already aborted; one read after completion is not', async () => {
    const { options, store } = setup({ ttlMs: 1000 });
    const gate = deferred();
    let lost: AbortSignal | undefined;
    const h = withOnce(async (_e: Ev, _c, once) => {
      await gate.promise;
      lost = once.signal;
      return 'x';
    }, options);
    const done = h({ id: 'a', n: 1 }, lambdaContext());
    await vi.advanceTimersByTimeAsync(0);
    store.hash(store.calls[0]!.keys[0]!)!.set('t', 'someone-else');
    await vi.advanceTimersByTimeAsync(500);
    gate.resolve();
    await expect(done).rejects.toMatchObject({ name: 'LockLostError', reason: 'stolen' });
    expect(lost!.aborted).toBe(true);
    expect(lost!.reason).toMatchObject({ name: 'LockLostError', reason: 'stolen' });

    let kept: OnceRun | undefined;
    const g = withOnce(async (_e: Ev, _c, once) => {
      kept = once;
      return 1;
    }, options);
    await g({ id: 'b', n: 1 }, lambdaContext());
    await vi.advanceTimersByTimeAsync(5000);
    expect(kept!.signal.aborted).toBe(false);
    expect({ ...kept! }).toMatchObject({ fence: expect.any(Number), key: 'b', signal: kept!.signal });
  });

  it('handlers done within half their lease share one timer and leave nothing behind', async () => {
    const { options, store } = setup({ ttlMs: 1000 });
    const h = withOnce(async (_e: Ev, _c, once) => once.signal.aborted, options);
    for (const id of ['a', 'b', 'c']) expect(await h({ id, n: 1 }, lambdaContext())).toBe(false);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(vi.getTimerCount()).toBe(0);
    expect(store.script('once-extend')).toBe(0);
  });

  it('two overlapping long handlers are each extended at half their own lease', async () => {
    const { options, store } = setup({ ttlMs: 1000 });
    const gate = deferred<string>();
    const h = withOnce(async () => gate.promise, options);
    const first = h({ id: 'a', n: 1 }, lambdaContext());
    await vi.advanceTimersByTimeAsync(300);
    const second = h({ id: 'b', n: 1 }, lambdaContext());
    await vi.advanceTimersByTimeAsync(200); // t = 500: a's halfway
    expect(store.calls.filter((c) => c.script === 'once-extend').map((c) => c.keys[0])).toEqual([
      store.calls[0]!.keys[0],
    ]);
    await vi.advanceTimersByTimeAsync(300); // t = 800: b's halfway
    expect(store.script('once-extend')).toBe(2);
    gate.resolve('x');
    await expect(Promise.all([first, second])).resolves.toEqual(['x', 'x']);
  });

  it('a failing extend is retried while the lease is still valid', async () => {
    const { options, store, log } = setup({ ttlMs: 1000 });
    const gate = deferred<string>();
    let signal: AbortSignal | undefined;
    const h = withOnce(async (_e: Ev, _c, once) => {
      signal = once.signal;
      return gate.promise;
    }, options);
    const done = h({ id: 'a', n: 1 }, lambdaContext());
    await vi.advanceTimersByTimeAsync(0);
    store.next.push(unavailable());
    await vi.advanceTimersByTimeAsync(500);
    expect(log.decisions()).toContain('store-error');
    await vi.advanceTimersByTimeAsync(200);
    expect(store.script('once-extend')).toBe(1); // the failed attempt was not applied; the retry was
    expect(signal!.aborted).toBe(false);
    gate.resolve('ok');
    await expect(done).resolves.toBe('ok');
  });

  it('a claim whose reply arrives after its lease: the record is released and the invocation fails closed', async () => {
    const { options, store } = setup({ ttlMs: 1000 });
    let runs = 0;
    const h = withOnce(async () => ++runs, options);
    const run = store.run.bind(store);
    store.run = async (script, keys, args) => {
      if (script.name !== 'once-claim') return run(script, keys, args);
      const reply = store.apply(script, keys, args); // applied at once, answered 1.5 s later
      await new Promise((r) => setTimeout(r, 1500));
      return reply;
    };
    const done = h({ id: 'a', n: 1 }, lambdaContext()).catch((e) => e);
    await vi.advanceTimersByTimeAsync(1500);
    expect(await done).toBeInstanceOf(StoreUnavailableError);
    expect(runs).toBe(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(store.script('once-release')).toBe(1);
  });
});

describe('result encoding', () => {
  it('maxResultBytes counts UTF-8 bytes, multi-byte characters included', () => {
    expect(encodeResult('é'.repeat(49), 100)).toEqual({ ok: true, text: `j"${'é'.repeat(49)}"` }); // 100 bytes
    expect(encodeResult('é'.repeat(50), 100)).toMatchObject({ ok: false, reason: 'too-large', bytes: 102 });
    expect(encodeResult('€'.repeat(33), 100)).toMatchObject({ ok: false, reason: 'too-large', bytes: 101 });
    expect(encodeResult('a'.repeat(98), 100)).toEqual({ ok: true, text: `j"${'a'.repeat(98)}"` });
    expect(encodeResult('a'.repeat(99), 100)).toMatchObject({ ok: false, bytes: 101 });
  });
});

describe('options', () => {
  it('every bad option is named in one ValidationError', () => {
    const store = new OnceFakeStore();
    let err: unknown;
    try {
      withOnce(async () => 1, {
        store,
        namespace: 'a{b}',
        ttlMs: 5,
        retentionMs: 1.5,
        marginMs: -1,
        duplicate: 'maybe' as 'throw',
        unstorable: 'drop' as 'throw',
        key: { jmespath: '' },
        payload: 42 as unknown as false,
        logLevel: 'loud' as 'info',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    const problems = (err as ValidationError).problems.join('\n');
    for (const field of [
      'namespace',
      'ttlMs',
      'retentionMs',
      'marginMs',
      'duplicate',
      'unstorable',
      'key.jmespath',
      'payload',
      'logLevel',
    ]) {
      expect(problems).toContain(field);
    }
  });

  it.each(ADAPTERS)(
    'an expression that does not parse: the same ValidationError from every invocation, before the store ($type)',
    async ({ type }) => {
      const { store, options } = setup({ key: { jmespath: 'a[' }, payload: { jmespath: 'nosuchfn(n)' } });
      const h = wrap(type, async () => 1, options);
      for (let n = 0; n < 2; n++) {
        const err = await h({ id: 'a', n: 1 }, lambdaContext()).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ValidationError);
        const problems = (err as ValidationError).problems;
        expect(problems).toHaveLength(2);
        expect(problems[0]).toMatch(/^key\.jmespath does not parse/);
        expect(problems[1]).toMatch(/^payload\.jmespath does not parse/);
      }
      expect(store.roundTrips).toBe(0);
    },
  );

  it('a missing store and a non-function handler are rejected', () => {
    expect(() => withOnce(async () => 1, {} as OnceOptions)).toThrow(/store must be a Store/);
    expect(() => withOnce(42 as never, { store: new OnceFakeStore() })).toThrow(/handler must be a function/);
  });

  it("batches reject duplicate: 'wait'", () => {
    expect(() =>
      withOnceBatch(async () => 1, { store: new OnceFakeStore(), duplicate: 'wait' as 'skip' }),
    ).toThrow(/duplicate must be one of throw, skip/);
  });

  it('the namespace defaults to the Lambda function name', async () => {
    vi.stubEnv('AWS_LAMBDA_FUNCTION_NAME', 'orders-prod-charge');
    try {
      const store = new OnceFakeStore();
      const h = withOnce(async () => 1, { store, key: { jmespath: 'id' }, logLevel: 'silent' });
      await h({ id: 'x' }, lambdaContext());
      expect(store.calls[0]!.keys[0]).toMatch(/^oncely:once:\{orders-prod-charge:/);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('a key function that throws is a ValidationError naming it', async () => {
    const store = new OnceFakeStore();
    const h = withOnce(async () => 1, {
      store,
      logLevel: 'silent',
      key: () => {
        throw new Error('no');
      },
    });
    await expect(h({}, lambdaContext())).rejects.toThrow(/the key function threw/);
  });
});
