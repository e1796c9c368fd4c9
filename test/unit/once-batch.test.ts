import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type OnceBatchOptions,
  type OnceRun,
  StoreUnavailableError,
  ValidationError,
  withOnceBatch,
} from '../../layers/oncely/src/index.js';
import { deferred, lambdaContext, logSink } from '../support/once.js';
import { OnceFakeStore } from '../support/once-fake-store.js';

const record = (id: string, body = id, queue = 'q'): SQSRecord =>
  ({
    messageId: id,
    receiptHandle: `rh-${id}`,
    body,
    attributes: { ApproximateReceiveCount: '1', MessageGroupId: 'g' },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: `arn:aws:sqs:us-east-1:123:${queue}`,
    awsRegion: 'us-east-1',
  }) as SQSRecord;
const batch = (...records: SQSRecord[]): SQSEvent => ({ Records: records });
const ids = (r: { batchItemFailures: { itemIdentifier: string }[] }) =>
  r.batchItemFailures.map((f) => f.itemIdentifier);
const clock = { now: () => Date.now() };

function setup(extra: Partial<OnceBatchOptions> = {}) {
  const store = new OnceFakeStore(() => Date.now());
  const log = logSink();
  return { store, log, options: { store, namespace: 'q', clock, logger: log.logger, ...extra } };
}

