import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LockNotReleasedError, StoreUnavailableError } from '../../layers/oncely/src/index.js';
import {
  GIVE_BACK_DELAY_MS,
  GIVE_BACK_MAX_DELAY_MS,
  giveBack,
  type ReleaseResult,
} from '../../layers/oncely/src/lease.js';

/** Timing of the give-back loop on fake timers; the behaviour against real servers is in test/integration. */
describe('giveBack: retrying a release we may need', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  const clock = { now: () => Date.now() };
  const down = () => new StoreUnavailableError('fake: 503', { store: 'fake', ambiguous: true });

  /** A release that fails `failures` times, then answers `answer`; records when each call came. */
  function flaky(failures: number, answer: ReleaseResult = 'released') {
    const at: number[] = [];
    const release = async (): Promise<ReleaseResult> => {
      at.push(Date.now());
      if (at.length <= failures) throw down();
      return answer;
    };
    return { release, at };
  }

  it('backs off from 50 ms, doubling to 1 s (jittered within the upper half), until the release succeeds', async () => {
    const { release, at } = flaky(7);
    const errors: Error[] = [];
    const done = giveBack({
      key: 'k',
      release,
      clock,
      until: Date.now() + 60_000,
      onError: (e) => errors.push(e),
    });
    await vi.runAllTimersAsync();
    expect(await done).toBe('released');
    expect(at).toHaveLength(8);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    const bounds = [50, 100, 200, 400, 800, 1000, 1000];
    expect(GIVE_BACK_DELAY_MS).toBe(50);
    expect(GIVE_BACK_MAX_DELAY_MS).toBe(1000);
    gaps.forEach((gap, i) => {
      expect(gap).toBeGreaterThanOrEqual(bounds[i]! / 2);
      expect(gap).toBeLessThanOrEqual(bounds[i]!);
    });
    expect(errors).toEqual([]);
  });

  it('stops at once when the store says the key is not ours', async () => {
    const { release, at } = flaky(2, 'not-held');
    const done = giveBack({ key: 'k', release, clock, until: Date.now() + 60_000, onError: () => {} });
    await vi.runAllTimersAsync();
    expect(await done).toBe('not-held');
    expect(at).toHaveLength(3);
  });

  it('gives up before the deadline and reports a LockNotReleasedError with the last store error', async () => {
    const { release, at } = flaky(Number.POSITIVE_INFINITY);
    const errors: Error[] = [];
    const started = Date.now();
    const done = giveBack({
      key: 'k',
      release,
      clock,
      until: started + 2000,
      onError: (e) => errors.push(e),
    });
    await vi.runAllTimersAsync();
    expect(await done).toBe('failed');
    expect(at.every((t) => t < started + 2000)).toBe(true);
    expect(at.length).toBeGreaterThanOrEqual(4);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(LockNotReleasedError);
    expect(errors[0]).toMatchObject({ key: 'k', attempts: at.length });
    expect(errors[0]!.cause).toBeInstanceOf(StoreUnavailableError);
  });

  it('does not retry an error that is not the store failing', async () => {
    const bug = new TypeError('not a store error');
    const errors: Error[] = [];
    let calls = 0;
    const done = giveBack({
      key: 'k',
      release: async () => {
        calls++;
        throw bug;
      },
      clock,
      until: Date.now() + 60_000,
      onError: (e) => errors.push(e),
    });
    await vi.runAllTimersAsync();
    expect(await done).toBe('failed');
    expect(calls).toBe(1);
    expect(errors[0]!.cause).toBe(bug);
  });

  it('an onError that throws does not escape', async () => {
    const { release } = flaky(Number.POSITIVE_INFINITY);
    const done = giveBack({
      key: 'k',
      release,
      clock,
      until: Date.now() + 100,
      onError: () => {
        throw new Error('reporter broke');
      },
    });
    await vi.runAllTimersAsync();
    expect(await done).toBe('failed');
  });
});
