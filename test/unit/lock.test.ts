import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_KEY_BYTES, newToken } from '../../layers/oncely/src/acquire.js';
import {
  createLock,
  createRedlock,
  LockLostError,
  LockNotAcquiredError,
  StoreUnavailableError,
  ValidationError,
} from '../../layers/oncely/src/index.js';
import { FakeStore } from '../support/fake-store.js';

const clock = { now: () => Date.now() };

function setup() {
  const store = new FakeStore(() => Date.now());
  const lock = createLock(store, { clock });
  return { store, lock };
}

describe('input checks', () => {
  const { lock } = setup();
  it.each([
    ['empty key', '', { ttlMs: 1000 }, /key must not be empty/],
    ['over-long key', 'x'.repeat(MAX_KEY_BYTES + 1), { ttlMs: 1000 }, /bytes, the limit is 512/],
    ['non-string key', 42 as unknown as string, { ttlMs: 1000 }, /key must be a string/],
    ['NaN ttl', 'k', { ttlMs: Number.NaN }, /ttlMs must be a whole number/],
    ['negative ttl', 'k', { ttlMs: -5 }, /ttlMs must be a whole number/],
    ['fractional ttl', 'k', { ttlMs: 1.5 }, /ttlMs must be a whole number/],
    ['too-large ttl', 'k', { ttlMs: 2 ** 31 }, /ttlMs must be a whole number/],
    ['missing ttl', 'k', {} as { ttlMs: number }, /ttlMs must be a whole number.*undefined/],
  ])('%s is a ValidationError naming the problem', async (_name, key, opts, message) => {
    const err = await lock.tryAcquire(key, opts).catch((e) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.name).toBe('ValidationError');
    expect(err.message).toMatch(message);
  });

  it('bad retry options are rejected together', async () => {
    const err = await lock
      .acquire('k', {
        ttlMs: 1000,
        retry: { attempts: 0, delayMs: -1, jitterMs: 0.5, maxWaitMs: Number.NaN },
      })
      .catch((e) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.problems).toHaveLength(4);
    expect(err.message).toMatch(/retry\.attempts.*retry\.delayMs.*retry\.jitterMs.*retry\.maxWaitMs/);
  });

  it.each([0, 1000, 2.5, '10'])(
    "using()'s extendBeforeMs %s is rejected (Lock and Redlock alike) before anything is taken",
    async (bad) => {
      const stores = [new FakeStore(), new FakeStore(), new FakeStore()];
      for (const l of [createLock(stores[0]!, { clock }), createRedlock(stores, { clock })]) {
        let ran = false;
        const err = await l
          .using('k', async () => (ran = true), { ttlMs: 1000, extendBeforeMs: bad as number })
          .catch((e) => e);
        expect(err).toBeInstanceOf(ValidationError);
        expect(err.message).toBe('using: extendBeforeMs must be a whole number from 1 to ttlMs − 1');
        expect(ran).toBe(false);
      }
      for (const store of stores) expect(store.calls).toEqual([]);
    },
  );

  it('bad lock options are rejected', () => {
    expect(() => createLock(new FakeStore(), { prefix: 'a{b', driftFactor: 2 })).toThrow(ValidationError);
  });

  it.each([0, -5, 1.5, '100', Number.NaN])('fenceGraceMs %s is rejected, naming the option', (bad) => {
    const err = (() => {
      try {
        createLock(new FakeStore(), { fenceGraceMs: bad as number });
      } catch (e) {
        return e as ValidationError;
      }
    })();
    expect(err).toBeInstanceOf(ValidationError);
    expect(err?.message).toMatch(/fenceGraceMs must be a whole number of milliseconds/);
  });

  it('extend with a bad ttl is rejected before touching the store', async () => {
    const { lock, store } = setup();
    const lease = (await lock.tryAcquire('k', { ttlMs: 1000 }))!;
    await expect(lease.extend(0)).rejects.toBeInstanceOf(ValidationError);
    expect(store.calls.map((c) => c.script)).toEqual(['acquire']);
  });
});