describe('withOnceBatch', () => {
  it('10 records, 3 already done and 1 failing: exactly that one reported, 2 round trips', async () => {
    const { store, options, log } = setup();
    const ran: string[] = [];
    const h = withOnceBatch(async (r) => {
      ran.push(r.messageId);
      if (r.body === 'fail') throw new Error('no');
      return r.body.toUpperCase();
    }, options);
    await h(batch(record('1'), record('2'), record('3')), lambdaContext());
    ran.length = 0;
    const before = store.roundTrips;
    const records = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10'].map((id) =>
      record(id, id === '6' ? 'fail' : id),
    );
    const result = await h(batch(...records), lambdaContext());
    expect(ids(result)).toEqual(['6']);
    expect(store.roundTrips - before).toBe(2);
    expect(ran.sort()).toEqual(['10', '4', '5', '6', '7', '8', '9']);
    expect(log.decisions().filter((d) => d === 'duplicate-returned')).toHaveLength(3);
    // The failed record was released, so its redelivery runs; the rest are done.
    const retry = await h(batch(record('6', '6'), record('7')), lambdaContext());
    expect(ids(retry)).toEqual([]);
    expect(ran.at(-1)).toBe('6');
  });

  it('the claims go out as one once-claim-many and the completions as one once-complete-many (one node)', async () => {
    const { store, options } = setup();
    const h = withOnceBatch(async () => 'ok', options);
    const many = vi.spyOn(store, 'runMany');
    const run = vi.spyOn(store, 'run');
    await h(batch(record('a'), record('b'), record('c')), lambdaContext());
    expect(run.mock.calls.map(([script, keys]) => [script.name, keys.length])).toEqual([
      ['once-claim-many', 6],
      ['once-complete-many', 6],
    ]);
    expect(many).not.toHaveBeenCalled();
    expect(store.roundTrips).toBe(2);
    // Each record went through its own claim and completion (the fake lists a merged call's records).
    expect(store.script('once-claim')).toBe(3);
    expect(store.script('once-complete')).toBe(3);
  });

  it("a record in progress elsewhere: reported (duplicate: 'throw'), acknowledged (duplicate: 'skip')", async () => {
    for (const duplicate of ['throw', 'skip'] as const) {
      const { options, store } = setup({ duplicate });
      const gate = deferred();
      const h = withOnceBatch(async (r) => (r.body === 'slow' ? gate.promise : 'ok'), options);
      const first = h(batch(record('a', 'slow')), lambdaContext());
      await vi.waitFor(() => expect(store.script('once-claim')).toBe(1));
      const second = await h(batch(record('a', 'slow'), record('b')), lambdaContext());
      expect(ids(second)).toEqual(duplicate === 'throw' ? ['a'] : []);
      gate.resolve();
      expect(ids(await first)).toEqual([]);
    }
  });

  it('the same key twice in one batch runs once; the second copy is reported, then acknowledged', async () => {
    const { options } = setup({ key: { jmespath: 'body' } });
    let runs = 0;
    const h = withOnceBatch(async () => ++runs, options);
    const r = await h(batch(record('m1', 'order-1'), record('m2', 'order-1')), lambdaContext());
    expect(runs).toBe(1);
    expect(ids(r)).toEqual(['m2']);
    expect(ids(await h(batch(record('m2', 'order-1')), lambdaContext()))).toEqual([]);
    expect(runs).toBe(1);
  });

  it('a key reused with another body is reported (PayloadMismatch) and not run', async () => {
    const { options, log } = setup();
    let runs = 0;
    const h = withOnceBatch(async () => ++runs, options);
    await h(batch(record('a', 'x')), lambdaContext());
    expect(ids(await h(batch(record('a', 'y')), lambdaContext()))).toEqual(['a']);
    expect(runs).toBe(1);
    expect(log.decisions()).toContain('mismatch');
  });

  it('FIFO: runs in order, stops at the first failure and reports it and every record after it', async () => {
    const { store, options } = setup({ concurrency: 5 });
    const ran: string[] = [];
    const h = withOnceBatch(async (r) => {
      ran.push(r.messageId);
      if (r.body === 'fail') throw new Error('no');
      return 1;
    }, options);
    const fifo = (id: string, body = id) => record(id, body, 'q.fifo');
    const before = store.roundTrips;
    const r = await h(batch(fifo('1'), fifo('2'), fifo('3', 'fail'), fifo('4'), fifo('5')), lambdaContext());
    expect(ran).toEqual(['1', '2', '3']);
    expect(ids(r)).toEqual(['3', '4', '5']);
    expect(store.roundTrips - before).toBe(2);
    // 4 and 5 were claimed but never run: released, so their redelivery runs them.
    expect(ids(await h(batch(fifo('3'), fifo('4'), fifo('5')), lambdaContext()))).toEqual([]);
    expect(ran).toEqual(['1', '2', '3', '3', '4', '5']);
  });

  it('runs at most `concurrency` records at once', async () => {
    const { options } = setup({ concurrency: 3 });
    let running = 0;
    let peak = 0;
    const h = withOnceBatch(async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
    }, options);
    const records = Array.from({ length: 10 }, (_, i) => record(`m${i}`));
    expect(ids(await h(batch(...records), lambdaContext()))).toEqual([]);
    expect(peak).toBe(3);
  });

  it('the store down at claim time fails the whole batch before any record runs; failOpen runs them all', async () => {
    const closed = setup();
    let runs = 0;
    const h = withOnceBatch(async () => ++runs, closed.options);
    closed.store.down = new StoreUnavailableError('fake: down', { store: 'fake', ambiguous: false });
    await expect(h(batch(record('a'), record('b')), lambdaContext())).rejects.toBeInstanceOf(
      StoreUnavailableError,
    );
    expect(runs).toBe(0);

    const open = setup({ failOpen: true });
    const seen: OnceRun[] = [];
    const g = withOnceBatch(async (_r, _c, once) => {
      seen.push(once);
    }, open.options);
    open.store.down = new StoreUnavailableError('fake: down', { store: 'fake', ambiguous: false });
    expect(ids(await g(batch(record('a'), record('b')), lambdaContext()))).toEqual([]);
    expect(seen.map((s) => s.fence)).toEqual([0, 0]);
    expect(open.log.decisions()).toContain('fail-open');
  });

  it('the settling round trip fails every attempt: completed records are reported (fail closed), or kept with return', async () => {
    for (const completeFailure of ['throw', 'return'] as const) {
      const { store, options } = setup({ completeFailure });
      const h = withOnceBatch(async () => 'ok', options);
      const down = () => new StoreUnavailableError('fake: down', { store: 'fake', ambiguous: true });
      store.next.push('ok', down(), down(), down());
      const r = await h(batch(record('a'), record('b')), lambdaContext());
      expect(ids(r)).toEqual(completeFailure === 'throw' ? ['a', 'b'] : []);
    }
  });

  it("a batch's completion is retried as one event's: a failed settling round trip, then both recorded", async () => {
    const { store, options, log } = setup();
    const h = withOnceBatch(async (r) => r.body, options);
    store.next.push(
      'ok',
      'apply-then-fail',
      new StoreUnavailableError('fake: down', { store: 'fake', ambiguous: false }),
    );
    const r = await h(batch(record('a'), record('b')), lambdaContext());
    expect(ids(r)).toEqual([]);
    // claim, two failed attempts (the first applied, its reply lost), and the one that finds both completed
    expect(store.roundTrips).toBe(4);
    expect(log.decisions().filter((d) => d === 'completed')).toHaveLength(2);
    expect(log.decisions()).not.toContain('complete-failed');
    const recs = store.calls.filter((c) => c.script === 'once-claim').map((c) => c.keys[0]!);
    expect(recs.map((rec) => store.hash(rec)?.get('s'))).toEqual(['C', 'C']);
    expect(ids(await h(batch(record('a'), record('b')), lambdaContext()))).toEqual([]); // duplicates now
    expect(log.decisions().filter((d) => d === 'duplicate-returned')).toHaveLength(2);
  });

  it("a result that cannot be stored: reported and released (unstorable: 'throw'), or acknowledged with a marker", async () => {
    const strict = setup({ maxResultBytes: 10, unstorable: 'throw' });
    const h = withOnceBatch(async () => 'x'.repeat(50), strict.options);
    expect(ids(await h(batch(record('a')), lambdaContext()))).toEqual(['a']);
    expect(strict.store.script('once-release')).toBe(1);
    const marker = setup({ maxResultBytes: 10 });
    const g = withOnceBatch(async () => 'x'.repeat(50), marker.options);
    expect(ids(await g(batch(record('a')), lambdaContext()))).toEqual([]);
  });

  it("a record without a key is reported by default and run without dedupe with missingKey: 'run'", async () => {
    const strict = setup({ key: { jmespath: 'powertools_json(body).id' } });
    let runs = 0;
    const h = withOnceBatch(async () => ++runs, strict.options);
    const r = await h(batch(record('a', '{"id":"1"}'), record('b', '{}')), lambdaContext());
    expect(ids(r)).toEqual(['b']);
    const lax = setup({ key: { jmespath: 'powertools_json(body).id' }, missingKey: 'run' });
    const g = withOnceBatch(async () => ++runs, lax.options);
    expect(ids(await g(batch(record('b', '{}')), lambdaContext()))).toEqual([]);
    expect(runs).toBe(2);
  });

  it('a key expression that does not parse fails the whole batch with a ValidationError, before the store', async () => {
    const { store, options } = setup({ key: { jmespath: 'powertools_json(body' } });
    let runs = 0;
    const h = withOnceBatch(async () => ++runs, options);
    const err = await h(batch(record('a')), lambdaContext()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).message).toMatch(/^withOnceBatch options: key\.jmespath does not parse/);
    expect(runs).toBe(0);
    expect(store.roundTrips).toBe(0);
  });

  it('a record whose body is not JSON for a powertools_json key is reported, the others run', async () => {
    const { options } = setup({ key: { jmespath: 'powertools_json(body).id' } });
    const h = withOnceBatch(async () => 1, options);
    expect(ids(await h(batch(record('a', 'not json'), record('b', '{"id":"2"}')), lambdaContext()))).toEqual([
      'a',
    ]);
  });

  it('ONCELY_DISABLED=true: every record runs, the store is not touched', async () => {
    const { store, options } = setup();
    vi.stubEnv('ONCELY_DISABLED', 'true');
    try {
      let runs = 0;
      const h = withOnceBatch(async () => ++runs, options);
      await h(batch(record('a'), record('a')), lambdaContext());
      expect(runs).toBe(2);
      expect(store.roundTrips).toBe(0);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('an empty batch costs no round trip', async () => {
    const { store, options } = setup();
    expect(await withOnceBatch(async () => 1, options)(batch(), lambdaContext())).toEqual({
      batchItemFailures: [],
    });
    expect(store.roundTrips).toBe(0);
  });
});

describe('withOnceBatch lease timing (fake timers)', () => {
  beforeEach(() => vi.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => vi.useRealTimers());

  it("every claimed record's lease is extended together, in one runMany per tick", async () => {
    const { store, options } = setup({ ttlMs: 1000 });
    const gate = deferred();
    const h = withOnceBatch(async () => gate.promise, options);
    const spy = vi.spyOn(store, 'runMany');
    const done = h(batch(record('a'), record('b'), record('c'), record('d')), lambdaContext());
    await vi.advanceTimersByTimeAsync(0);
    expect(store.roundTrips).toBe(1); // the claims: one once-claim-many
    expect(spy).toHaveBeenCalledTimes(0);
    await vi.advanceTimersByTimeAsync(500);
    expect(spy).toHaveBeenCalledTimes(1);
    expect(spy.mock.calls[0]![0].map((c) => c.script.name)).toEqual(Array(4).fill('once-extend'));
    await vi.advanceTimersByTimeAsync(500);
    expect(spy).toHaveBeenCalledTimes(2);
    gate.resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(ids(await done)).toEqual([]);
    expect(store.roundTrips).toBe(4); // claims, two extensions, completions
  });

  it('a finished record stays claimed (and extended) until the batch settles', async () => {
    const { store, options } = setup({ ttlMs: 1000 });
    const gate = deferred();
    const h = withOnceBatch(async (r) => (r.messageId === 'slow' ? gate.promise : 'fast'), options);
    const done = h(batch(record('fast'), record('slow')), lambdaContext());
    await vi.advanceTimersByTimeAsync(2500);
    // 'fast' finished at once; its record must still be ours, or a duplicate could run it meanwhile.
    const fastRec = store.calls.find((c) => c.script === 'once-claim')!.keys[0]!;
    expect(store.hash(fastRec)?.get('s')).toBe('P');
    gate.resolve();
    expect(ids(await done)).toEqual([]);
    expect(store.hash(fastRec)?.get('s')).toBe('C');
  });
});
