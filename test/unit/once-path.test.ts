/**
 * One path per record (issue 22): each run-once policy is applied in one place, so one event (a batch of one)
 * and an SQS batch meet it alike. Every scenario runs through both: withOnce, one invocation per record, and
 * withOnceBatch, the records in one invocation.
 */
import middy, { type MiddlewareObj } from '@middy/core';
import type { SQSRecord } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type OnceBatchOptions,
  type OnceOptions,
  StoreUnavailableError,
  ValidationError,
  withOnce,
  withOnceBatch,
} from '../../layers/oncely/src/index.js';
import { type OnceContext, onceMiddleware } from '../../layers/oncely/src/middy.js';
import { digest } from '../../layers/oncely/src/once/record.js';
import { fakeOnce, lambdaContext, sqsRecord } from '../support/once.js';

type Through = 'one event' | 'a batch';
const PATHS: readonly Through[] = ['one event', 'a batch'];

const clock = { now: () => Date.now() };
const byId = (r: SQSRecord) => r.messageId;
const down = (ambiguous = false) => new StoreUnavailableError('fake: down', { store: 'fake', ambiguous });

/** What became of delivered records: done (acknowledged), failed (reported or thrown), and what was thrown. */
interface Fate {
  done: string[];
  failed: string[];
  thrown: unknown[];
}

/**
 * A handler that returns the record's body, behind withOnce or withOnceBatch over a fake store; deliver()
 * sends records through it: one invocation per record (one event), or one for them all (a batch).
 */
function setup(through: Through, extra: Partial<OnceOptions<SQSRecord>> = {}) {
  const fx = fakeOnce<SQSRecord>({ clock, key: byId, ...extra });
  const ran: string[] = [];
  const handler = async (r: SQSRecord) => {
    ran.push(r.messageId);
    if (r.body === 'throw') throw new Error('the handler failed');
    return r.body;
  };
  const one = withOnce(handler, fx.options);
  const batch = withOnceBatch(handler, fx.options as OnceBatchOptions);
  /** `ids`: message ids; `id:throw` makes the handler throw for that record. */
  const deliver = async (...given: string[]): Promise<Fate> => {
    const fate: Fate = { done: [], failed: [], thrown: [] };
    const ids = given.map((g) => g.split(':')[0]!);
    const record = (id: string) =>
      sqsRecord(id, given.find((g) => g.startsWith(`${id}:`))?.split(':')[1] ?? id);
    if (through === 'one event') {
      for (const id of ids) {
        await one(record(id), lambdaContext()).then(
          () => fate.done.push(id),
          (e: unknown) => fate.failed.push(id) && fate.thrown.push(e),
        );
      }
      return fate;
    }
    try {
      const r = await batch({ Records: ids.map(record) }, lambdaContext());
      const failed = r.batchItemFailures.map((f) => f.itemIdentifier);
      return { done: ids.filter((id) => !failed.includes(id)), failed, thrown: [] };
    } catch (e) {
      return { done: [], failed: ids, thrown: [e] };
    }
  };
  return { ...fx, ran, deliver, roundTripsPer: (n: number) => (through === 'one event' ? n : 1) };
}

