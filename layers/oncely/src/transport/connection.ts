/**
 * A TCP store's connection and what is known per connection: the client and the bound on every call
 * (Connection), whether a connection a call timed out on is still in step (Probes), writes held to the end of
 * a busy tick (corkTick), and which scripts a connection has been sent (shaReady).
 */
import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { Deadlines } from '../clock.js';
import { ConfigError, redact, StoreAuthError, StoreError, StoreUnavailableError } from '../errors.js';
import type { Script } from '../scripts/script.js';

/** What a TCP store needs of an ioredis `Redis` or `Cluster`. */
export interface TcpClient extends Echoing {
  readonly status: string;
  /** ioredis's: `tls` for a Redis, `redisOptions.tls` for a Cluster's nodes. */
  readonly options?: object;
  on(event: 'ready', listener: () => void): unknown;
  on(event: 'error' | 'node error', listener: (err: Error & { lastNodeError?: Error }) => void): unknown;
  disconnect(reconnect?: boolean): void;
}

const AUTH_FAILED = /NOAUTH|WRONGPASS|NOPERM|invalid password|invalid username/i;
const TLS_HINT =
  'the connection uses TLS (rediss:// or tls: true) and the server never answered the handshake: if the server speaks plain text, use redis://';

/** The server's own words (redacted), then what to check. */
function authFailed(store: string, text: string): StoreAuthError {
  return new StoreAuthError(
    `${store}: authentication failed (${text}): check the password and user (ONCELY_REDIS_PASSWORD and ONCELY_REDIS_USERNAME, the URL's user:password, or the store's options) and, with ACLs, the user's permissions`,
    { store, ambiguous: false },
  );
}

/** Connection errors proving the command never reached a server. */
const NOT_SENT =
  /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|max retries per request|MaxRetriesPerRequest|Stream isn't writeable|enableOfflineQueue|Failed to refresh slots cache|None of startup nodes is available/i;

interface Generation<C> {
  readonly client: Promise<C>;
  /** The same client once the promise has resolved, for calls that need not wait a tick for it. */
  resolved: C | undefined;
  /** The client has been ready at least once: a command of a call that timed out may have been written. */
  ready: boolean;
}

/**
 * Where a call goes, for what a timeout does: a Cluster holds and probes the connection to the node that owns
 * the call's slot (cluster.ts); a standalone client is one connection, handled here.
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
 *   probe at a time asks whether it is still in step (Probes, below: ECHOes queued behind the calls in flight,
 *   bounded by timeoutMs). Kept if they come back right; otherwise that connection alone is dropped, once (an
 *   `owned` client is disconnected, without resending the commands it holds: those calls fail as unavailable;
 *   the next call connects afresh). A call issued while its connection is being probed is held until the probe
 *   settles, then written to the kept or the fresh connection: never behind a stream that may be shifted (a
 *   lost reply would hand it its neighbour's reply). So a standalone server paused for less than about two
 *   timeouts keeps its connection, and calls issued after one that timed out travel behind it, in order.
 * - A client the caller handed in is theirs: its calls are bounded, never held, probed or closed.
 * - failure() says what a call's error means, as a StoreError with a redacted message.
 */