describe('lease timing (fake clock)', () => {
  beforeEach(() => vi.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => vi.useRealTimers());

  it('validUntil is start + ttl − drift, and the signal fires at that deadline', async () => {
    const { lock } = setup();
    const lease = (await lock.tryAcquire('k', { ttlMs: 1000 }))!;
    expect(lease.validUntil).toBe(1_000_000 + 1000 - (10 + 2));
    vi.advanceTimersByTime(987);
    expect(lease.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(lease.signal.aborted).toBe(true);
    expect(lease.signal.reason).toBeInstanceOf(LockLostError);
    expect(lease.signal.reason.reason).toBe('expired');
  });

  it('the signal fires at the deadline even while an extend call hangs', async () => {
    const { lock, store } = setup();
    const lease = (await lock.tryAcquire('k', { ttlMs: 1000 }))!;
    vi.advanceTimersByTime(500);
    store.next.push('hang');
    void lease.extend(1000);
    vi.advanceTimersByTime(487);
    expect(lease.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(lease.signal.aborted).toBe(true);
  });

  it('a successful extend moves the deadline', async () => {
    const { lock } = setup();
    const lease = (await lock.tryAcquire('k', { ttlMs: 1000 }))!;
    vi.advanceTimersByTime(900);
    await lease.extend(2000);
    expect(lease.validUntil).toBe(1_000_900 + 2000 - (20 + 2));
    vi.advanceTimersByTime(1500);
    expect(lease.signal.aborted).toBe(false);
  });

  it('extend of a stolen lease throws LockLostError(stolen) and aborts the signal', async () => {
    const { lock, store } = setup();
    const lease = (await lock.tryAcquire('k', { ttlMs: 1000 }))!;
    store.data.set(lock.keyOf('k'), { value: 'someone-else' });
    const err = await lease.extend().catch((e) => e);
    expect(err).toBeInstanceOf(LockLostError);
    expect(err.reason).toBe('stolen');
    expect(lease.signal.aborted).toBe(true);
    await expect(lease.extend()).rejects.toBeInstanceOf(LockLostError);
  });

  it('extend after expiry fails without a round trip', async () => {
    const { lock, store } = setup();
    const lease = (await lock.tryAcquire('k', { ttlMs: 100 }))!;
    vi.advanceTimersByTime(200);
    const err = await lease.extend().catch((e) => e);
    expect(err).toBeInstanceOf(LockLostError);
    expect(err.reason).toBe('expired');
    expect(store.calls.filter((c) => c.script === 'extend')).toHaveLength(0);
  });

  it('using() extends in the background and the lease stays valid past its TTL', async () => {
    const { lock, store } = setup();
    const p = lock.using(
      'k',
      async (lease) => {
        await vi.advanceTimersByTimeAsync(1000);
        return lease.signal.aborted;
      },
      { ttlMs: 200 },
    );
    await expect(p).resolves.toBe(false);
    expect(store.calls.filter((c) => c.script === 'extend').length).toBeGreaterThanOrEqual(9);
    expect(store.calls.at(-1)?.script).toBe('release');
  });

  it('a store failure during auto-extend is retried while the lease is valid', async () => {
    const { lock, store } = setup();
    const errors: Error[] = [];
    const p = lock.using(
      'k',
      async (lease) => {
        await vi.advanceTimersByTimeAsync(100); // the first extend is due at 100 ms
        store.next.push(new StoreUnavailableError('down', { store: 'fake', ambiguous: false }));
        await vi.advanceTimersByTimeAsync(600);
        return lease.signal.aborted;
      },
      { ttlMs: 200, onError: (e) => errors.push(e) },
    );
    await expect(p).resolves.toBe(false);
    expect(errors.length).toBe(1);
  });
});

describe('acquire retries', () => {
  it('retries with one token until the holder releases', async () => {
    const { lock, store } = setup();
    const held = (await lock.tryAcquire('k', { ttlMs: 60_000 }))!;
    setTimeout(() => void held.release(), 50);
    const lease = await lock.acquire('k', { ttlMs: 1000, retry: { attempts: 50, delayMs: 10, jitterMs: 5 } });
    expect(lease.fence).toBe(2);
    const tokens = new Set(
      store.calls
        .filter((c) => c.script === 'acquire')
        .slice(1)
        .map((c) => c.args[0]),
    );
    expect(tokens.size).toBe(1);
  });

  it('gives up after `attempts` with LockNotAcquiredError', async () => {
    const { lock, store } = setup();
    await lock.tryAcquire('k', { ttlMs: 60_000 });
    const err = await lock
      .acquire('k', { ttlMs: 1000, retry: { attempts: 3, delayMs: 1, jitterMs: 0 } })
      .catch((e) => e);
    expect(err).toBeInstanceOf(LockNotAcquiredError);
    expect(err.attempts).toBe(3);
    expect(store.calls.filter((c) => c.script === 'acquire')).toHaveLength(4);
  });

  it('stops at maxWaitMs', async () => {
    const { lock } = setup();
    await lock.tryAcquire('k', { ttlMs: 60_000 });
    const t0 = Date.now();
    const err = await lock
      .acquire('k', { ttlMs: 1000, retry: { attempts: 1000, delayMs: 20, jitterMs: 0, maxWaitMs: 100 } })
      .catch((e) => e);
    expect(err).toBeInstanceOf(LockNotAcquiredError);
    // Without the bound it would retry 1000 times (20 s); headroom for a loaded machine.
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err.attempts).toBeGreaterThanOrEqual(2);
  });

  it('an AbortSignal ends the wait', async () => {
    const { lock } = setup();
    await lock.tryAcquire('k', { ttlMs: 60_000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('shutdown')), 30);
    const err = await lock
      .acquire('k', { ttlMs: 1000, retry: { attempts: 1000, delayMs: 10_000 }, signal: ac.signal })
      .catch((e) => e);
    expect(err).toBeInstanceOf(LockNotAcquiredError);
    expect(err.cause.message).toBe('shutdown');
  });

  it('a lost reply is recovered: the retry with the same token gets the same fence', async () => {
    const { lock, store } = setup();
    store.next.push('apply-then-fail');
    const lease = await lock.acquire('k', { ttlMs: 1000, retry: { attempts: 2, delayMs: 1, jitterMs: 0 } });
    expect(lease.fence).toBe(1);
    expect(store.calls.map((c) => c.script)).toEqual(['acquire', 'acquire']);
  });

  it('a store that stays down gives LockNotAcquiredError with the StoreError as cause, and undoes', async () => {
    const { lock, store } = setup();
    store.next.push('apply-then-fail', 'apply-then-fail');
    const err = await lock
      .acquire('k', { ttlMs: 1000, retry: { attempts: 2, delayMs: 1, jitterMs: 0 } })
      .catch((e) => e);
    expect(err).toBeInstanceOf(LockNotAcquiredError);
    expect(err.cause).toBeInstanceOf(StoreUnavailableError);
    expect(store.calls.at(-1)?.script).toBe('release');
    expect(store.get(lock.keyOf('k'))).toBeUndefined();
  });

  it('tryAcquire surfaces a store failure as StoreError', async () => {
    const { lock, store } = setup();
    store.next.push(new StoreUnavailableError('down', { store: 'fake', ambiguous: false }));
    await expect(lock.tryAcquire('k', { ttlMs: 1000 })).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});

describe('using() never hides fn', () => {
  it("returns fn's result when release fails, and reports the release error", async () => {
    const { lock, store } = setup();
    const errors: Error[] = [];
    const result = await lock.using(
      'k',
      async () => {
        store.next.push(new StoreUnavailableError('down', { store: 'fake', ambiguous: false }));
        return 'value';
      },
      { ttlMs: 1000, onError: (e) => errors.push(e) },
    );
    expect(result).toBe('value');
    expect(errors[0]).toBeInstanceOf(StoreUnavailableError);
  });

  it("rethrows fn's own error unchanged when release also fails", async () => {
    const { lock, store } = setup();
    const mine = new Error('mine');
    const err = await lock
      .using(
        'k',
        async () => {
          store.next.push(new StoreUnavailableError('down', { store: 'fake', ambiguous: false }));
          throw mine;
        },
        { ttlMs: 1000 },
      )
      .catch((e) => e);
    expect(err).toBe(mine);
  });

  it('hands fn the fence and releases after', async () => {
    const { lock, store } = setup();
    const fence = await lock.using('k', async (lease) => lease.fence, { ttlMs: 1000 });
    expect(fence).toBe(1);
    expect(store.get(lock.keyOf('k'))).toBeUndefined();
  });
});

describe('ambiguous failures give the lock back', () => {
  it('tryAcquire whose reply was lost releases the lock it may hold', async () => {
    const { lock, store } = setup();
    store.next.push('apply-then-fail');
    await expect(lock.tryAcquire('k', { ttlMs: 60_000 })).rejects.toBeInstanceOf(StoreUnavailableError);
    await new Promise((r) => setTimeout(r, 0));
    expect(store.calls.map((c) => c.script)).toEqual(['acquire', 'release']);
    expect(store.get(lock.keyOf('k'))).toBeUndefined();
  });
});

describe('a process resumed past its lease', () => {
  it('sees the signal aborted on first read, before its expiry timer has run', async () => {
    let now = 0;
    const store = new FakeStore(() => now);
    const lock = createLock(store, { clock: { now: () => now } });
    const lease = (await lock.tryAcquire('k', { ttlMs: 1000 }))!;
    now = 5000; // the clock jumped (a SIGSTOP, a frozen sandbox); no timer has fired
    expect(lease.signal.aborted).toBe(true);
    expect(lease.signal.reason).toBeInstanceOf(LockLostError);
    expect(lease.held).toBe(false);
  });
});

describe('LockNotAcquiredError keeps a short per-attempt record', () => {
  it("names the store and the holder's remaining ms for each attempt, the last ten at most", async () => {
    const { lock, store } = setup();
    const holder = (await lock.tryAcquire('k', { ttlMs: 60_000 }))!;
    const err = (await lock
      .acquire('k', { ttlMs: 1000, retry: { attempts: 12, delayMs: 0, jitterMs: 0 } })
      .catch((e: unknown) => e)) as LockNotAcquiredError;
    expect(err).toBeInstanceOf(LockNotAcquiredError);
    expect(err.attempts).toBe(12);
    expect(err.history.map((a) => a.attempt)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    for (const a of err.history) {
      expect(a.nodes).toHaveLength(1);
      expect(a.nodes[0]).toMatchObject({ node: store.name, status: 'taken' });
      expect(a.nodes[0]!.holderTtlMs).toBeGreaterThan(0);
      expect(a.nodes[0]!.holderTtlMs).toBeLessThanOrEqual(60_000);
    }
    expect(err.history.map((a) => a.atMs)).toEqual([...err.history.map((a) => a.atMs)].sort((x, y) => x - y));
    expect(err.message).toMatch(/last attempt: fake taken by another holder \(\d+ ms left\)/);
    expect(err.message).not.toContain(holder.token);
  });

  it('records a store failure as unreachable, with its cause', async () => {
    const { lock, store } = setup();
    const down = new StoreUnavailableError('fake: connection refused', { store: 'fake', ambiguous: false });
    store.next.push(down, down);
    const err = (await lock
      .acquire('k', { ttlMs: 1000, retry: { attempts: 2, delayMs: 0, jitterMs: 0 } })
      .catch((e: unknown) => e)) as LockNotAcquiredError;
    expect(err.history).toHaveLength(2);
    expect(err.history[1]!.nodes).toEqual([{ node: 'fake', status: 'unreachable', cause: down }]);
    expect(err.message).toMatch(/fake unreachable \(fake: connection refused\)/);
  });

  it('an acquire aborted while waiting still names what each attempt heard', async () => {
    const { lock } = setup();
    await lock.tryAcquire('k', { ttlMs: 60_000 });
    const ac = new AbortController();
    const pending = lock
      .acquire('k', { ttlMs: 1000, signal: ac.signal, retry: { attempts: 100, delayMs: 20, jitterMs: 0 } })
      .catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    ac.abort(new Error('shutting down'));
    const err = (await pending) as LockNotAcquiredError;
    expect(err.message).toMatch(/aborted after \d+ attempt\(s\); last attempt: fake taken/);
    expect(err.history.length).toBeGreaterThan(0);
    expect(err.history.every((a) => a.nodes[0]?.status === 'taken')).toBe(true);
  });

  it('several keys: names the key another owner holds', async () => {
    const { lock } = setup();
    await lock.tryAcquire('b', { ttlMs: 60_000 });
    const err = (await lock
      .acquire(['a', 'b', 'c'], { ttlMs: 1000, retry: { attempts: 1 } })
      .catch((e: unknown) => e)) as LockNotAcquiredError;
    expect(err.history[0]!.nodes).toEqual([
      expect.objectContaining({ node: 'fake', key: 'b', status: 'taken' }),
    ]);
    expect(err.message).toContain('fake "b" taken by another holder');
  });
});

describe('newToken', () => {
  it('draws 128 fresh bits for each token, as 22 base64url characters (a token is never handed out twice)', () => {
    const tokens = Array.from({ length: 2000 }, () => newToken());
    expect(new Set(tokens).size).toBe(tokens.length);
    for (const t of tokens) expect(t).toMatch(/^[A-Za-z0-9_-]{22}$/);
    const first = tokens[0]!;
    newToken();
    expect(tokens[0]).toBe(first);
    expect(Buffer.from(first, 'base64url')).toHaveLength(16);
  });
});