describe.each(PATHS)('through %s', (through) => {
  it('a claim round trip that fails ambiguously: every record given back, so a redelivery runs at once', async () => {
    const { store, deliver, ran } = setup(through);
    store.next.push('apply-then-fail');
    if (through === 'one event') store.next.push('ok', 'apply-then-fail'); // b's claim, a fresh invocation
    const fate = await deliver('a', 'b');
    expect(fate.done).toEqual([]);
    expect(fate.thrown[0]).toBeInstanceOf(StoreUnavailableError);
    expect(ran).toEqual([]);
    await vi.waitFor(() => expect(store.script('once-release')).toBe(2));
    expect((await deliver('a', 'b')).done).toEqual(['a', 'b']);
    expect(ran).toEqual(['a', 'b']);
  });

  it('the store down at claim time, fail closed: nothing runs; one store-error decision per record, with its key', async () => {
    const { store, deliver, ran, log } = setup(through);
    store.down = down();
    const fate = await deliver('a', 'b');
    expect(fate.failed).toEqual(['a', 'b']);
    expect(fate.thrown.every((e) => e instanceof StoreUnavailableError)).toBe(true);
    expect(ran).toEqual([]);
    expect(log.parsed().map((d) => [d.decision, d.keyDigest])).toEqual([
      ['store-error', digest('a')],
      ['store-error', digest('b')],
    ]);
  });

  it('failOpen: every handler runs unfenced; one fail-open decision per record, with its key', async () => {
    const { store, deliver, ran, decisions } = setup(through, { failOpen: true });
    store.down = down();
    expect((await deliver('a', 'b')).done).toEqual(['a', 'b']);
    expect(ran).toEqual(['a', 'b']);
    expect(decisions.map((d) => [d.decision, d.key])).toEqual([
      ['fail-open', 'a'],
      ['fail-open', 'b'],
    ]);
  });

  it('a key function that throws: a no-key decision, the record fails and does not run, the store untouched', async () => {
    const { store, deliver, ran, decisions } = setup(through, {
      key: (r) => {
        if (r.messageId === 'bad') throw new Error('no id');
        return r.messageId;
      },
    });
    const fate = await deliver('bad', 'good');
    expect(fate.failed).toEqual(['bad']);
    expect(fate.done).toEqual(['good']);
    if (through === 'one event') expect(fate.thrown[0]).toBeInstanceOf(ValidationError);
    expect(ran).toEqual(['good']);
    expect(decisions.filter((d) => d.decision === 'no-key').map((d) => d.reason)).toEqual([
      expect.stringMatching(/the key function threw/),
    ]);
    expect(store.script('once-claim')).toBe(1);
  });

  it('a completion whose reply is lost is retried and finds the record completed by us', async () => {
    const { store, deliver, decisions, roundTripsPer } = setup(through);
    // one event: a's claim, a's lost completion; b goes through cleanly. A batch: the claims, the lost settle.
    store.next.push('ok', 'apply-then-fail');
    expect((await deliver('a', 'b')).done).toEqual(['a', 'b']);
    expect(decisions.filter((d) => d.decision === 'completed').map((d) => d.key)).toEqual(['a', 'b']);
    expect(decisions.map((d) => d.decision)).not.toContain('complete-failed');
    expect(store.roundTrips).toBe(roundTripsPer(2) * 2 + 1); // claims, completions, and the one retry
  });

  it("a release that fails, even on an error that is not the store's: logged; the handler's error still wins", async () => {
    const { store, deliver, decisions } = setup(through);
    const { run, runMany } = { run: store.run.bind(store), runMany: store.runMany.bind(store) };
    const broken = () => Promise.reject(new TypeError('a broken store'));
    store.run = (script, keys, args) => (script.name === 'once-release' ? broken() : run(script, keys, args));
    store.runMany = (calls) =>
      calls.some((c) => c.script.name === 'once-release') ? broken() : runMany(calls);
    const fate = await deliver('a:throw');
    expect(fate.failed).toEqual(['a']);
    if (through === 'one event') expect(fate.thrown[0]).toMatchObject({ message: 'the handler failed' });
    else expect(fate.thrown).toEqual([]);
    expect(decisions.filter((d) => d.decision === 'store-error').map((d) => d.reason)).toEqual([
      'release: a broken store; the record expires with its lease',
    ]);
  });

  it.each([
    ['throw', false],
    ['return', true],
  ] as const)(
    'completion failing every attempt, completeFailure %s: the record done = %s',
    async (completeFailure, done) => {
      const { store, deliver, decisions } = setup(through, { completeFailure });
      store.next.push('ok', down(true), down(true), down(true));
      const fate = await deliver('a');
      expect(fate.done).toEqual(done ? ['a'] : []);
      expect(store.roundTrips).toBe(4); // the claim and three attempts
      expect(decisions.filter((d) => d.decision === 'complete-failed').map((d) => d.key)).toEqual(['a']);
      if (!done && through === 'one event') expect(fate.thrown[0]).toBeInstanceOf(StoreUnavailableError);
    },
  );

  it('ONCELY_DISABLED: every handler runs, no round trip, one disabled decision per invocation', async () => {
    const { store, deliver, ran, decisions, roundTripsPer } = setup(through);
    vi.stubEnv('ONCELY_DISABLED', 'true');
    try {
      expect((await deliver('a', 'a')).done).toEqual(['a', 'a']);
      expect(ran).toEqual(['a', 'a']);
      expect(store.roundTrips).toBe(0);
      expect(decisions.map((d) => d.decision)).toEqual(Array(roundTripsPer(2)).fill('disabled'));
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe.each(PATHS)('through %s, on fake timers', (through) => {
  beforeEach(() => vi.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => vi.useRealTimers());

  it('a claim whose reply comes after its lease: the record is given back and not run; it fails closed', async () => {
    const { store, deliver, ran } = setup(through, { ttlMs: 1000 });
    const slow = async <T>(reply: T) => {
      await new Promise((r) => setTimeout(r, 1500));
      return reply;
    };
    const { run, runMany } = { run: store.run.bind(store), runMany: store.runMany.bind(store) };
    // A batch's claims go as one once-claim-many.
    store.run = (script, keys, args) =>
      script.name.startsWith('once-claim') ? slow(store.apply(script, keys, args)) : run(script, keys, args);
    store.runMany = (calls) =>
      calls[0]?.script.name === 'once-claim'
        ? slow(calls.map((c) => ({ ok: true as const, value: store.apply(c.script, c.keys, c.args) })))
        : runMany(calls);
    const fate = deliver('a', 'b');
    await vi.advanceTimersByTimeAsync(3000);
    const { failed, thrown } = await fate;
    expect(failed).toEqual(['a', 'b']);
    // One event throws StoreUnavailableError; a batch reports both records (its claim round trip did not fail).
    expect(thrown).toHaveLength(through === 'one event' ? 2 : 0);
    for (const e of thrown) expect(e).toBeInstanceOf(StoreUnavailableError);
    expect(ran).toEqual([]);
    expect(store.script('once-release')).toBe(2);
    expect(store.calls.filter((c) => c.script === 'once-claim').every((c) => !store.hash(c.keys[0]!))).toBe(
      true,
    );
  });

  it("a long handler's record is extended at half its lease, and a failing extension is retried", async () => {
    const { store, options } = setup(through, { ttlMs: 1000 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const handler = async () => {
      await gate;
      return 'ok';
    };
    const done =
      through === 'one event'
        ? withOnce(handler, options)(sqsRecord('a'), lambdaContext())
        : withOnceBatch(handler, options as OnceBatchOptions)({ Records: [sqsRecord('a')] }, lambdaContext());
    await vi.advanceTimersByTimeAsync(0);
    store.next.push(down());
    await vi.advanceTimersByTimeAsync(500); // half the lease: the extension fails...
    expect(store.script('once-extend')).toBe(0);
    await vi.advanceTimersByTimeAsync(200); // ...and is retried while the lease is valid
    expect(store.script('once-extend')).toBe(1);
    release();
    await done;
    expect(store.script('once-complete')).toBe(1);
  });
});

describe('the middy middleware hands middy’s handler to one()', () => {
  const setupMiddy = (other: MiddlewareObj<SQSRecord, unknown, Error, OnceContext>) => {
    const fx = fakeOnce<SQSRecord>({ clock, key: byId });
    let runs = 0;
    const h = middy<SQSRecord, unknown, Error, OnceContext>(async (r: SQSRecord) => ({
      body: r.body,
      runs: ++runs,
    }))
      .use(onceMiddleware<SQSRecord, unknown>(fx.options))
      .use(other);
    return { ...fx, h: (r: SQSRecord) => h(r, lambdaContext() as OnceContext), runs: () => runs };
  };

  it('a middleware after it that throws in before: the record is released, the error goes through unchanged', async () => {
    let refuse = true;
    const auth = new Error('not allowed');
    const { h, store, decisions, runs } = setupMiddy({
      before: () => {
        if (refuse) throw auth;
      },
    });
    await expect(h(sqsRecord('a'))).rejects.toBe(auth);
    expect(runs()).toBe(0);
    expect(store.script('once-release')).toBe(1);
    expect(decisions.map((d) => d.decision)).toEqual(['claimed', 'released']);
    refuse = false;
    expect(await h(sqsRecord('a'))).toEqual({ body: 'a', runs: 1 });
  });

  it('what the middlewares after it make of the response is what is stored and what a duplicate gets', async () => {
    const { h, runs } = setupMiddy({
      after: (request) => {
        request.response = { ...(request.response as object), stamped: true };
      },
    });
    expect(await h(sqsRecord('a'))).toEqual({ body: 'a', runs: 1, stamped: true });
    // The duplicate is answered by oncely's before: the stored, stamped response; nothing after it runs.
    expect(await h(sqsRecord('a'))).toEqual({ body: 'a', runs: 1, stamped: true });
    expect(runs()).toBe(1);
  });
});