export class Connection<C extends TcpClient> {
  #current: Generation<C> | undefined;
  readonly #connect: () => Promise<C>;
  readonly #timeoutMs: number;
  readonly #name: string;
  readonly #owned: boolean;
  readonly #secrets: readonly (string | undefined)[];
  readonly #probes = new Probes<C>();
  readonly #deadlines: Deadlines; // every call's bound: one timer for all the calls in flight
  /**
   * A Cluster that cannot authenticate never fails a command with WRONGPASS: it keeps it queued while it retries
   * the slots refresh, and reports the cause only in events. The last one an owned client reported is kept.
   */
  #lastError: Error | undefined;
  /** What the store's own TLS handshake said (a TLS cluster), preferred to #lastError. */
  readonly #diagnosis: { readonly error: Error | undefined } | undefined;
  /** The client uses TLS: one that never gets a reply is most often TLS against a plain-text server. */
  #tls = false;
  /** A standalone client: the connection is the client. */
  readonly #direct: Route<C> = {
    held: (c) => (this.#probes.size > 0 ? this.#probes.pending(c) : undefined),
    timedOut: (c) => {
      const generation = this.#current;
      if (!this.#owned || generation?.resolved !== c) return;
      void this.#probes.start(c, this.#timeoutMs, () => this.#drop(generation));
    },
  };

  constructor(
    connect: () => Promise<C>,
    options: {
      timeoutMs: number;
      name: string;
      owned: boolean;
      secrets: readonly (string | undefined)[];
      diagnosis?: { readonly error: Error | undefined };
    },
  ) {
    this.#connect = connect;
    this.#timeoutMs = options.timeoutMs;
    this.#deadlines = new Deadlines(options.timeoutMs);
    this.#name = options.name;
    this.#owned = options.owned;
    this.#secrets = options.secrets;
    this.#diagnosis = options.diagnosis;
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
   * route (by default: the client's one connection) is told, see the class. `mapped`: with failure()'s error.
   */
  call<T>(work: () => Promise<T>, route: Route<C> = this.#direct, mapped = false): Promise<T> {
    let generation = this.#generation();
    let sent = false;
    let over = false;
    // One promise and one deadline per call (the hot path): no timer, race, finally or mapping; see afterProbe.
    return new Promise<T>((resolve, reject) => {
      const deadline = this.#deadlines.add(() => {
        over = true;
        const err = new StoreUnavailableError(`${this.#name}: no reply within ${this.#timeoutMs} ms`, {
          store: this.#name,
          ambiguous: sent && generation.ready,
        });
        reject(mapped ? this.failure(err) : err);
        // A client still connecting has had nothing written: nothing to ask about.
        if (sent && generation.resolved) route.timedOut(generation.resolved);
      });
      const c = generation.resolved;
      afterProbe(c !== undefined && this.#owned ? route.held(c) : undefined, () => {
        if (over) return;
        sent = true;
        generation = this.#generation();
        work().then(
          (value) => {
            deadline.cancel();
            resolve(value);
          },
          (err: unknown) => {
            deadline.cancel();
            reject(mapped ? this.failure(err) : err);
          },
        );
      });
    });
  }

