/**
 * Strict options: every public options object refuses a field it does not know, with a ValidationError that
 * names the field and, when there is one, the option it was probably meant to be (validate.ts resolveOptions).
 * Nothing here reaches a store: options are refused before the first call.
 */
import { describe, expect, it } from 'vitest';
import { forgetRecord, inspectRecord, listRecords } from '../../layers/oncely/src/admin.js';
import {
  createLock,
  createRedlock,
  elect,
  observeLeader,
  oncePerTick,
  ValidationError,
  withOnce,
  withOnceBatch,
} from '../../layers/oncely/src/index.js';
import { onceMiddleware } from '../../layers/oncely/src/middy.js';
import { unknownProblems } from '../../layers/oncely/src/validate.js';
import { FakeStore } from '../support/fake-store.js';

const store = new FakeStore();
const handler = async () => 'done';

/** Calls `make` and returns the ValidationError it throws (failing the test when it throws anything else). */
function refusal(make: () => unknown): ValidationError {
  try {
    make();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error('expected a ValidationError, nothing was thrown');
}

async function refusedAsync(make: () => Promise<unknown>): Promise<ValidationError> {
  const err = await make().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ValidationError);
  return err as ValidationError;
}

describe('an unknown option is refused, named, with the close name', () => {
  it.each([
    [
      'withOnce({ leaseMs: 5 })',
      () => withOnce(handler, { store, leaseMs: 5 } as never),
      'withOnce options: unknown option "leaseMs" (did you mean ttlMs?)',
    ],
    [
      'withOnce({ bogusOption: 1 })',
      () => withOnce(handler, { store, bogusOption: 1 } as never),
      'withOnce options: unknown option "bogusOption"',
    ],
    [
      'withOnce({ retentionMS }) (a case slip)',
      () => withOnce(handler, { store, retentionMS: 1000 } as never),
      'withOnce options: unknown option "retentionMS" (did you mean retentionMs?)',
    ],
    [
      'withOnce({ duplicat }) (a typo)',
      () => withOnce(handler, { store, duplicat: 'skip' } as never),
      'withOnce options: unknown option "duplicat" (did you mean duplicate?)',
    ],
    [
      'withOnceBatch({ pollMs }) (a withOnce option that means nothing for a batch)',
      () => withOnceBatch(handler, { store, pollMs: 5 } as never),
      'withOnceBatch options: unknown option "pollMs"',
    ],
    [
      'withOnceBatch({ concurency })',
      () => withOnceBatch(handler, { store, concurency: 2 } as never),
      'withOnceBatch options: unknown option "concurency" (did you mean concurrency?)',
    ],
    [
      'oncePerTick({ maxLag })',
      () => oncePerTick(handler, { store, maxLag: 5 } as never),
      'oncePerTick options: unknown option "maxLag" (did you mean maxLagMs?)',
    ],
    [
      'oncePerTick({ retentionMs }) (set by the tick itself)',
      () => oncePerTick(handler, { store, retentionMs: 5 } as never),
      'oncePerTick options: unknown option "retentionMs"',
    ],
    [
      'onceMiddleware({ leaseMs })',
      () => onceMiddleware({ store, leaseMs: 5 } as never),
      'onceMiddleware options: unknown option "leaseMs" (did you mean ttlMs?)',
    ],
    [
      'elect({ leaseMs: 1 })',
      () => elect({ lock: createLock(store), name: 'e', leaseMs: 1, resignOn: false } as never),
      'elect: unknown option "leaseMs" (did you mean ttlMs?)',
    ],
    [
      'elect({ renewEveryMs }) (the former name)',
      () => elect({ lock: createLock(store), name: 'e', renewEveryMs: 100, resignOn: false } as never),
      'elect: unknown option "renewEveryMs" (did you mean extendBeforeMs?)',
    ],
    [
      'elect({ resignOn: "SIGTERM" }) (a default resolved, then checked)',
      () => elect({ lock: createLock(store), name: 'e', resignOn: 'SIGTERM' } as never),
      'elect: resignOn must be a list of signals or false',
    ],
    [
      'createLock({ keyPrefix })',
      () => createLock(store, { keyPrefix: 'x' } as never),
      'Lock options: unknown option "keyPrefix" (did you mean prefix?)',
    ],
    [
      'createLock({ driftfactor })',
      () => createLock(store, { driftfactor: 0.1 } as never),
      'Lock options: unknown option "driftfactor" (did you mean driftFactor?)',
    ],
    [
      'createRedlock({ quorom })',
      () => createRedlock([store], { quorom: 1 } as never),
      'Redlock options: unknown option "quorom" (did you mean quorum?)',
    ],
  ])('%s', (_, make, message) => {
    expect(refusal(make).message).toBe(message);
  });

  it('every problem at once: the unknown fields and the bad values', () => {
    const err = refusal(() => withOnce(handler, { store, leaseMs: 5, ttlMs: -1 } as never));
    expect(err.problems).toEqual([
      'unknown option "leaseMs" (did you mean ttlMs?)',
      'ttlMs must be a whole number of milliseconds from 10 to 2147483647, got -1',
    ]);
  });

  it('options that are not an object are refused', () => {
    expect(refusal(() => createLock(store, 5 as never)).message).toBe(
      'Lock options: options must be an object, got number',
    );
  });
});

