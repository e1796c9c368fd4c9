import type { Cluster, Redis } from 'ioredis';
import { callsMismatch, keysMismatch, type Script, takesKeys } from '../scripts/script.js';
import { connectionSuspect, keySlot, nodeOf, SlotRecovery } from './cluster.js';
import { Connection, corkTick, shaReady } from './connection.js';
import { checkAcknowledged, type ReplicaOptions, type ReplicaWait, replicaWait } from './replicas.js';
import { ReplicaCounter, type Settled, WaitLine } from './tcp-replicas.js';
import {
  type CallResult,
  isNoScript,
  runManyWithFallback,
  type ScriptArg,
  type ScriptCall,
  type Store,
  settle,
} from './types.js';

export type Client = Redis | Cluster;

/** A reply as a pipeline gives it: [error, value], never a rejection. */
const settled = (request: Promise<unknown>): Promise<Settled> =>
  request.then(
    (value): Settled => [null, value],
    (error: unknown): Settled => [error instanceof Error ? error : new Error(String(error)), null],
  );

export interface TcpStoreOptions {
  readonly kind: 'redis' | 'cluster';
  /** For errors and logs: host and port only. */
  readonly name: string;
  /** Makes the client: at the first call, and again after the connection was dropped (an owned one). */
  readonly connect: () => Promise<Client>;
  /** The bound on every call as a whole (TransportOptions). */
  readonly timeoutMs: number;
  /** Redacted from every error message (the password, the URL's password). */
  readonly secrets: readonly (string | undefined)[];
  /** The store made the client, so it may probe, drop and close it; false for a client the caller handed in. */
  readonly owned: boolean;
  /** The replica wait (replicas.ts), checked already. */
  readonly replicas: ReplicaOptions;
  /** Why a TLS cluster's nodes cannot connect, when the store found out (tcp.ts diagnoseTls). */
  readonly diagnosis?: { readonly error: Error | undefined };
}

/**
 * A Store over an ioredis `Redis` (standalone) or `Cluster`. Every call is bounded by timeoutMs, and a
 * connection a call timed out on is probed and replaced only if bad (connection.ts); a cluster's slots
 * recover from a failover (cluster.ts); a granting script is followed by a WAIT where replicas must
 * acknowledge it (tcp-replicas.ts); a script's first call on a standalone connection goes as EVAL, later
 * ones as EVALSHA with the EVAL fallback (connection.ts shaReady).
 */