  /** Any failure of a call as a StoreError: typed, its message redacted, `ambiguous` unless nothing was sent. */
  failure(err: unknown): Error {
    const store = this.#name;
    const last = this.#diagnosis?.error ?? this.#lastError;
    if (err instanceof StoreUnavailableError && last && AUTH_FAILED.test(last.message))
      return authFailed(store, redact(last.message, this.#secrets));
    if (err instanceof StoreUnavailableError && !err.ambiguous && this.#tls && !last)
      return new StoreUnavailableError(`${err.message}: ${TLS_HINT}`, { store, ambiguous: false });
    // Timed out before the client was ever ready (nothing sent): say why it could not connect, when known.
    if (err instanceof StoreUnavailableError && !err.ambiguous && last) {
      return new StoreUnavailableError(
        `${store}: unreachable within ${this.#timeoutMs} ms (${redact(last.message, this.#secrets)})`,
        { store, ambiguous: false },
      );
    }
    if (err instanceof StoreError || err instanceof ConfigError) return err;
    const text = redact(err instanceof Error ? err.message : String(err), this.#secrets);
    if (AUTH_FAILED.test(text)) return authFailed(store, text);
    if (/timed out|timeout/i.test(text))
      return new StoreUnavailableError(`${store}: no reply within ${this.#timeoutMs} ms`, {
        store,
        ambiguous: true,
      });
    if (
      NOT_SENT.test(text) ||
      /Connection is closed|ECONNRESET|EPIPE|CLUSTERDOWN|ClusterAllFailed/i.test(text)
    )
      return new StoreUnavailableError(`${store}: unreachable (${text})`, {
        store,
        ambiguous: !NOT_SENT.test(text),
      });
    return new StoreError(`${store}: ${text}`, { store, ambiguous: false });
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
        const options = c.options as { tls?: unknown; redisOptions?: { tls?: unknown } } | undefined;
        this.#tls = Boolean(options?.tls ?? options?.redisOptions?.tls);
        if (this.#owned) this.#watch(c);
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

  /** An owned client's connection errors, for failure(): a Cluster's carry the cause as lastNodeError. */
  #watch(c: C): void {
    const remember = (e: Error & { lastNodeError?: Error }) => {
      this.#lastError = e.lastNodeError ?? e;
    };
    c.on('error', remember);
    c.on('node error', remember);
    c.on('ready', () => {
      this.#lastError = undefined;
    });
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

/** A call's `send` now, or once `held` (its connection's probe) settles. As an argument, `send` is made without
 * a name: the layer's build keeps names, at a defineProperty per named closure made (one per call). */
function afterProbe(held: Promise<unknown> | undefined, send: () => void): void {
  if (held) held.then(send, send);
  else send();
}

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

type Socket = NonNullable<Redis['stream']>;
const uncork = (s: Socket) => s.uncork();
/** Commands awaiting their reply on a connection from which its writes are held to the end of the tick. */
export const CORK_BACKLOG = 64;
/**
 * Under load, holds a connection's writes until the end of the current tick, so that the commands of the calls
 * made in one tick (the callers one reply wakes, a burst) leave in one write instead of one syscall each: at
 * 1,000 concurrent lock pairs the per-command writes were 40 % of the client's CPU, 9 % corked. Only while
 * CORK_BACKLOG commands or more await their reply (the server has work queued anyway): with a few calls in
 * flight, a command written at once overlaps the server's work with the client's, and holding it halved the
 * pairs/s at 10 concurrent. Nothing is reordered or delayed past the tick.
 */
export function corkTick(c: Redis): void {
  const s = c.stream as Socket | undefined;
  if (s && s.writableCorked === 0 && c.commandQueue.length >= CORK_BACKLOG && c.status === 'ready') {
    s.cork();
    process.nextTick(uncork, s);
  }
}

/**
 * Which scripts a standalone client's current connection has been sent. A script's first call on a
 * connection goes as EVAL (which runs it and caches it on the server), every later one as EVALSHA. So a fresh
 * server, or the one a reconnect reaches after a failover, never answers NOSCRIPT to oncely's own order of
 * calls: no call waits a second round trip, and none is sent again behind calls issued after it (an EVAL
 * resent after NOSCRIPT lands after them: a lease's release after the next acquire of the same key). The
 * record is dropped when the connection closes, since the next one may reach another server. EVALSHA still
 * falls back to EVAL on NOSCRIPT (someone ran SCRIPT FLUSH).
 *
 * A Cluster routes each call to its slot's master over a connection of its own: it keeps EVALSHA first.
 */
const sent = new WeakMap<Redis, Set<string>>();

function sentOn(client: Redis): Set<string> {
  let scripts = sent.get(client);
  if (!scripts) {
    const fresh = new Set<string>();
    client.on('close', () => fresh.clear());
    sent.set(client, fresh);
    scripts = fresh;
  }
  return scripts;
}

/**
 * True when `script` may go as EVALSHA on `client` now. False for its first call on the connection, which
 * the caller then sends as EVAL, in the same tick (later calls queue behind it on the connection).
 */
export function shaReady(kind: 'redis' | 'cluster', client: Redis | Cluster, script: Script): boolean {
  if (kind === 'cluster') return true;
  const scripts = sentOn(client as Redis);
  if (scripts.has(script.sha1)) return true;
  scripts.add(script.sha1);
  return false;
}
