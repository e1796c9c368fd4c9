/**
 * Run-once at its edges (issue 11): a handler that ran never runs again because its result could not be
 * stored; duplicates get exactly the first caller's value or a marker; keys that cannot collide; decision lines
 * without raw keys. Every behaviour runs through both adapters (the withOnce wrapper and the middy middleware).
 */
import { describe, expect, it } from 'vitest';
import {
  isResultNotStored,
  MissingKeyError,
  type OnceOptions,
  PayloadMismatchError,
  ResultNotStorableError,
  ValidationError,
  withOnce,
  withOnceBatch,
} from '../../layers/oncely/src/index.js';
import { digest } from '../../layers/oncely/src/once/record.js';
import { ADAPTERS, deferred, fakeOnce, lambdaContext, wrap } from '../support/once.js';
import { OnceFakeStore } from '../support/once-fake-store.js';
import { RESULT_VALUES } from '../support/result-values.js';

type Ev = { k?: unknown; n?: number };

const setup = (extra: Partial<OnceOptions<Ev>> = {}) =>
  fakeOnce<Ev>({ key: (e) => e.k as never, payload: false, ...extra });

const circular = () => {
  const o: Record<string, unknown> = { a: 1 };
  o.self = o;
  return o;
};

/** Key values JSON would turn into another key's text, and the words the error must name them by. */
const COLLIDING: [label: string, value: () => unknown, named: RegExp][] = [
  ['NaN', () => Number.NaN, /returned NaN/],
  ['Infinity', () => Number.POSITIVE_INFINITY, /returned Infinity/],
  ['-Infinity', () => Number.NEGATIVE_INFINITY, /returned -Infinity/],
  ['[undefined]', () => [undefined], /returned an array whose \$\[0\] is undefined/],
  ['[null]', () => [null], /returned an array whose \$\[0\] is null/],
  ["['a', undefined]", () => ['a', undefined], /an array whose \$\[1\] is undefined/],
  [
    'a sparse array',
    () => Object.assign(new Array(3), { 0: 1, 2: 3 }),
    /an array whose \$\[1\] is undefined/,
  ],
  ['{ a: undefined }', () => ({ a: undefined, b: 1 }), /returned an object whose \$\.a is undefined/],
  ['a nested undefined field', () => ({ a: { b: undefined } }), /\$\.a\.b is undefined/],
  ['NaN inside an object', () => ({ n: Number.NaN }), /\$\.n is NaN/],
  ['a Date', () => new Date(0), /returned a Date,/],
  ['a Map', () => new Map([['a', 1]]), /returned a Map,/],
  ['a class instance', () => new (class Order {})(), /returned an Order,/],
  ['a function', () => () => 1, /returned a function/],
  ['a symbol', () => Symbol('k'), /returned a symbol/],
  ['a circular object', circular, /\$\.self is circular/],
  ['a bigint inside an array', () => [1n], /\$\[0\] is a bigint/],
];

describe.each(ADAPTERS)('keys that cannot collide, through the $type', ({ type }) => {
  it.each(COLLIDING)(
    'a key function returning %s is a MissingKeyError naming its type; the store is untouched',
    async (_label, value, named) => {
      const { store, options, log } = setup();
      let runs = 0;
      const h = wrap(type, async () => ++runs, options);
      const err = await h({ k: value() }, lambdaContext()).catch((e) => e);
      expect(err).toBeInstanceOf(MissingKeyError);
      expect(err.message).toMatch(named);
      expect(err.message).toMatch(/not a usable key/);
      expect(runs).toBe(0);
      expect(store.roundTrips).toBe(0);
      expect(log.parsed()).toMatchObject([{ decision: 'no-key', reason: expect.stringMatching(named) }]);
    },
  );

  it('two events that JSON would give one key ([undefined] and [null]) no longer share a record', async () => {
    const { options } = setup();
    let runs = 0;
    const h = wrap(type, async () => ++runs, options);
    await expect(h({ k: [undefined] }, lambdaContext())).rejects.toBeInstanceOf(MissingKeyError);
    await expect(h({ k: [null] }, lambdaContext())).rejects.toBeInstanceOf(MissingKeyError);
    await expect(h({ k: { a: undefined } }, lambdaContext())).rejects.toBeInstanceOf(MissingKeyError);
    expect(runs).toBe(0);
  });

  it("missingKey: 'run' runs a refused key without a record, as for no key", async () => {
    const { store, options } = setup({ missingKey: 'run' });
    const h = wrap(type, async (_e: Ev, _c, once) => once.fence, options);
    expect(await h({ k: Number.NaN }, lambdaContext())).toBe(0);
    expect(store.roundTrips).toBe(0);
  });

  it('canonical keys: object key order, -0 and 0, 1 and "1" each name one record; null fields are kept', async () => {
    const { options } = setup();
    let runs = 0;
    const h = wrap(type, async () => ++runs, options);
    expect(await h({ k: { b: 1, a: [1, 'x'] } }, lambdaContext())).toBe(1);
    expect(await h({ k: { a: [1, 'x'], b: 1 } }, lambdaContext())).toBe(1);
    expect(await h({ k: -0 }, lambdaContext())).toBe(2);
    expect(await h({ k: 0 }, lambdaContext())).toBe(2);
    expect(await h({ k: 1 }, lambdaContext())).toBe(3);
    expect(await h({ k: '1' }, lambdaContext())).toBe(3);
    expect(await h({ k: { a: null } }, lambdaContext())).toBe(4);
    expect(await h({ k: { a: 'null' } }, lambdaContext())).toBe(5);
    expect(await h({ k: 12345678901234567890n }, lambdaContext())).toBe(6);
  });

  it('an HTTP event whose key function returns NaN is answered 400', async () => {
    const { options } = setup();
    const h = wrap(type, async () => ({ statusCode: 200, body: 'ok' }), {
      ...options,
      key: () => Number.NaN,
    } as OnceOptions<unknown>);
    const res = (await h(
      { httpMethod: 'POST', path: '/', headers: {}, requestContext: {}, body: '{}' },
      lambdaContext(),
    )) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({
      error: 'MissingKeyError',
      message: expect.stringMatching(/NaN/),
    });
  });
});

