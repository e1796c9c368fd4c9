import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Probes } from '../../layers/oncely/src/transport/connection.js';
import { WaitLine } from '../../layers/oncely/src/transport/tcp-replicas.js';

/** A connection whose replies the test hands out, in order, as a RESP stream does. */
class FakeConnection {
  readonly sent: string[] = [];
  readonly #pending: { resolve: (v: string) => void; reject: (e: Error) => void }[] = [];
  echo(message: string): Promise<string> {
    this.sent.push(message);
    return new Promise((resolve, reject) => this.#pending.push({ resolve, reject }));
  }
  /** One reply was lost: each command gets the reply of the one after it. */
  answerShifted(): void {
    const pending = this.#pending.splice(0);
    pending.forEach((p, i) => {
      const next = this.sent[this.sent.length - pending.length + i + 1];
      if (next !== undefined) p.resolve(next);
    });
  }
  answerInOrder(): void {
    const pending = this.#pending.splice(0);
    const first = this.sent.length - pending.length;
    for (const [i, p] of pending.entries()) p.resolve(this.sent[first + i]!);
  }
}

describe('Probes', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('keeps a connection whose ECHOes come back in step', async () => {
    const probes = new Probes<FakeConnection>();
    const conn = new FakeConnection();
    const onBad = vi.fn();
    const probe = probes.start(conn, 1000, onBad);
    expect(probes.pending(conn)).toBe(probe);
    conn.answerInOrder();
    expect(await probe).toBe(true);
    expect(onBad).not.toHaveBeenCalled();
    expect(probes.size).toBe(0);
    expect(new Set(conn.sent).size).toBe(conn.sent.length); // a fresh nonce each
  });

  it('tells a shifted stream within one round trip, and drops the connection once', async () => {
    const probes = new Probes<FakeConnection>();
    const conn = new FakeConnection();
    const onBad = vi.fn();
    const probe = probes.start(conn, 1000, onBad);
    conn.answerShifted();
    expect(await probe).toBe(false);
    expect(onBad).toHaveBeenCalledTimes(1);
    // Never probed (or dropped) again.
    const sent = conn.sent.length;
    expect(await probes.start(conn, 1000, onBad)).toBe(false);
    expect(conn.sent.length).toBe(sent);
    expect(onBad).toHaveBeenCalledTimes(1);
  });

  it('drops a connection that does not answer within the bound', async () => {
    const probes = new Probes<FakeConnection>();
    const conn = new FakeConnection();
    const onBad = vi.fn();
    const probe = probes.start(conn, 1000, onBad);
    await vi.advanceTimersByTimeAsync(999);
    expect(onBad).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(await probe).toBe(false);
    expect(onBad).toHaveBeenCalledTimes(1);
  });

  it('runs one probe per connection at a time', async () => {
    const probes = new Probes<FakeConnection>();
    const conn = new FakeConnection();
    const first = probes.start(conn, 1000, () => undefined);
    const sent = conn.sent.length;
    expect(probes.start(conn, 1000, () => undefined)).toBe(first);
    expect(conn.sent.length).toBe(sent);
    conn.answerInOrder();
    expect(await first).toBe(true);
  });
});

/** A connection that records WAITs and lets the test answer them. */
function fakeWaits() {
  const waits: { required: number; ms: number; answer: (acks: number) => void }[] = [];
  const conn = {
    wait(required: number, ms: number) {
      return new Promise<number>((resolve) => waits.push({ required, ms, answer: resolve }));
    },
  } as unknown as Redis;
  return { conn, waits };
}

describe('WaitLine', () => {
  it('sends one WAIT at a time per connection; grants written meanwhile share the next', async () => {
    const line = new WaitLine();
    const { conn, waits } = fakeWaits();
    const now = performance.now();
    const a = line.after(conn, 1, 500, now + 10_000);
    const b = line.after(conn, 1, 500, now + 10_000);
    const c = line.after(conn, 1, 500, now + 10_000);
    expect(waits.map((w) => w.ms)).toEqual([500]);
    waits[0]!.answer(1);
    expect(await a).toEqual([null, 1]);
    // b and c: one WAIT, sent once the first returned.
    expect(waits.length).toBe(2);
    waits[1]!.answer(0);
    expect(await b).toEqual([null, 0]);
    expect(await c).toEqual([null, 0]);
  });

  it("a shared WAIT's bound is at most half of what the earliest of its calls has left", async () => {
    const line = new WaitLine();
    const { conn, waits } = fakeWaits();
    const now = performance.now();
    void line.after(conn, 1, 500, now + 10_000);
    void line.after(conn, 1, 500, now + 300);
    waits[0]!.answer(1);
    await vi.waitFor(() => expect(waits.length).toBe(2));
    expect(waits[1]!.ms).toBeLessThanOrEqual(150);
    expect(waits[1]!.ms).toBeGreaterThanOrEqual(1);
  });
});
