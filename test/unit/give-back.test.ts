import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  DEFAULT_GIVE_BACK_LIMIT_MS,
  GiveBacks,
  LATE_DELAY_DIVISOR,
  type LateGrant,
  MAX_PENDING_GIVE_BACKS,
} from '../../layers/oncely/src/give-back.js';
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

/** The give-back of a grant that may still land (give-back.ts), on fake timers. */
describe('GiveBacks: a late grant is given back after the node has answered again', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  const clock = { now: () => Date.now() };
  const timedOut = () => new StoreUnavailableError('fake: no reply', { store: 'fake', ambiguous: true });
  const refused = () => new StoreUnavailableError('fake: refused', { store: 'fake', ambiguous: false });

  /**
   * A node whose acquire timed out (ambiguous) and is still queued there: it runs when the node first answers
   * a release, and after that answer (the release overtook it). `answers[i]` is release i's fate: a delay
   * before it fails, or 'answer' (the node is back).
   */
  function lateNode(answers: ({ failAfterMs: number } | 'answer')[]) {
    let held = false;
    let acquireRan = false;
    const sentAt: number[] = [];
    const release = async (): Promise<ReleaseResult> => {
      const fate = answers[sentAt.length] ?? 'answer';
      sentAt.push(Date.now());
      if (fate !== 'answer') {
        await new Promise((r) => setTimeout(r, fate.failAfterMs));
        throw timedOut();
      }
      const result: ReleaseResult = held ? 'released' : 'expired';
      held = false;
      if (!acquireRan) {
        acquireRan = true; // the acquire that was overtaken runs now
        held = true;
      }
      return result;
    };
    return { release, sentAt, held: () => held };
  }

  function start(giveBacks: GiveBacks, grant: Partial<LateGrant> & Pick<LateGrant, 'release'>) {
    return giveBacks.start({
      key: 'k',
      node: '#0 fake',
      ttlMs: 10_000,
      ...grant,
      acquire: grant.acquire ?? Promise.reject(timedOut()),
    });
  }

  it('an answer to a release sent before the node answered again is not final: one more release, sent after it', async () => {
    const node = lateNode(['answer', 'answer']);
    const errors: Error[] = [];
    const giveBacks = new GiveBacks(clock, (e) => errors.push(e));
    const done = start(giveBacks, { release: node.release });
    await vi.runAllTimersAsync();
    expect(await done).toBe('released');
    expect(node.sentAt).toHaveLength(2);
    expect(node.held()).toBe(false); // the old rule stopped at the first 'expired' and left the key
    expect(errors).toEqual([]);
    expect(giveBacks.pending).toBe(0);
  });

  it("after the acquire's own reply, the first release is final", async () => {
    const node = lateNode(['answer']);
    const done = start(new GiveBacks(clock, undefined), {
      release: node.release,
      acquire: Promise.resolve([1, 7]),
    });
    await vi.runAllTimersAsync();
    expect(await done).toBe('expired');
    expect(node.sentAt).toHaveLength(1);
  });

  it('an acquire that was never sent (not ambiguous) needs no give-back', async () => {
    const node = lateNode([]);
    const done = start(new GiveBacks(clock, undefined), {
      release: node.release,
      acquire: Promise.reject(refused()),
    });
    await vi.runAllTimersAsync();
    expect(await done).toBe('not-sent');
    expect(node.sentAt).toEqual([]);
  });

  it('keeps one release out at a time: after one that timed out, the next goes at once', async () => {
    const node = lateNode([{ failAfterMs: 2000 }, { failAfterMs: 2000 }, 'answer', 'answer']);
    const done = start(new GiveBacks(clock, undefined), { release: node.release });
    await vi.runAllTimersAsync();
    expect(await done).toBe('released');
    const gaps = node.sentAt.slice(1).map((t, i) => t - node.sentAt[i]!);
    expect(gaps).toEqual([2000, 2000, 0]);
  });

  /**
   * A node paused until `wakeAt`: a release sent while it sleeps fails after `timeoutMs` (the store's timeout)
   * unless the node wakes first, when it is answered at the wake; the acquire queued there runs right after
   * that first answer (the release overtook it).
   */
  function pausedNode(wakeAt: number, timeoutMs = 1000) {
    let held = false;
    let woke = false;
    const sentAt: number[] = [];
    const release = async (): Promise<ReleaseResult> => {
      const t = Date.now();
      sentAt.push(t);
      if (t + timeoutMs <= wakeAt) {
        await new Promise((r) => setTimeout(r, timeoutMs));
        throw timedOut();
      }
      if (t < wakeAt) await new Promise((r) => setTimeout(r, wakeAt - t));
      const result: ReleaseResult = held ? 'released' : 'expired';
      held = false;
      if (!woke) {
        woke = true;
        held = true;
      }
      return result;
    };
    return { release, sentAt, held: () => held };
  }

  it('a node paused past the TTL is still given back when it wakes, soon after, with fewer releases past the TTL', async () => {
    const started = Date.now();
    const wakeAt = started + 60_000;
    const node = pausedNode(wakeAt);
    const errors: Error[] = [];
    const giveBacks = new GiveBacks(clock, (e) => errors.push(e));
    const done = start(giveBacks, { release: node.release, ttlMs: 5000 });
    await vi.runAllTimersAsync();
    expect(await done).toBe('released');
    expect(node.held()).toBe(false); // the old deadline (the TTL) left the key for a TTL after the wake
    expect(errors).toEqual([]);
    // Woken at most a tenth of the pause after the wake; the confirming release right after the answer.
    expect(node.sentAt.at(-1)! - wakeAt).toBeLessThanOrEqual(60_000 / LATE_DELAY_DIVISOR);
    // About one release a second within the TTL, then the backoff grows: 37-38 in the minute (60 at 1 s).
    const inTtl = node.sentAt.filter((t) => t < started + 5000).length;
    expect(inTtl).toBeGreaterThanOrEqual(4);
    expect(node.sentAt.length).toBeLessThan(45);
    expect(giveBacks.pending).toBe(0);
  });

  it('a node paused past the hard limit: the releases go on past the TTL up to it, then it is reported once and nothing runs', async () => {
    const node = pausedNode(Number.POSITIVE_INFINITY, 300);
    const errors: Error[] = [];
    const giveBacks = new GiveBacks(clock, (e) => errors.push(e), { limitMs: 20_000 });
    const started = Date.now();
    const done = start(giveBacks, { release: node.release, ttlMs: 5000 });
    expect(giveBacks.pending).toBe(1);
    await vi.runAllTimersAsync();
    expect(await done).toBe('failed');
    expect(node.sentAt.some((t) => t > started + 15_000)).toBe(true);
    expect(node.sentAt.every((t) => t < started + 20_000)).toBe(true);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(LockNotReleasedError);
    expect(errors[0]).toMatchObject({ key: 'k', attempts: node.sentAt.length });
    expect(errors[0]!.message).toContain('#0 fake');
    expect(errors[0]!.message).toContain('answered nothing within 20000 ms');
    expect(giveBacks.pending).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('the default hard limit is 5 minutes (at least the TTL); a pause that long costs under 100 releases', async () => {
    expect(DEFAULT_GIVE_BACK_LIMIT_MS).toBe(300_000);
    const node = pausedNode(Number.POSITIVE_INFINITY);
    const errors: Error[] = [];
    const started = Date.now();
    const done = start(new GiveBacks(clock, (e) => errors.push(e)), { release: node.release, ttlMs: 5000 });
    await vi.runAllTimersAsync();
    expect(await done).toBe('failed');
    expect(node.sentAt.at(-1)! - started).toBeGreaterThanOrEqual(300_000 - 2000);
    expect(node.sentAt.every((t) => t < started + 300_000)).toBe(true);
    expect(node.sentAt.length).toBeLessThan(100);
    expect(errors).toHaveLength(1);
    // A TTL longer than the limit: the TTL.
    const long = pausedNode(Number.POSITIVE_INFINITY);
    const from = Date.now();
    const ended = start(new GiveBacks(clock, undefined, { limitMs: 1000 }), {
      release: long.release,
      ttlMs: 8000,
    });
    await vi.runAllTimersAsync();
    expect(await ended).toBe('failed');
    expect(long.sentAt.some((t) => t > from + 6000)).toBe(true);
    expect(long.sentAt.every((t) => t < from + 8000)).toBe(true);
  });

  it('once the node answered, the deadline is a TTL after that answer, not the hard limit', async () => {
    const node = lateNode(['answer', ...Array.from({ length: 1000 }, () => ({ failAfterMs: 300 }))]);
    const errors: Error[] = [];
    const started = Date.now();
    const done = start(new GiveBacks(clock, (e) => errors.push(e)), { release: node.release, ttlMs: 5000 });
    await vi.runAllTimersAsync();
    expect(await done).toBe('failed');
    expect(node.sentAt.every((t) => t < started + 5000)).toBe(true);
    expect(Date.now() - started).toBeLessThan(6000);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).not.toContain('answered nothing');
  });

  it("the node's first answer moves the deadline to a TTL after it: the confirming release still goes out", async () => {
    // The first answer comes 4.9 s into a 5 s TTL, then the confirming release fails twice (1 s each).
    const node = lateNode([{ failAfterMs: 4900 }, 'answer', { failAfterMs: 1000 }, { failAfterMs: 1000 }]);
    const errors: Error[] = [];
    const started = Date.now();
    const done = start(new GiveBacks(clock, (e) => errors.push(e)), { release: node.release, ttlMs: 5000 });
    await vi.runAllTimersAsync();
    expect(await done).toBe('released');
    expect(node.sentAt.at(-1)).toBeGreaterThan(started + 5000);
    expect(errors).toEqual([]);
  });

  it('past MAX pending give-backs, a grant is reported at once and left to its TTL', async () => {
    const errors: Error[] = [];
    const giveBacks = new GiveBacks(clock, (e) => errors.push(e), { maxPending: 1 });
    const first = start(giveBacks, { release: lateNode(['answer', 'answer']).release });
    const second = lateNode([]);
    expect(await start(giveBacks, { release: second.release })).toBe('failed');
    expect(second.sentAt).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/give-backs are already running/);
    await vi.runAllTimersAsync();
    expect(await first).toBe('released');
    expect(MAX_PENDING_GIVE_BACKS).toBe(1000);
  });
});