export class TcpStore implements Store {
  readonly kind: 'redis' | 'cluster';
  readonly name: string;
  readonly #timeoutMs: number;
  readonly #owned: boolean;
  readonly #wait: ReplicaWait;
  readonly #connection: Connection<Client>;
  readonly #replicas: ReplicaCounter;
  readonly #waits = new WaitLine();
  /** A cluster's failover recovery; none for a standalone client. */
  readonly #recovery: SlotRecovery | undefined;
  /** A cluster's masters, read once a tick for corking (#cork). */
  #masters: Redis[] | undefined;
  readonly #forgetMasters = () => {
    this.#masters = undefined;
  };

  constructor(options: TcpStoreOptions) {
    const { kind, name, timeoutMs, owned } = options;
    this.kind = kind;
    this.name = name;
    this.#timeoutMs = timeoutMs;
    this.#owned = owned;
    this.#wait = replicaWait(options.replicas, timeoutMs);
    this.#connection = new Connection<Client>(options.connect, {
      timeoutMs,
      name,
      owned,
      secrets: options.secrets,
      diagnosis: options.diagnosis,
    });
    this.#replicas = new ReplicaCounter(kind, this.#wait);
    this.#recovery =
      kind === 'cluster'
        ? new SlotRecovery(() => this.#connection.get() as Promise<Cluster>, { owned, timeoutMs })
        : undefined;
    // To its users a store is an object of functions (a wrapper may copy `run` off it): each keeps its `this`.
    this.run = this.run.bind(this);
    this.runMany = this.runMany.bind(this);
    this.scan = this.scan.bind(this);
    this.close = this.close.bind(this);
  }

  run(script: Script, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> {
    if (!takesKeys(script, keys.length)) return Promise.reject(keysMismatch(script, keys.length));
    const recovery = this.#recovery;
    // Standalone: the call's error mapped where it is rejected, no promise of its own to map it.
    if (recovery === undefined)
      return this.#connection.call(() => this.#runOne(script, keys, args, 0), undefined, true);
    // The slot is hashed here only on a cluster (for the replica count and failover recovery).
    const slot = this.#slotOf(keys);
    return this.#connection
      .call(() => this.#runOne(script, keys, args, slot), recovery.route([slot]))
      .then(
        (value) => {
          recovery.healthy([slot]);
          return value;
        },
        (err: unknown) => {
          recovery.afterFailure(err, [slot]);
          throw this.#connection.failure(err);
        },
      );
  }

  async runMany(calls: readonly ScriptCall[]): Promise<CallResult[]> {
    const mismatch = callsMismatch(calls);
    if (mismatch) throw mismatch;
    if (calls.length === 0) return [];
    const slots = [...new Set(calls.map((c) => this.#slotOf(c.keys)))];
    const started = performance.now();
    try {
      const results = await this.#connection.call(
        () =>
          this.#connection
            .get()
            .then((c) =>
              runManyWithFallback(calls, (some, useLua) => this.#pipelineOnce(c, some, useLua, started)),
            ),
        this.#recovery?.route(slots),
      );
      const failed = results.flatMap((r, i) =>
        !r.ok && connectionSuspect(r.error) ? [this.#slotOf(calls[i]!.keys)] : [],
      );
      if (failed.length > 0) this.#recovery?.afterFailure(true, failed);
      this.#recovery?.healthy(slots.filter((s) => !failed.includes(s)));
      return results;
    } catch (err) {
      this.#recovery?.afterFailure(err, slots);
      throw this.#connection.failure(err);
    }
  }

  async *scan(match: string, count: number): AsyncIterable<readonly string[]> {
    // A cluster scans each master in turn (its slot map, loaded by the first call). No slot: a timeout there
    // probes nothing and drops nothing (a standalone store's connection is probed as for any call).
    const route = this.#recovery?.route([]);
    const nodes = await this.#connection
      .call(async () => {
        const c = await this.#connection.get();
        if (this.kind !== 'cluster') return [c as Redis];
        const cluster = c as Cluster;
        if (cluster.nodes('master').length === 0 || cluster.status !== 'ready')
          await new Promise((resolve) => cluster.once('ready', resolve));
        return cluster.nodes('master');
      }, route)
      .catch((err: unknown) => {
        throw this.#connection.failure(err);
      });
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await this.#connection
          .call(() => node.scan(cursor, 'MATCH', match, 'COUNT', count), route)
          .catch((err: unknown) => {
            throw this.#connection.failure(err);
          });
        cursor = next;
        if (keys.length > 0) yield keys;
      } while (cursor !== '0');
    }
  }

  async close(): Promise<void> {
    const c = await this.#connection.close();
    if (!this.#owned || !c) return;
    // QUIT waits for a reply, which a stalled connection never sends: bounded too, then the socket goes.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      c.quit(),
      new Promise((resolve) => {
        timer = setTimeout(resolve, this.#timeoutMs);
      }),
    ]).catch(() => undefined);
    clearTimeout(timer);
    c.disconnect();
  }

  #slotOf(keys: readonly string[]): number {
    return this.kind === 'cluster' && keys[0] !== undefined ? keySlot(keys[0]) : 0;
  }

  /** EVALSHA and EVAL for this store's kind of client: the first call of a script on a connection is EVAL. */
  #ready(c: Client, script: Script): boolean {
    return shaReady(this.kind, c, script);
  }

  #runOne(
    script: Script,
    keys: readonly string[],
    args: readonly ScriptArg[],
    slot: number,
  ): Promise<unknown> {
    const c = this.#connection.now();
    if (c !== undefined && (!script.grants || this.#replicas.known(c, slot) === 0))
      return this.#direct(c, script, keys, args);
    return script.grants && this.#wait.replicas !== 0
      ? this.#runWaited(script, keys, args)
      : this.#connection.get().then((client) => this.#direct(client, script, keys, args));
  }

  /**
   * The hot path, with the client at hand and no WAIT to add (a script that grants nothing, or a shard with
   * no replica to wait for): EVALSHA on it, EVAL on NOSCRIPT (EVAL at once for the script's first call on
   * this connection, connection.ts shaReady); no tick spent on getting the client.
   */
  #direct(c: Client, script: Script, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> {
    this.#cork(c);
    return this.#ready(c, script)
      ? c.evalsha(script.sha1, keys.length, ...keys, ...args).catch((err: unknown) => {
          if (!isNoScript(err)) throw err;
          return c.eval(script.lua, keys.length, ...keys, ...args);
        })
      : c.eval(script.lua, keys.length, ...keys, ...args);
  }

  /**
   * corkTick on the connection (standalone) or on every master's (cluster: the list read once a tick, each
   * connection checked at every call, since the one whose replies woke this tick's callers has just drained).
   */
  #cork(c: Client): void {
    if (this.kind === 'redis') {
      corkTick(c as Redis);
      return;
    }
    if (this.#masters === undefined) {
      this.#masters = (c as Cluster).nodes('master');
      process.nextTick(this.#forgetMasters);
    }
    for (const node of this.#masters) corkTick(node);
  }

  /**
   * WAIT's bound for a pipeline: the configured one, or on the EVAL sent after NOSCRIPT (whose first WAIT may
   * have used its whole bound already) at most a quarter of what is left of the call, so that the reply still comes
   * within timeoutMs.
   */
  #waitMsFor(retry: boolean, started: number): number {
    const { timeoutMs } = this.#wait;
    if (!retry) return timeoutMs;
    return Math.max(
      1,
      Math.min(timeoutMs, Math.floor((this.#timeoutMs - (performance.now() - started)) / 4)),
    );
  }

  /**
   * A granting script on the shard's connection, and a WAIT behind it (tcp-replicas.ts WaitLine: one WAIT out
   * at a time per connection, shared by the grants written meanwhile); EVAL after NOSCRIPT. The script goes to
   * the slot's node connection itself, not through the Cluster's routing, so that it is never redirected away
   * from the connection its WAIT is sent on: a MOVED (the slot's master changed: a failover) has the slot map
   * refreshed and the call sent again, up to twice. The script did not run where MOVED came from, so sending
   * it again is safe. While the slot map does not name the node yet, the script and WAIT go as one Cluster
   * pipeline.
   */
  async #runWaited(
    script: Script,
    keys: readonly string[],
    args: readonly ScriptArg[],
    moved = 0,
  ): Promise<unknown> {
    const started = performance.now();
    const c = await this.#connection.get();
    const slot = this.#slotOf(keys);
    const required = this.#replicas.known(c, slot);
    if (required === 0) return this.#direct(c, script, keys, args);
    if (required === undefined) return this.#firstGrant(c, script, keys, args, started);
    const conn = this.kind === 'cluster' ? nodeOf(c as Cluster, slot) : (c as Redis);
    const send = async (useLua: boolean, retry: boolean): Promise<Settled[]> => {
      const ms = this.#waitMsFor(retry, started);
      if (conn) {
        const reply = settled(
          useLua
            ? conn.eval(script.lua, keys.length, ...keys, ...args)
            : conn.evalsha(script.sha1, keys.length, ...keys, ...args),
        );
        return Promise.all([reply, this.#waits.after(conn, required, ms, started + this.#timeoutMs)]);
      }
      const p = c.pipeline();
      if (useLua) p.eval(script.lua, keys.length, ...keys, ...args);
      else p.evalsha(script.sha1, keys.length, ...keys, ...args);
      p.wait(required, ms);
      return ((await p.exec()) ?? []) as Settled[];
    };
    let replies = await send(!this.#ready(c, script), false);
    if (isNoScript(replies[0]?.[0])) replies = await send(true, true);
    const [error, value] = replies[0] ?? [new Error('no reply'), null];
    if (error && this.kind === 'cluster' && moved < 2 && /^MOVED /.test(error.message)) {
      await new Promise<void>((resolve) => (c as Cluster).refreshSlotsCache(() => resolve()));
      return this.#runWaited(script, keys, args, moved + 1);
    }
    if (error) throw error;
    try {
      return checkAcknowledged(script, value, replies[1], required, this.name);
    } catch (err) {
      this.#replicas.notAcknowledged(c);
      throw err;
    }
  }

  /**
   * A standalone server's first grant with `replicas: 'auto'`, its replica count not known yet: a batch of one
   * (#pipelineOnce reads INFO replication in the script's own pipeline, then sends WAIT only where the server
   * has a replica). Nothing is awaited before the script goes out, so a call issued after this one is sent
   * after it (reading INFO first let a release overtake its acquire), and a server without replicas answers
   * the first grant in one round trip instead of two.
   */
  async #firstGrant(
    c: Client,
    script: Script,
    keys: readonly string[],
    args: readonly ScriptArg[],
    started: number,
  ): Promise<unknown> {
    const [result] = await runManyWithFallback([{ script, keys, args }], (some, useLua) =>
      this.#pipelineOnce(c, some, useLua, started),
    );
    if (!result!.ok) throw result!.error;
    return result!.value;
  }

  /** One pipeline per slot on a cluster (a cluster pipeline must not span nodes); the groups run in parallel. */
  async #pipelineOnce(
    c: Client,
    calls: readonly ScriptCall[],
    useLua: boolean,
    started: number,
  ): Promise<CallResult[]> {
    const groups = new Map<number, number[]>();
    calls.forEach((call, i) => {
      const slot = this.#slotOf(call.keys);
      const g = groups.get(slot);
      if (g) g.push(i);
      else groups.set(slot, [i]);
    });
    const results: CallResult[] = new Array(calls.length);
    await Promise.all(
      [...groups.entries()].map(async ([slot, indexes]) => {
        const grants = indexes.some((i) => calls[i]!.script.grants);
        // Unknown: a standalone server's first grant: its INFO replication goes first in the pipeline, and WAIT
        // (where the reply lists a replica) after it.
        const known = grants ? this.#replicas.known(c, slot) : 0;
        // Built and sent in one tick: a script marked as sent here is on the wire before any later call.
        const p = c.pipeline();
        if (known === undefined) p.info('replication');
        for (const i of indexes) {
          const call = calls[i]!;
          if (useLua || !this.#ready(c, call.script))
            p.eval(call.script.lua, call.keys.length, ...call.keys, ...call.args);
          else p.evalsha(call.script.sha1, call.keys.length, ...call.keys, ...call.args);
        }
        // One WAIT after the group's scripts covers every write before it on this connection.
        if (known !== undefined && known > 0) p.wait(known, this.#waitMsFor(useLua, started));
        const all = ((await p.exec()) ?? []) as Settled[];
        const replies = known === undefined ? all.slice(1) : all;
        const required = known ?? this.#replicas.note(c, all[0]);
        let waited = required > 0 ? replies[indexes.length] : undefined;
        if (known === undefined && required > 0)
          waited = await settled((c as Redis).wait(required, this.#waitMsFor(useLua, started)));
        indexes.forEach((callIndex, j) => {
          const [error, value] = replies[j] ?? [new Error('no reply'), null];
          let checked: unknown = value;
          let failure: unknown = error;
          if (!error && required > 0) {
            try {
              checked = checkAcknowledged(calls[callIndex]!.script, value, waited, required, this.name);
            } catch (e) {
              failure = e;
              this.#replicas.notAcknowledged(c);
            }
          }
          results[callIndex] = settle(checked, failure, (e) => this.#connection.failure(e));
        });
      }),
    );
    return results;
  }
}
