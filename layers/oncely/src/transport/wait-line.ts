import type { Redis } from 'ioredis';

/** A reply as a pipeline gives it: [error, value], never a rejection. */
export type Settled = [Error | null, unknown];

interface Waiter {
  required: number;
  /** WAIT's bound this grant asked for. */
  waitMs: number;
  /** When the grant's call times out (performance.now()). */
  deadline: number;
  resolve: (reply: Settled) => void;
}

interface Line {
  out: boolean;
  queue: Waiter[];
}

/**
 * The replica wait's WAITs on one connection, one at a time: grants written while a WAIT is out share the next.
 *
 * WAIT blocks the connection it is sent on: the server reads nothing more from it until the replicas have
 * acknowledged or WAIT's bound has passed. With a WAIT after every grant, a shard whose replica does not
 * acknowledge (the old master resyncing as the new one's replica after a failover) served the calls on a
 * connection one per bound: a hundred calls in flight waited out each other's WAITs and timed out instead of
 * being answered. Here a grant's script is written at once (order on the connection is kept) and its WAIT is
 * sent right behind it when no WAIT is out; otherwise it waits for the one out to return, and one WAIT then
 * covers every script written meanwhile (WAIT counts the acknowledgements of every write the connection made
 * before it). That WAIT's bound is at most half of what the earliest of those calls has left, so each is
 * answered (acknowledged, or a ReplicationError) within its timeout. On a healthy shard it also means fewer WAITs.
 */
export class WaitLine {
  readonly #lines = new WeakMap<Redis, Line>();

  /**
   * A WAIT for `required` replicas covering every write sent on `conn` so far (call it in the tick the grant's
   * script is written). Resolves with WAIT's reply: the replicas that acknowledged.
   */
  after(conn: Redis, required: number, waitMs: number, deadline: number): Promise<Settled> {
    let line = this.#lines.get(conn);
    if (!line) {
      line = { out: false, queue: [] };
      this.#lines.set(conn, line);
    }
    const current = line;
    return new Promise<Settled>((resolve) => {
      const waiter = { required, waitMs, deadline, resolve };
      if (current.out) current.queue.push(waiter);
      else this.#send(conn, current, [waiter], waitMs);
    });
  }

  #send(conn: Redis, line: Line, batch: Waiter[], waitMs: number): void {
    line.out = true;
    const required = Math.max(...batch.map((w) => w.required));
    const done = (reply: Settled) => {
      line.out = false;
      for (const w of batch) w.resolve(reply);
      if (line.queue.length === 0) return;
      const next = line.queue.splice(0);
      const left = Math.min(...next.map((w) => w.deadline)) - performance.now();
      const bound = Math.min(...next.map((w) => w.waitMs), Math.floor(left / 2));
      this.#send(conn, line, next, Math.max(1, bound));
    };
    conn.wait(required, waitMs).then(
      (acks) => done([null, acks]),
      (err: unknown) => done([err instanceof Error ? err : new Error(String(err)), null]),
    );
  }
}
