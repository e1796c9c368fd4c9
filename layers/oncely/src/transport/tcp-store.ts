import type { Cluster, Redis } from 'ioredis';
import { ConfigError, redact, StoreAuthError, StoreError, StoreUnavailableError } from '../errors.js';
import { callsMismatch, keysMismatch, type Script, takesKeys } from '../scripts/script.js';
import { connectionSuspect, nodeOf, slotRecovery } from './cluster-recovery.js';
import { Connection } from './connection.js';
import { corkTick } from './cork.js';
import { checkAcknowledged, type ReplicaWait, replicaWaitOf } from './replicas.js';
import { shaReady } from './sent-scripts.js';
import { isNoScript, runManyWithFallback, settle } from './shared.js';
import { keySlot } from './slot.js';
import { replicaCounter } from './tcp-replicas.js';
import { type CallResult, DEFAULT_TIMEOUT_MS, type ScriptArg, type ScriptCall, type Store } from './types.js';
import { type Settled, WaitLine } from './wait-line.js';

export type Client = Redis | Cluster;

const AUTH_FAILED = /NOAUTH|WRONGPASS|NOPERM|invalid password|invalid username/i;
const TLS_HINT =
  'the connection uses TLS (rediss:// or tls: true) and the server never answered the handshake: if the server speaks plain text, use redis://';

/** The server's own words (redacted), then what to check. */
function authFailed(name: string, text: string): StoreAuthError {
  return new StoreAuthError(
    `${name}: authentication failed (${text}): check the password and user (ONCELY_REDIS_PASSWORD and ONCELY_REDIS_USERNAME, the URL's user:password, or the store's options) and, with ACLs, the user's permissions`,
    { store: name, ambiguous: false },
  );
}

/** Connection errors proving the command never reached a server. */
const NOT_SENT =
  /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|max retries per request|MaxRetriesPerRequest|Stream isn't writeable|enableOfflineQueue|Failed to refresh slots cache|None of startup nodes is available/i;

/** A reply as a pipeline gives it: [error, value], never a rejection. */
const settled = (request: Promise<unknown>): Promise<Settled> =>
  request.then(
    (value): Settled => [null, value],
    (error: unknown): Settled => [error instanceof Error ? error : new Error(String(error)), null],
  );

export function isClient(x: unknown): x is Client {
  return typeof x === 'object' && x !== null && typeof (x as { evalsha?: unknown }).evalsha === 'function';
}

