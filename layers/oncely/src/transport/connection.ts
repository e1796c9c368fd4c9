import { StoreUnavailableError } from '../errors.js';
import { type Echoing, Probes } from './probe.js';

/** What a TCP store needs of an ioredis `Redis` or `Cluster`. */
export interface TcpClient extends Echoing {
  readonly status: string;
  on(event: 'ready', listener: () => void): unknown;
  disconnect(reconnect?: boolean): void;
}

interface Generation<C> {
  readonly client: Promise<C>;
  /** The same client once the promise has resolved, for calls that need not wait a tick for it. */
  resolved: C | undefined;
  /** The client has been ready at least once: a command of a call that timed out may have been written. */
  ready: boolean;
}

/**
 * Where a call goes, for what a timeout does: a Cluster holds and probes the connection to the node that owns
 * the call's slot (cluster-recovery.ts); a standalone client is one connection, handled here.
 */
export interface Route<C> {
  /** A probe of the connection this call would be written to is running: settles when it has. */
  held(client: C): Promise<unknown> | undefined;
  /** The call timed out after it was handed to the client. */
  timedOut(client: C): void;
}

/**
 * The one client of a TCP store, and the bound on every call made through it.
 *
 * - A call gets `timeoutMs` for everything it does: waiting for a probe to settle (below), connecting, a
 *   Cluster's slot refresh and redirects, EVALSHA and the EVAL after NOSCRIPT. Past it the call fails with
 *   StoreUnavailableError, ambiguous unless nothing was written (the call was still held, or the client never
 *   got as far as a ready connection).
 * - A timeout does not drop the connection the other calls in flight are using: it makes it suspect, and one
 *   probe at a time asks whether it is still in step (probe.ts: ECHOes queued behind the calls in flight,
 *   bounded by timeoutMs). Kept if they come back right; otherwise that connection alone is dropped, once (an
 *   `owned` client is disconnected, without resending the commands it holds: those calls fail as unavailable;
 *   the next call connects afresh). A call issued while its connection is being probed is held until the probe
 *   settles, then written to the kept or the fresh connection: never behind a stream that may be shifted (a
 *   lost reply would hand it its neighbour's reply). So a standalone server paused for less than about two
 *   timeouts keeps its connection, and calls issued after one that timed out travel behind it, in order.
 * - A client the caller handed in is theirs: its calls are bounded, never held, probed or closed.
 */
export class Connection<C extends TcpClient> {
  #current: Generation<C> | undefined;
  readonly #connect: () => Promise<C>;
  readonly #timeoutMs: number;
  readonly #name: string;
  readonly #owned: boolean;
  readonly #probes = new Probes<C>();
  /** A standalone client: the connection is the client. */
  readonly #direct: Route<C> = {
    held: (c) => (this.#probes.size > 0 ? this.#probes.pending(c) : undefined),
    timedOut: (c) => {
      const generation = this.#current;
      if (!this.#owned || generation?.resolved !== c) return;
      void this.#probes.start(c, this.#timeoutMs, () => this.#drop(generation));
    },
  };

  constructor(connect: () => Promise<C>, options: { timeoutMs: number; name: string; owned: boolean }) {
    this.#connect = connect;
    this.#timeoutMs = options.timeoutMs;
    this.#name = options.name;
    this.#owned = options.owned;
  }

  /** The current client, connecting one if there is none. */
  get(): Promise<C> {
    return this.#generation().client;
  }

  /** The current client if it is there already (created and handed over), else undefined: see get(). */
  now(): C | undefined {
    return this.#current?.resolved;
  }

  /**
   * Runs `work` bounded by `timeoutMs`, after the probe of its connection if one is running; on timeout the
   * route (by default: the client's one connection) is told, see the class.
   */
  call<T>(work: () => Promise<T>, route: Route<C> = this.#direct): Promise<T> {
    let generation = this.#generation();
    let sent = false;
    let over = false;
    // One timer and one promise per call (the hot path): no Promise.race, no finally.
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        over = true;
        reject(
          new StoreUnavailableError(`${this.#name}: no reply within ${this.#timeoutMs} ms`, {
            store: this.#name,
            ambiguous: sent && generation.ready,
          }),
        );
        // A client still connecting has had nothing written: nothing to ask about.
        if (sent && generation.resolved) route.timedOut(generation.resolved);
      }, this.#timeoutMs);
      timer.unref?.();
      const send = () => {
        if (over) return;
        sent = true;
        generation = this.#generation();
        work().then(
          (value) => {
            clearTimeout(timer);
            resolve(value);
          },
          (err: unknown) => {
            clearTimeout(timer);
            reject(err);
          },
        );
      };
      const c = generation.resolved;
      const held = c !== undefined && this.#owned ? route.held(c) : undefined;
      if (held) held.then(send, send);
      else send();
    });
  }

  /** Disconnects the current client (an owned one); the next call connects afresh. */
  async close(): Promise<C | undefined> {
    const generation = this.#current;
    this.#current = undefined;
    return generation?.client.catch(() => undefined);
  }

  #generation(): Generation<C> {
    if (this.#current) return this.#current;
    const generation: Generation<C> = {
      ready: false,
      resolved: undefined,
      client: this.#connect().then((c) => {
        generation.resolved = c;
        if (c.status === 'ready') generation.ready = true;
        c.on('ready', () => {
          generation.ready = true;
        });
        return c;
      }),
    };
    generation.client.catch(() => {
      if (this.#current === generation) this.#current = undefined;
    });
    this.#current = generation;
    return generation;
  }

  #drop(generation: Generation<C>): void {
    if (!this.#owned || this.#current !== generation) return;
    this.#current = undefined;
    generation.client.then(
      (c) => c.disconnect(false),
      () => undefined,
    );
  }
}
