import { StoreUnavailableError } from '../errors.js';

/** What a TCP store needs of an ioredis `Redis` or `Cluster`. */
export interface TcpClient {
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
 * The one client of a TCP store, and the bound on every call made through it.
 *
 * - A call gets `timeoutMs` for everything it does: connecting, a Cluster's slot refresh and redirects,
 *   EVALSHA and the EVAL after NOSCRIPT. Past it the call fails with StoreUnavailableError, ambiguous unless
 *   the client never got as far as a ready connection (then nothing was written).
 * - A client on which a call timed out is not trusted again (as redis-py, go-redis and Jedis do): on a
 *   half-open connection every later command would wait out its own timeout too, and after a reply lost on
 *   the way every later reply on that socket would go to the command before it. An `owned` client is
 *   disconnected (no reconnect, no resend of the commands it holds: those calls fail as unavailable) and the
 *   next call connects afresh. A client the caller handed in is theirs: its calls are bounded, never closed.
 */
export class Connection<C extends TcpClient> {
  #current: Generation<C> | undefined;
  readonly #connect: () => Promise<C>;
  readonly #timeoutMs: number;
  readonly #name: string;
  readonly #owned: boolean;

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
   * Runs `work` bounded by `timeoutMs`; on timeout drops the client the call started on (see the class), unless
   * `onTimeout` handles it (a Cluster drops only the connection to the node that did not answer, so calls to
   * healthy masters go on) and returns true.
   */
  call<T>(work: () => Promise<T>, onTimeout?: (client: C) => boolean): Promise<T> {
    const generation = this.#generation();
    // One timer and one promise per call (the hot path): no Promise.race, no finally.
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new StoreUnavailableError(`${this.#name}: no reply within ${this.#timeoutMs} ms`, {
            store: this.#name,
            ambiguous: generation.ready,
          }),
        );
        generation.client.then(
          (c) => {
            if (!onTimeout?.(c)) this.#drop(generation);
          },
          () => this.#drop(generation),
        );
      }, this.#timeoutMs);
      timer.unref?.();
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
