import { randomBytes } from 'node:crypto';

/** What a probe needs of a connection: ECHO, sent on that connection behind whatever it carries. */
export interface Echoing {
  echo(message: string): Promise<string>;
}

/**
 * ECHOes a probe sends, back to back. One reply lost on the way shifts every later reply onto the command
 * before it: the second ECHO then receives the third's nonce (or the first's receives a script's reply), so a
 * shifted stream is told within one round trip instead of waiting out the bound.
 */
const ECHOES = 3;

/**
 * Whether a connection on which a call timed out can still be trusted, asked once per connection at a time.
 *
 * A timeout alone does not say the connection is bad: the server may be slow, or busy with the calls queued
 * before this one, and dropping the connection would fail every other call in flight on it (under a failover,
 * timeouts then feed themselves). So a probe is sent on that same connection, queued behind the commands in
 * flight: ECHOes of random nonces. Each answered with exactly its own nonce: the stream is in step, the
 * connection is kept. A reply that is not its own nonce (a reply was lost, the stream is shifted), an error,
 * or no reply within `boundMs` (nothing answers on it: the node is gone or paused, or the path is half-open):
 * `onBad` runs, once, and the connection is never probed again. While a probe runs, `pending` hands callers
 * its settlement, so that calls are not written behind an unverified stream.
 */
export class Probes<K extends Echoing & object> {
  readonly #running = new Map<K, Promise<boolean>>();
  readonly #bad = new WeakSet<K>();

  /** How many probes are running (0 on the hot path: nothing to look up). */
  get size(): number {
    return this.#running.size;
  }

  /** The running probe of `conn`, if any: resolves (true: kept, false: dropped) once it has settled. */
  pending(conn: K): Promise<boolean> | undefined {
    return this.#running.get(conn);
  }

  /** True once `conn` has been found bad (and handed to onBad). */
  isBad(conn: K): boolean {
    return this.#bad.has(conn);
  }

  /** Probes `conn` unless a probe of it is running already or it was found bad. */
  start(conn: K, boundMs: number, onBad: () => void): Promise<boolean> {
    const running = this.#running.get(conn);
    if (running) return running;
    if (this.#bad.has(conn)) return Promise.resolve(false);
    const probe = new Promise<boolean>((resolve) => {
      let left = ECHOES;
      let settled = false;
      const settle = (good: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#running.delete(conn);
        if (!good) {
          this.#bad.add(conn);
          onBad();
        }
        resolve(good);
      };
      const timer = setTimeout(() => settle(false), boundMs);
      timer.unref?.();
      // All sent in one tick: on the connection one after the other, behind what is in flight.
      for (let i = 0; i < ECHOES; i++) {
        const nonce = randomBytes(16).toString('hex');
        conn.echo(nonce).then(
          (reply) => {
            if (reply !== nonce) settle(false);
            else if (--left === 0) settle(true);
          },
          () => settle(false),
        );
      }
    });
    this.#running.set(conn, probe);
    return probe;
  }
}