describe('keys that cannot collide, in a batch', () => {
  it('a record whose key function returns NaN is reported; the others run', async () => {
    const store = new OnceFakeStore(() => Date.now());
    const h = withOnceBatch(async (r) => r.body, {
      store,
      logLevel: 'silent',
      key: (r) => (r.body === 'bad' ? Number.NaN : r.messageId),
    });
    const record = (id: string, body: string) =>
      ({ messageId: id, body, eventSource: 'aws:sqs', eventSourceARN: 'arn:aws:sqs:r:1:q' }) as never;
    const res = await h({ Records: [record('m1', 'ok'), record('m2', 'bad')] }, lambdaContext());
    expect(res.batchItemFailures).toEqual([{ itemIdentifier: 'm2' }]);
  });
});

describe.each(ADAPTERS)('decision lines without raw keys, through the $type', ({ type }) => {
  const personal = 'users/jane.doe@example.com/invoice-2026-11.pdf';

  it('every line names the record by the digest in its Redis key, never by the key', async () => {
    const { store, options, log, decisions } = setup({ ttlMs: 5000 });
    const gate = deferred();
    let runs = 0;
    const h = wrap(
      type,
      async (e: Ev) => {
        runs++;
        if (e.n === 1) await gate.promise;
        if (e.n === 3) throw new Error('fails');
        return runs;
      },
      { ...options, payload: (e) => (e.n === 3 ? 1 : e.n) },
    );
    const first = h({ k: personal, n: 1 }, lambdaContext());
    await expect.poll(() => runs).toBe(1);
    await expect(h({ k: personal, n: 1 }, lambdaContext())).rejects.toThrow(/in progress/); // in-progress
    gate.resolve();
    await first;
    await h({ k: personal, n: 1 }, lambdaContext()); // duplicate-returned
    await expect(h({ k: personal, n: 2 }, lambdaContext())).rejects.toThrow(); // mismatch
    await expect(h({ k: `${personal}-2`, n: 3 }, lambdaContext())).rejects.toThrow('fails'); // released
    const lines = log.parsed();
    expect(lines.map((l) => l.decision)).toEqual([
      'claimed',
      'in-progress',
      'completed',
      'duplicate-returned',
      'mismatch',
      'claimed',
      'released',
    ]);
    expect(log.lines.join('\n')).not.toMatch(/jane|example\.com|invoice/);
    const recordKey = store.calls[0]!.keys[0]!;
    for (const l of lines.slice(0, 5)) {
      expect(l).not.toHaveProperty('key');
      expect(l.keyDigest).toBe(digest(personal));
      expect(recordKey).toContain(`{fn:${l.keyDigest}}`);
    }
    expect(lines[6]!.keyDigest).toBe(digest(`${personal}-2`));
    // onDecision is code, not a log: it still hears the raw key
    expect(decisions[0]!.key).toBe(personal);
  });

  it('logKeys: true adds the raw key to the line', async () => {
    const { options, log } = setup({ logKeys: true });
    const h = wrap(type, async () => 1, options);
    await h({ k: personal }, lambdaContext());
    expect(log.parsed()[0]).toMatchObject({ key: personal, keyDigest: digest(personal) });
  });

  it('logKeys must be a boolean', () => {
    const { options } = setup();
    expect(() => withOnce(async () => 1, { ...options, logKeys: 'yes' as never })).toThrow(ValidationError);
  });
});

