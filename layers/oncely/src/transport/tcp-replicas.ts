/**
 * The TCP side of the replica wait (replicas.ts): how many replicas a grant must reach (ReplicaCounter), and
 * the WAITs sent for it, one at a time per connection (WaitLine).
 */
import type { Cluster, Redis } from 'ioredis';
import type { ReplicaWait } from './replicas.js';

type Client = Redis | Cluster;

/**
 * How long a standalone server's replica must stay gone before 'auto' stops waiting for it, and how often at most
 * a shard that lists no replica is looked at again.
 */
const REPLICA_RECHECK_MS = 5000;

/** The replica count in an INFO replication reply. */
const replicasIn = (info: string): number => Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0);

/**
 * How many replicas a granting write on this key's shard must reach (transport/replicas.ts): the configured
 * count, or with 'auto' one where the shard has replicas. A cluster's slot map lists them. A standalone server's
 * INFO replication is read once per client, in the pipeline of its first grant (TcpStore's firstGrant, no
 * round trip of its own), and again 5 s after a grant that was not acknowledged (a replica gone for good stops
 * being waited for).
 *
 * A shard that lists no replica is looked at again, in the background, on a grant at most every 5 s (the slot
 * map refreshed, INFO read again): a replica that joins later (the old master back after a failover, a new node)
 * is waited for from then on. ioredis itself does not refresh its slot map on a timer. No periodic traffic.
 */
export class ReplicaCounter {
  readonly #kind: 'redis' | 'cluster';
  readonly #wait: ReplicaWait;
  #standalone: { client: Client; count: number } | undefined;
  #standaloneCheck: Promise<number> | undefined;
  #lookedAt = performance.now();
  #recheck: NodeJS.Timeout | undefined;

  constructor(kind: 'redis' | 'cluster', wait: ReplicaWait) {
    this.#kind = kind;
    this.#wait = wait;
  }

  /**
   * The count when it is known without a round trip (a cluster's slot map; a standalone server's INFO read for
   * this client). A shard that lists no replica is looked at again in the background (lookAgain).
   */
  known(c: Client, slot: number): number | undefined {
    if (this.#wait.replicas !== 'auto') return this.#wait.replicas;
    let listed: boolean;
    if (this.#kind === 'cluster') listed = ((c as Cluster).slots[slot]?.length ?? 1) > 1;
    else if (this.#standalone?.client === c) listed = this.#standalone.count > 0;
    else return undefined;
    if (listed) return 1;
    this.#lookAgain(c);
    return 0;
  }

  /**
   * A standalone server's INFO replication read in the same pipeline as a first grant (TcpStore): records
   * the count (an INFO that failed leaves it unknown) and returns how many replicas that grant must reach.
   */
  note(c: Client, reply: [Error | null, unknown] | undefined): number {
    this.#lookedAt = performance.now();
    if (reply && !reply[0] && typeof reply[1] === 'string')
      this.#standalone = { client: c, count: replicasIn(reply[1]) };
    return this.#standalone?.client === c && this.#standalone.count > 0 ? 1 : 0;
  }

  /**
   * After a grant that was not acknowledged, a standalone server's replicas are read again, REPLICA_RECHECK_MS
   * later: a replica whose link dropped for a moment (when writes get lost) is still waited for, one that is
   * still gone by then is not (as a cluster stops listing a replica once it is marked failed).
   */
  notAcknowledged(c: Client): void {
    if (this.#kind !== 'redis' || this.#wait.replicas !== 'auto' || this.#recheck) return;
    this.#recheck = setTimeout(() => {
      this.#recheck = undefined;
      void this.#read(c).catch(() => undefined);
    }, REPLICA_RECHECK_MS);
    this.#recheck.unref?.();
  }

  #read(c: Client): Promise<number> {
    this.#standaloneCheck ??= (c as Redis)
      .info('replication')
      .then(replicasIn)
      .then(
        (count) => {
          this.#standalone = { client: c, count };
          return count;
        },
        () => this.#standalone?.count ?? 0,
      )
      .finally(() => {
        this.#standaloneCheck = undefined;
      });
    return this.#standaloneCheck;
  }

  /** No replica listed: look again if the last look is REPLICA_RECHECK_MS old (not awaited). */
  #lookAgain(c: Client): void {
    const now = performance.now();
    if (now - this.#lookedAt < REPLICA_RECHECK_MS) return;
    this.#lookedAt = now;
    if (this.#kind === 'cluster') (c as Cluster).refreshSlotsCache(() => {});
    else void this.#read(c).catch(() => undefined);
  }
}

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
