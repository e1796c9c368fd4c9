import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

// newToken's CSPRNG draws, counted (the real draw, spied on).
vi.mock('node:crypto', async (importOriginal) => {
  const crypto = await importOriginal<typeof import('node:crypto')>();
  return { ...crypto, randomFillSync: vi.fn(crypto.randomFillSync) };
});

const { randomFillSync } = await import('node:crypto');
const { newToken, TOKEN_POOL_MAX_AGE_MS } = await import('../../layers/oncely/src/acquire.js');
const { Deadlines } = await import('../../layers/oncely/src/clock.js');

describe('Deadlines (one timer for the bounds of one duration)', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('runs each deadline once its own duration has passed, in order, and never a cancelled one', () => {
    const d = new Deadlines(1000);
    const fired: string[] = [];
    d.add(() => fired.push('a'));
    vi.advanceTimersByTime(400);
    const b = d.add(() => fired.push('b'));
    d.add(() => fired.push('c'));
    vi.advanceTimersByTime(599);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(['a']);
    b.cancel();
    vi.advanceTimersByTime(399);
    expect(fired).toEqual(['a']);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(['a', 'c']);
    expect(d.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('keeps one timer for many deadlines, and drops done ones as new ones come', () => {
    const d = new Deadlines(2000);
    for (let i = 0; i < 1000; i++) d.add(() => undefined).cancel();
    expect(vi.getTimerCount()).toBe(1);
    expect(d.size).toBe(1); // the last one, dropped by the next add
    const late = vi.fn();
    vi.advanceTimersByTime(1000);
    d.add(late);
    vi.advanceTimersByTime(1000); // the first timer fires, finds nothing due, is set for the one left
    expect(late).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(1000);
    expect(late).toHaveBeenCalledOnce();
  });

  it('a deadline added by an expiring one gets its full duration', () => {
    const d = new Deadlines(100);
    const fired: number[] = [];
    d.add(() => {
      fired.push(performance.now());
      d.add(() => fired.push(performance.now()));
    });
    vi.advanceTimersByTime(100);
    vi.advanceTimersByTime(99);
    expect(fired).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(fired).toHaveLength(2);
    expect(fired[1]! - fired[0]!).toBe(100);
  });
});

describe('newToken (a CSPRNG pool)', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('reads 16 fresh bytes per token, one draw per 64 tokens, never from a pool older than its bound', () => {
    newToken(); // a fresh pool
    vi.mocked(randomFillSync).mockClear();
    vi.advanceTimersByTime(TOKEN_POOL_MAX_AGE_MS + 1);
    const tokens = Array.from({ length: 128 }, () => newToken());
    expect(randomFillSync).toHaveBeenCalledTimes(2); // the stale pool dropped, then once per 64
    expect(new Set(tokens).size).toBe(128);
    for (const t of tokens) expect(Buffer.from(t, 'base64url')).toHaveLength(16);
    vi.mocked(randomFillSync).mockClear();
    vi.advanceTimersByTime(TOKEN_POOL_MAX_AGE_MS + 1);
    newToken();
    expect(randomFillSync).toHaveBeenCalledOnce(); // too old: drawn again
    vi.setSystemTime(Date.now() - 60_000); // the wall clock stepped back (a restored snapshot, NTP)
    newToken();
    expect(randomFillSync).toHaveBeenCalledTimes(2);
  });
});

describe('Deadlines, ref', () => {
  it('holds the process only while a deadline is pending', () => {
    const refs: boolean[] = [];
    const d = new Deadlines(60_000, { ref: true });
    const spy = vi.spyOn(globalThis, 'setTimeout');
    const a = d.add(() => undefined);
    const timer = spy.mock.results[0]!.value as NodeJS.Timeout;
    spy.mockRestore();
    refs.push(timer.hasRef());
    a.cancel();
    refs.push(timer.hasRef()); // all cancelled: the process may exit
    const b = d.add(() => undefined);
    refs.push(timer.hasRef());
    b.cancel();
    refs.push(timer.hasRef());
    expect(refs).toEqual([true, false, true, false]);
  });

  it('runs every due deadline even when one throws, then throws its error', () => {
    vi.useFakeTimers();
    try {
      const d = new Deadlines(10);
      const ran: string[] = [];
      d.add(() => {
        throw new Error('boom');
      });
      d.add(() => ran.push('second'));
      expect(() => vi.advanceTimersByTime(10)).toThrow('boom');
      expect(ran).toEqual(['second']);
    } finally {
      vi.useRealTimers();
    }
  });
});