describe.each(ADAPTERS)('results that cannot be stored exactly, through the $type', ({ type }) => {
  it.each(RESULT_VALUES)(
    '%s: the first caller gets it; a duplicate gets it exactly or a marker, never a re-run',
    async (_label, make, expected) => {
      const { store, options } = setup();
      const value = make();
      let runs = 0;
      const h = wrap(
        type,
        async () => {
          runs++;
          return value;
        },
        options,
      );
      expect(await h({ k: 'r' }, lambdaContext())).toBe(value);
      expect(store.calls.map((c) => c.script)).toEqual(['once-claim', 'once-complete']);
      const dup = await h({ k: 'r' }, lambdaContext());
      if (expected === 'exact') expect(dup).toStrictEqual(value);
      else {
        expect(isResultNotStored(dup)).toBe(true);
        expect(dup).toMatchObject({
          oncely: 'result-not-stored',
          reason: expected,
          detail: expect.any(String),
        });
      }
      expect(await h({ k: 'r' }, lambdaContext())).toStrictEqual(dup);
      expect(runs).toBe(1);
    },
  );

  it('the marker and the completed line name the type and where it sits, never the value', async () => {
    const { options, log } = setup();
    const h = wrap(type, async () => ({ user: { email: 'jane@example.com', at: new Date(0) } }), options);
    await h({ k: 'r' }, lambdaContext());
    expect(await h({ k: 'r' }, lambdaContext())).toEqual({
      oncely: 'result-not-stored',
      reason: 'changed-by-json',
      detail: '$.user.at is a Date',
    });
    expect(log.parsed()).toMatchObject([
      { decision: 'claimed' },
      { decision: 'completed', reason: 'result not stored (changed-by-json: $.user.at is a Date)' },
      { decision: 'duplicate-returned', reason: 'result not stored (changed-by-json)' },
    ]);
    expect(log.lines.join('\n')).not.toMatch(/jane/);
  });

  it("unstorable: 'throw' is the explicit way to re-run: ResultNotStorableError, record released, a retry runs", async () => {
    const { store, options } = setup({ unstorable: 'throw' });
    let runs = 0;
    const h = wrap(
      type,
      async () => {
        runs++;
        return 10n;
      },
      options,
    );
    await expect(h({ k: 'r' }, lambdaContext())).rejects.toMatchObject({
      name: 'ResultNotStorableError',
      reason: 'not-serialisable',
    });
    await expect(h({ k: 'r' }, lambdaContext())).rejects.toBeInstanceOf(ResultNotStorableError);
    expect(runs).toBe(2);
    expect(store.script('once-release')).toBe(2);
  });

  it('HTTP: a duplicate of an answer that was not stored gets 202 with the marker, marked as a replay', async () => {
    const { options } = setup();
    let runs = 0;
    const big = { statusCode: 200, body: 'x'.repeat(300 * 1024) };
    const h = wrap(
      type,
      async () => {
        runs++;
        return big;
      },
      { ...options, key: 'auto', payload: 'auto' } as OnceOptions<unknown>,
    );
    const event = {
      httpMethod: 'POST',
      path: '/orders',
      headers: { 'Idempotency-Key': 'order-1' },
      requestContext: {},
      body: '{}',
    };
    expect(await h(event, lambdaContext())).toBe(big);
    const dup = (await h(event, lambdaContext())) as { statusCode: number; headers: object; body: string };
    expect(dup.statusCode).toBe(202);
    expect(dup.headers).toMatchObject({ 'idempotent-replayed': 'true', 'content-type': 'application/json' });
    expect(JSON.parse(dup.body)).toMatchObject({ oncely: 'result-not-stored', reason: 'too-large' });
    expect(runs).toBe(1);
  });
});

describe('results that cannot be stored, in a batch', () => {
  it('the record is completed with the marker and acknowledged; its redelivery is acknowledged, not re-run', async () => {
    const store = new OnceFakeStore(() => Date.now());
    let runs = 0;
    const h = withOnceBatch(
      async () => {
        runs++;
        return { n: 10n };
      },
      { store, logLevel: 'silent' },
    );
    const event = {
      Records: [{ messageId: 'm1', body: 'b', eventSource: 'aws:sqs', eventSourceARN: 'arn:aws:sqs:r:1:q' }],
    } as never;
    expect((await h(event, lambdaContext())).batchItemFailures).toEqual([]);
    expect((await h(event, lambdaContext())).batchItemFailures).toEqual([]);
    expect(runs).toBe(1);
    expect(store.script('once-release')).toBe(0);
  });
});