describe('per call and nested options', () => {
  const lock = createLock(store);

  it('acquire({ leaseMs }) and using({ leaseMs }) name it (ttlMs is then missing too)', async () => {
    for (const call of [
      () => lock.acquire('k', { leaseMs: 100 } as never),
      () => lock.using('k', async () => 1, { leaseMs: 100 } as never),
    ]) {
      const err = await refusedAsync(call);
      expect(err.problems).toContain('unknown option "leaseMs" (did you mean ttlMs?)');
    }
  });

  it('tryAcquire, resume and oncePerWindow name an unknown field too (tryAcquire still allocates nothing when all is well)', async () => {
    let err = await refusedAsync(() => lock.tryAcquire('k', { ttlMs: 100, leaseMs: 5 } as never));
    expect(err.message).toBe('tryAcquire: unknown option "leaseMs" (did you mean ttlMs?)');
    err = await refusedAsync(() => createRedlock([store]).tryAcquire('k', { ttlMs: 100, ttl: 5 } as never));
    expect(err.message).toBe('tryAcquire: unknown option "ttl" (did you mean ttlMs?)');
    err = await refusedAsync(() => lock.resume('k', 'token', { ttlMs: 100, lease: 1 } as never));
    expect(err.message).toBe('resume: unknown option "lease" (did you mean ttlMs?)');
    err = await refusedAsync(() =>
      lock.oncePerWindow('k', async () => 1, { windowMs: 100, reopenOnErr: true } as never),
    );
    expect(err.message).toBe('oncePerWindow: unknown option "reopenOnErr" (did you mean reopenOnError?)');
    const lease = await lock.tryAcquire('fine', { ttlMs: 1000 });
    expect(lease).not.toBeNull();
    await lease?.release();
  });

  it('retry: an unknown field is refused; a field given as undefined takes its default (never a NaN delay)', async () => {
    const err = await refusedAsync(() => lock.acquire('k', { ttlMs: 100, retry: { retries: 3 } } as never));
    expect(err.message).toBe('acquire: retry: unknown option "retries" (did you mean attempts?)');
    // delayMs: undefined used to spread over the default and make the wait NaN ms; now it is the default (200).
    const holder = await lock.acquire('busy', { ttlMs: 10_000 });
    const started = Date.now();
    const waited = await lock
      .acquire('busy', { ttlMs: 10_000, retry: { attempts: 2, delayMs: undefined, jitterMs: 0 } })
      .catch((e: Error) => e);
    expect(waited).toBeInstanceOf(Error);
    expect((waited as Error).name).toBe('LockNotAcquiredError');
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    await holder.release();
  });

  it('Redlock acquire refuses an unknown retry field too', async () => {
    const redlock = createRedlock([store]);
    const err = await refusedAsync(() => redlock.acquire('k', { ttlMs: 100, retry: { delay: 5 } } as never));
    expect(err.message).toBe('acquire: retry: unknown option "delay" (did you mean delayMs?)');
  });
});

describe('observeLeader options', () => {
  it('an unknown field is refused before any store is asked', async () => {
    const err = await refusedAsync(() => observeLeader(createLock(store), 'e', { timeoutMS: 5 } as never));
    expect(err.message).toBe('observeLeader: unknown option "timeoutMS" (did you mean timeoutMs?)');
  });
});

describe('admin (the CLI) options', () => {
  it.each([
    [
      'inspectRecord({ namespce })',
      () => inspectRecord(store, { namespce: 'n' } as never, 'k'),
      'inspectRecord: unknown option "namespce" (did you mean namespace?); namespace must be a non-empty string without { or }',
    ],
    [
      'forgetRecord({ keyPrefix })',
      () => forgetRecord(store, { namespace: 'n', keyPrefix: 'x' } as never, 'k'),
      'forgetRecord: unknown option "keyPrefix" (did you mean prefix?)',
    ],
    [
      'inspectRecord({ limit }) (a list option)',
      () => inspectRecord(store, { namespace: 'n', limit: 5 } as never, 'k'),
      'inspectRecord: unknown option "limit"',
    ],
    [
      'listRecords({ limt })',
      () => listRecords(store, { namespace: 'n', limt: 5 } as never),
      'listRecords: unknown option "limt" (did you mean limit?)',
    ],
    [
      'listRecords({ status: "done" })',
      () => listRecords(store, { namespace: 'n', status: 'done' } as never),
      'listRecords: status must be one of in-progress, completed, got done',
    ],
  ])('%s', async (_, make, message) => {
    expect((await refusedAsync(make)).message).toBe(message);
  });
});

describe('the close name', () => {
  it.each([
    ['leaseMs', 'ttlMs'],
    ['ttl', 'ttlMs'],
    ['TTLMS', 'ttlMs'],
    ['tlMs', 'ttlMs'],
    ['prefx', 'prefix'],
  ])('%s → %s', (given, meant) => {
    expect(unknownProblems({ [given]: 1 }, { ttlMs: true, prefix: true, retentionMs: true })).toEqual([
      `unknown option "${given}" (did you mean ${meant}?)`,
    ]);
  });

  it('no suggestion when nothing is close; known fields pass', () => {
    expect(unknownProblems({ zzz: 1, ttlMs: 5 }, { ttlMs: true, prefix: true })).toEqual([
      'unknown option "zzz"',
    ]);
  });
});