export function tcpStore(
  kind: 'redis' | 'cluster',
  name: string,
  connect: () => Promise<Client>,
  timeoutMs = DEFAULT_TIMEOUT_MS,
  secrets: readonly (string | undefined)[] = [],
  owned = false,
  wait: ReplicaWait = replicaWaitOf({}, timeoutMs),
): Store {
  // A Cluster that cannot authenticate never fails a command with WRONGPASS: it keeps the command queued
  // while it retries the slots refresh, and reports the cause only in events. Remember the last one,
  // so a timeout caused by bad credentials is reported as what it is.
  let connectionError: Error | undefined;
  // A TLS client that never gets a reply is most often TLS against a plain-text server: say so.
  let tls = false;
  // Every call bounded by timeoutMs; a connection a call timed out on probed, and replaced if bad (connection.ts).
  const connection = new Connection<Client>(
    () =>
      connect().then((c) => {
        const options = c.options as { tls?: unknown; redisOptions?: { tls?: unknown } };
        tls = Boolean(options.tls ?? options.redisOptions?.tls);
        if (owned) {
          // A Cluster's 'error' says "Failed to refresh slots cache" and carries the cause as lastNodeError.
          const remember = (e: Error & { lastNodeError?: Error }) => {
            connectionError = e.lastNodeError ?? e;
          };
          c.on('error', remember);
          c.on('node error', remember);
          c.on('ready', () => {
            connectionError = undefined;
          });
        }
        return c;
      }),
    { timeoutMs, name, owned },
  );
  const get = () => connection.get();

  const mapError = (err: unknown): Error => {
    if (
      err instanceof StoreUnavailableError &&
      connectionError &&
      AUTH_FAILED.test(connectionError.message)
    ) {
      return authFailed(name, redact(connectionError.message, secrets));
    }
    if (err instanceof StoreUnavailableError && !err.ambiguous && tls && !connectionError) {
      return new StoreUnavailableError(`${err.message}: ${TLS_HINT}`, { store: name, ambiguous: false });
    }
    // Timed out before the client was ever ready (nothing sent): say why it could not connect, when known.
    if (err instanceof StoreUnavailableError && !err.ambiguous && connectionError) {
      return new StoreUnavailableError(
        `${name}: unreachable within ${timeoutMs} ms (${redact(connectionError.message, secrets)})`,
        { store: name, ambiguous: false },
      );
    }
    if (err instanceof StoreError || err instanceof ConfigError) return err;
    const e = err instanceof Error ? err : new Error(String(err));
    const text = redact(e.message, secrets);
    if (AUTH_FAILED.test(text)) return authFailed(name, text);
    if (/timed out|timeout/i.test(text)) {
      return new StoreUnavailableError(`${name}: no reply within ${timeoutMs} ms`, {
        store: name,
        ambiguous: true,
      });
    }
    if (
      NOT_SENT.test(text) ||
      /Connection is closed|ECONNRESET|EPIPE|CLUSTERDOWN|ClusterAllFailed/i.test(text)
    ) {
      return new StoreUnavailableError(`${name}: unreachable (${text})`, {
        store: name,
        ambiguous: !NOT_SENT.test(text),
      });
    }
    return new StoreError(`${name}: ${text}`, { store: name, ambiguous: false });
  };

  const { replicasKnown, noteReplicas, notAcknowledged } = replicaCounter(kind, wait);
  const waits = new WaitLine();
  const slotOf = (keys: readonly string[]) =>
    kind === 'cluster' && keys[0] !== undefined ? keySlot(keys[0]) : 0;
  const { route, afterFailure, healthy } = slotRecovery(kind, owned, timeoutMs, get);

  /** EVALSHA and EVAL for this store's kind of client: the first call of a script on a connection is EVAL. */
  const ready = (c: Client, script: Script) => shaReady(kind, c, script);

  /**
   * WAIT's bound for a pipeline: the configured one, or on the EVAL sent after NOSCRIPT (whose first WAIT may
   * have used its whole bound already) at most a quarter of what is left of the call, so that the reply still comes
   * within timeoutMs.
   */
  const waitMsFor = (retry: boolean, started: number) =>
    retry
      ? Math.max(1, Math.min(wait.timeoutMs, Math.floor((timeoutMs - (performance.now() - started)) / 4)))
      : wait.timeoutMs;

  /**
   * A granting script on the shard's connection, and a WAIT behind it (wait-line.ts: one WAIT out at a time
   * per connection, shared by the grants written meanwhile); EVAL after NOSCRIPT. The script goes to the slot's
   * node connection itself, not through the Cluster's routing, so that it is never redirected away from the
   * connection its WAIT is sent on: a MOVED (the slot's master changed: a failover) has the slot map refreshed
   * and the call sent again, up to twice. The script did not run where MOVED came from, so sending it again is
   * safe. While the slot map does not name the node yet, the script and WAIT go as one Cluster pipeline.
   */
  const runWaited = async (
    script: Script,
    keys: readonly string[],
    args: readonly ScriptArg[],
    moved = 0,
  ): Promise<unknown> => {
    const started = performance.now();
    const c = await get();
    const required = replicasKnown(c, slotOf(keys));
    if (required === 0) return direct(c, script, keys, args);
    if (required === undefined) return firstGrant(c, script, keys, args, started);
    const conn = kind === 'cluster' ? nodeOf(c as Cluster, slotOf(keys)) : (c as Redis);
    const send = async (useLua: boolean, retry: boolean): Promise<Settled[]> => {
      const ms = waitMsFor(retry, started);
      if (conn) {
        const reply = settled(
          useLua
            ? conn.eval(script.lua, keys.length, ...keys, ...args)
            : conn.evalsha(script.sha1, keys.length, ...keys, ...args),
        );
        return Promise.all([reply, waits.after(conn, required, ms, started + timeoutMs)]);
      }
      const p = c.pipeline();
      if (useLua) p.eval(script.lua, keys.length, ...keys, ...args);
      else p.evalsha(script.sha1, keys.length, ...keys, ...args);
      p.wait(required, ms);
      return ((await p.exec()) ?? []) as Settled[];
    };
    let replies = await send(!ready(c, script), false);
    if (isNoScript(replies[0]?.[0])) replies = await send(true, true);
    const [error, value] = replies[0] ?? [new Error('no reply'), null];
    if (error && kind === 'cluster' && moved < 2 && /^MOVED /.test(error.message)) {
      await new Promise<void>((resolve) => (c as Cluster).refreshSlotsCache(() => resolve()));
      return runWaited(script, keys, args, moved + 1);
    }
    if (error) throw error;
    try {
      return checkAcknowledged(script, value, replies[1], required, name);
    } catch (err) {
      notAcknowledged(c);
      throw err;
    }
  };

  /**
   * A standalone server's first grant with `replicas: 'auto'`, its replica count not known yet: a batch of one
   * (pipelineOnce reads INFO replication in the script's own pipeline, then sends WAIT only where the server has
   * a replica). Nothing is awaited before the script goes out, so a call issued after this one is sent after
   * it (reading INFO first let a release overtake its acquire), and a server without replicas answers the
   * first grant in one round trip instead of two.
   */
  const firstGrant = async (
    c: Client,
    script: Script,
    keys: readonly string[],
    args: readonly ScriptArg[],
    started: number,
  ): Promise<unknown> => {
    const [result] = await runManyWithFallback([{ script, keys, args }], (some, useLua) =>
      pipelineOnce(c, some, useLua, started),
    );
    if (!result!.ok) throw result!.error;
    return result!.value;
  };

  /**
   * corkTick on the connection (standalone) or on every master's (cluster: the list read once a tick, each
   * connection checked at every call, since the one whose replies woke this tick's callers has just drained).
   */
  let masters: Redis[] | undefined;
  const forgetMasters = () => {
    masters = undefined;
  };
  const cork = (c: Client) => {
    if (kind === 'redis') return corkTick(c as Redis);
    if (masters === undefined) {
      masters = (c as Cluster).nodes('master');
      process.nextTick(forgetMasters);
    }
    for (const node of masters) corkTick(node);
  };
  /**
   * The hot path, with the client at hand and no WAIT to add (a script that grants nothing, or a shard with
   * no replica to wait for): EVALSHA on it, EVAL on NOSCRIPT (EVAL at once for the script's first call on
   * this connection, sent-scripts.ts); no tick spent on getting the client.
   */
  const direct = (c: Client, script: Script, keys: readonly string[], args: readonly ScriptArg[]) => {
    cork(c);
    return ready(c, script)
      ? c.evalsha(script.sha1, keys.length, ...keys, ...args).catch((err: unknown) => {
          if (!isNoScript(err)) throw err;
          return c.eval(script.lua, keys.length, ...keys, ...args);
        })
      : c.eval(script.lua, keys.length, ...keys, ...args);
  };
  const runOne = (script: Script, keys: readonly string[], args: readonly ScriptArg[], slot: number) => {
    const c = connection.now();
    if (c !== undefined && (!script.grants || replicasKnown(c, slot) === 0))
      return direct(c, script, keys, args);
    return script.grants && wait.replicas !== 0
      ? runWaited(script, keys, args)
      : get().then((client) => direct(client, script, keys, args));
  };

  // One pipeline per slot on a cluster (a cluster pipeline must not span nodes); the groups run in parallel.
  const pipelineOnce = async (
    c: Client,
    calls: readonly ScriptCall[],
    useLua: boolean,
    started: number,
  ): Promise<CallResult[]> => {
    const groups = new Map<number, number[]>();
    calls.forEach((call, i) => {
      const slot = kind === 'cluster' && call.keys[0] !== undefined ? keySlot(call.keys[0]) : 0;
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
        const known = grants ? replicasKnown(c, slot) : 0;
        // Built and sent in one tick: a script marked as sent here is on the wire before any later call.
        const p = c.pipeline();
        if (known === undefined) p.info('replication');
        for (const i of indexes) {
          const call = calls[i]!;
          if (useLua || !ready(c, call.script))
            p.eval(call.script.lua, call.keys.length, ...call.keys, ...call.args);
          else p.evalsha(call.script.sha1, call.keys.length, ...call.keys, ...call.args);
        }
        // One WAIT after the group's scripts covers every write before it on this connection.
        if (known !== undefined && known > 0) p.wait(known, waitMsFor(useLua, started));
        const all = ((await p.exec()) ?? []) as [Error | null, unknown][];
        const replies = known === undefined ? all.slice(1) : all;
        const required = known ?? noteReplicas(c, all[0]);
        let waited = required > 0 ? replies[indexes.length] : undefined;
        if (known === undefined && required > 0)
          waited = await settled((c as Redis).wait(required, waitMsFor(useLua, started)));
        indexes.forEach((callIndex, j) => {
          const [error, value] = replies[j] ?? [new Error('no reply'), null];
          let checked: unknown = value;
          let failure: unknown = error;
          if (!error && required > 0) {
            try {
              checked = checkAcknowledged(calls[callIndex]!.script, value, waited, required, name);
            } catch (e) {
              failure = e;
              notAcknowledged(c);
            }
          }
          results[callIndex] = settle(checked, failure, mapError);
        });
      }),
    );
    return results;
  };

  return {
    kind,
    name,
    run(script: Script, keys: readonly string[], args: readonly ScriptArg[]) {
      if (!takesKeys(script, keys.length)) return Promise.reject(keysMismatch(script, keys.length));
      // The slot is hashed here only on a cluster (for the replica count and failover recovery).
      const slot = slotOf(keys);
      return connection
        .call(() => runOne(script, keys, args, slot), route([slot]))
        .then(
          (value) => {
            if (kind === 'cluster') healthy([slot]);
            return value;
          },
          (err: unknown) => {
            void afterFailure(err, [slot]).catch(() => undefined);
            throw mapError(err);
          },
        );
    },
    async runMany(calls: readonly ScriptCall[]) {
      const mismatch = callsMismatch(calls);
      if (mismatch) throw mismatch;
      if (calls.length === 0) return [];
      const slots = [...new Set(calls.map((c) => slotOf(c.keys)))];
      const started = performance.now();
      try {
        const results = await connection.call(
          () =>
            get().then((c) =>
              runManyWithFallback(calls, (some, useLua) => pipelineOnce(c, some, useLua, started)),
            ),
          route(slots),
        );
        const failed = results.flatMap((r, i) =>
          !r.ok && connectionSuspect(r.error) ? [slotOf(calls[i]!.keys)] : [],
        );
        if (failed.length > 0) void afterFailure(true, failed).catch(() => undefined);
        healthy(slots.filter((s) => !failed.includes(s)));
        return results;
      } catch (err) {
        void afterFailure(err, slots).catch(() => undefined);
        throw mapError(err);
      }
    },
    async *scan(match: string, count: number) {
      // A cluster scans each master in turn (its slot map, loaded by the first call). No slot: a timeout there
      // probes nothing and drops nothing (a standalone store's connection is probed as for any call).
      const scanRoute = route([]);
      const nodes = await connection
        .call(async () => {
          const c = await get();
          if (kind !== 'cluster') return [c as Redis];
          const cluster = c as Cluster;
          if (cluster.nodes('master').length === 0 || cluster.status !== 'ready')
            await new Promise((resolve) => cluster.once('ready', resolve));
          return cluster.nodes('master');
        }, scanRoute)
        .catch((err: unknown) => {
          throw mapError(err);
        });
      for (const node of nodes) {
        let cursor = '0';
        do {
          const [next, keys] = await connection
            .call(() => node.scan(cursor, 'MATCH', match, 'COUNT', count), scanRoute)
            .catch((err: unknown) => {
              throw mapError(err);
            });
          cursor = next;
          if (keys.length > 0) yield keys;
        } while (cursor !== '0');
      }
    },
    async close() {
      const c = await connection.close();
      if (!owned || !c) return;
      // QUIT waits for a reply, which a stalled connection never sends: bounded too, then the socket goes.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        c.quit(),
        new Promise((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]).catch(() => undefined);
      clearTimeout(timer);
      c.disconnect();
    },
  };
}