describe.each(ADAPTERS)('Powertools users migrate without surprises, through the $type', ({ type }) => {
  type Order = { orderId?: string; amount?: number; sentAt?: string; Records?: unknown };
  const options = (extra: Partial<OnceOptions<Order>>) => {
    const store = new OnceFakeStore(() => Date.now());
    return { store, options: { store, logLevel: 'silent', ...extra } as OnceOptions<Order> };
  };

  it.each([
    ['a key function', { key: (e: Order) => e.orderId }],
    ['a JMESPath key', { key: { jmespath: 'orderId' } }],
  ] as const)(
    '%s on an event oncely does not recognise: a redelivery whose other fields differ gets the stored result',
    async (_label, extra) => {
      const { options: o } = options(extra as Partial<OnceOptions<Order>>);
      let runs = 0;
      const h = wrap(type, async (e: Order) => ({ runs: ++runs, amount: e.amount }), o);
      expect(await h({ orderId: 'o-1', amount: 5, sentAt: 't1' }, lambdaContext())).toEqual({
        runs: 1,
        amount: 5,
      });
      expect(await h({ orderId: 'o-1', amount: 5, sentAt: 't2' }, lambdaContext())).toEqual({
        runs: 1,
        amount: 5,
      });
      expect(await h({ orderId: 'o-1', amount: 6, sentAt: 't3' }, lambdaContext())).toEqual({
        runs: 1,
        amount: 5,
      });
      expect(runs).toBe(1);
    },
  );

  it('with a payload selector, the payload is checked (payloadValidationJmesPath)', async () => {
    const { options: o } = options({ key: { jmespath: 'orderId' }, payload: { jmespath: 'amount' } });
    const h = wrap(type, async (e: Order) => e.amount, o);
    await h({ orderId: 'o-1', amount: 5, sentAt: 't1' }, lambdaContext());
    expect(await h({ orderId: 'o-1', amount: 5, sentAt: 't2' }, lambdaContext())).toBe(5);
    await expect(h({ orderId: 'o-1', amount: 6 }, lambdaContext())).rejects.toBeInstanceOf(
      PayloadMismatchError,
    );
  });

  it("a key function on a source oncely recognises keeps the source's payload check", async () => {
    const { options: o } = options({ key: (e) => JSON.parse((e.Records as { body: string }[])[0]!.body).id });
    const h = wrap(type, async () => 'ok', o);
    const sqs = (body: string, receive: string) => ({
      Records: [
        {
          messageId: `m-${receive}`,
          body,
          eventSource: 'aws:sqs',
          attributes: { ApproximateReceiveCount: receive },
        },
      ],
    });
    await h(sqs('{"id":"1","v":1}', '1'), lambdaContext());
    expect(await h(sqs('{"id":"1","v":1}', '2'), lambdaContext())).toBe('ok');
    await expect(h(sqs('{"id":"1","v":2}', '3'), lambdaContext())).rejects.toBeInstanceOf(
      PayloadMismatchError,
    );
  });

  it("key: 'event' keys on the whole event, canonicalised (key order does not matter)", async () => {
    const { options: o, store } = options({ key: 'event' });
    let runs = 0;
    const h = wrap(type, async () => ++runs, o);
    expect(await h({ orderId: 'o-1', amount: 5 }, lambdaContext())).toBe(1);
    expect(await h({ amount: 5, orderId: 'o-1' }, lambdaContext())).toBe(1);
    expect(await h({ orderId: 'o-1', amount: 6 }, lambdaContext())).toBe(2);
    expect(store.calls[0]!.keys[0]).toContain(digest('{"amount":5,"orderId":"o-1"}'));
  });

  it("'auto' stays the default; on a plain event its MissingKeyError says to use key: 'event'", async () => {
    const { options: o, store } = options({});
    const h = wrap(type, async () => 1, o);
    const err = await h({ orderId: 'o-1' }, lambdaContext()).catch((e) => e);
    expect(err).toBeInstanceOf(MissingKeyError);
    expect(err.message).toMatch(/not one oncely recognises/);
    expect(err.message).toMatch(/key: 'event'/);
    expect(store.roundTrips).toBe(0);
  });

  it("key: 'event' is a valid option and a misspelt one is named", () => {
    const { options: o } = options({});
    expect(() => withOnce(async () => 1, { ...o, key: 'event' })).not.toThrow();
    expect(() => withOnce(async () => 1, { ...o, key: 'events' as never })).toThrow(/'auto', 'event'/);
  });
});
