import type { ConnectionOptions } from 'node:tls';
import type { Cluster, ClusterNode, Redis } from 'ioredis';
import {
  badConfig,
  ConfigError,
  redact,
  StoreAuthError,
  StoreError,
  StoreUnavailableError,
} from '../errors.js';
import type { Script } from '../scripts.js';
import { Connection } from './connection.js';
import { checkAcknowledged, type ReplicaOptions, type ReplicaWait, replicaWaitOf } from './replicas.js';
import { evalWithFallback, isNoScript, runManyWithFallback, settle } from './shared.js';
import { keySlot } from './slot.js';
import {
  type CallResult,
  DEFAULT_TIMEOUT_MS,
  type ScriptArg,
  type ScriptCall,
  type Store,
  type TransportOptions,
} from './types.js';

export interface TcpAuthOptions {
  /** ACL user (Redis 6+, ElastiCache RBAC, MemoryDB ACLs). */
  username?: string;
  /** Password or AUTH token. Never logged, never part of an error. */
  password?: string;
  /**
   * TLS: `true` for defaults (ElastiCache in-transit encryption, MemoryDB), or node:tls options.
   * @default false
   */
  tls?: boolean | ConnectionOptions;
}

export interface RedisStoreOptions extends TransportOptions, TcpAuthOptions, ReplicaOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://…` (TLS). Either this or host/port. */
  url?: string;
  host?: string;
  port?: number;
}

export interface ClusterStoreOptions extends TransportOptions, TcpAuthOptions, ReplicaOptions {
  /** Seed nodes; the rest of the topology is discovered. */
  nodes: readonly { host: string; port: number }[];
}

type Client = Redis | Cluster;

const AUTH_FAILED = /NOAUTH|WRONGPASS|NOPERM|invalid password|invalid username/i;

/** Connection errors proving the command never reached a server. */
const NOT_SENT =
  /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|max retries per request|MaxRetriesPerRequest|Stream isn't writeable|enableOfflineQueue|Failed to refresh slots cache|None of startup nodes is available/i;

/**
 * ioredis is an optional peer dependency, loaded on the first TCP call (the REST path never loads it). The
 * `.catch()` right on the `import()` makes esbuild (serverless-esbuild, SAM, CDK NodejsFunction) leave the
 * import in place when ioredis is not installed, so a REST-only app bundles without it.
 */
function loadIoredis(): Promise<typeof import('ioredis')> {
  return import('ioredis').catch(() => {
    throw badConfig([
      'the TCP transport needs the ioredis package: npm install ioredis (or use the Upstash REST transport)',
    ]);
  });
}

function tlsOption(tls: TcpAuthOptions['tls']): ConnectionOptions | undefined {
  if (!tls) return undefined;
  return tls === true ? {} : tls;
}

function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 6379}`;
  } catch {
    return 'invalid-url';
  }
}

/** A standalone Redis over TCP (ioredis). Pass options, or a client you already own (you close it). */
export function redisStore(options: RedisStoreOptions | Redis): Store {
  if (isClient(options)) {
    return tcpStore('redis', `redis(${options.options.host}:${options.options.port})`, () =>
      Promise.resolve(options),
    );
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const wait = replicaWaitOf(options, timeoutMs);
  const where = options.url
    ? describeUrl(options.url)
    : `${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`;
  return tcpStore(
    'redis',
    `redis(${where})`,
    async () => {
      const { Redis } = await loadIoredis();
      const common = {
        ...tcpDefaults(timeoutMs),
        username: options.username,
        password: options.password,
        tls: tlsOption(options.tls),
      };
      const client = options.url
        ? new Redis(options.url, stripUndefined(common))
        : new Redis({
            ...stripUndefined(common),
            host: options.host ?? '127.0.0.1',
            port: options.port ?? 6379,
          });
      client.on('error', () => {}); // reported per command; the default handler would print to stderr
      return client;
    },
    timeoutMs,
    [options.password, passwordOf(options.url)],
    true,
    wait,
  );
}

/** A Redis Cluster over TCP (ElastiCache / MemoryDB cluster mode). Pass options, or your own Cluster. */
export function clusterStore(options: ClusterStoreOptions | Cluster): Store {
  if (isClient(options)) {
    return tcpStore('cluster', 'cluster', () => Promise.resolve(options));
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const wait = replicaWaitOf(options, timeoutMs);
  const first = options.nodes[0];
  const name = `cluster(${first ? `${first.host}:${first.port}` : '?'}${options.nodes.length > 1 ? ',…' : ''})`;
  return tcpStore(
    'cluster',
    name,
    async () => {
      const { Cluster } = await loadIoredis();
      const tls = tlsOption(options.tls);
      const cluster = new Cluster(
        options.nodes.map((n) => ({ host: n.host, port: n.port })) as ClusterNode[],
        {
          enableOfflineQueue: true,
          // The ready check asks one node, picked at random, for CLUSTER INFO: a node that does not answer
          // would hold every call until its timeout though the others serve. A cluster that is down answers
          // CLUSTERDOWN to the command itself.
          enableReadyCheck: false,
          // A third of a call: a seed that does not answer leaves time to ask the next one within timeoutMs.
          slotsRefreshTimeout: Math.max(1, Math.floor(timeoutMs / 3)),
          clusterRetryStrategy: (times) => Math.min(100 * times, 1000),
          // ElastiCache/MemoryDB TLS certificates name the configuration endpoint: do not resolve to IPs.
          ...(tls
            ? { dnsLookup: (address: string, cb: (e: null, a: string) => void) => cb(null, address) }
            : {}),
          redisOptions: stripUndefined({
            ...tcpDefaults(timeoutMs),
            username: options.username,
            password: options.password,
            tls,
          }),
        },
      );
      cluster.on('error', () => {});
      return cluster;
    },
    timeoutMs,
    [options.password],
    true,
    wait,
  );
}

/** How long a standalone server's replica must stay gone before 'auto' stops waiting for it. */
const REPLICA_RECHECK_MS = 5000;

/** How often a suspect slot's map is refreshed, and for how long at most (a failover takes seconds). */
const SUSPECT_REFRESH_MS = 200;
const SUSPECT_FOR_MS = 30_000;

/** Errors that say a node may be gone or no longer master: worth a fresh slot map. */
function connectionSuspect(err: unknown): boolean {
  if (err === true) return true; // the caller has checked already
  const text = err instanceof Error ? err.message : String(err);
  return /timed out|timeout|no reply|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|max retries|MOVED|CLUSTERDOWN|READONLY|ClusterAllFailed|replica/i.test(
    text,
  );
}

function tcpDefaults(timeoutMs: number) {
  return {
    protocol: 2 as const,
    connectTimeout: timeoutMs,
    // No commandTimeout: the store bounds each whole call (connection.ts), one timer per call.
    maxRetriesPerRequest: 1,
    // A command left without a reply on a dropped connection is never sent again by itself: it may have run.
    autoResendUnfulfilledCommands: false,
    enableOfflineQueue: true,
    retryStrategy: (times: number) => Math.min(50 * times, 1000),
  };
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function passwordOf(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return decodeURIComponent(new URL(url).password) || undefined;
  } catch {
    return undefined;
  }
}

function isClient(x: unknown): x is Client {
  return typeof x === 'object' && x !== null && typeof (x as { evalsha?: unknown }).evalsha === 'function';
}

function tcpStore(
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
  // Every call bounded by timeoutMs, and a client that timed out replaced (connection.ts).
  const connection = new Connection<Client>(
    () =>
      connect().then((c) => {
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
      return new StoreAuthError(`${name}: authentication failed`, { store: name, ambiguous: false });
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
    if (AUTH_FAILED.test(text)) {
      return new StoreAuthError(`${name}: authentication failed`, { store: name, ambiguous: false });
    }
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

  // ------------------------------------------------------------------ the replica wait (transport/replicas.ts)
  // How many replicas a granting write on this key's shard must reach: the configured count, or with 'auto'
  // one where the shard has replicas. A cluster's slot map lists them. A standalone server's INFO replication
  // is read once per client (one round trip, the first grant after connecting) and again 5 s after a grant
  // that was not acknowledged (a replica gone for good stops being waited for); no periodic traffic.
  let standalone: { client: Client; count: number } | undefined;
  let standaloneCheck: Promise<number> | undefined;
  const readReplicas = (c: Client): Promise<number> =>
    (standaloneCheck ??= (c as Redis)
      .info('replication')
      .then((info) => Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0))
      .then(
        (count) => {
          standalone = { client: c, count };
          return count;
        },
        () => standalone?.count ?? 0,
      )
      .finally(() => {
        standaloneCheck = undefined;
      }));
  const replicasWanted = async (c: Client, slot: number): Promise<number> => {
    if (wait.replicas !== 'auto') return wait.replicas;
    if (kind === 'cluster') return ((c as Cluster).slots[slot]?.length ?? 1) > 1 ? 1 : 0;
    if (standalone?.client !== c) await readReplicas(c);
    return (standalone?.count ?? 0) > 0 ? 1 : 0;
  };
  /**
   * After a grant that was not acknowledged, a standalone server's replicas are read again, REPLICA_RECHECK_MS
   * later: a replica whose link dropped for a moment (when writes get lost) is still waited for, one that is
   * still gone by then is not (as a cluster stops listing a replica once it is marked failed).
   */
  let recheck: NodeJS.Timeout | undefined;
  const notAcknowledged = (c: Client) => {
    if (kind !== 'redis' || wait.replicas !== 'auto' || recheck) return;
    recheck = setTimeout(() => {
      recheck = undefined;
      void readReplicas(c).catch(() => undefined);
    }, REPLICA_RECHECK_MS);
    recheck.unref?.();
  };
  const slotOf = (keys: readonly string[]) =>
    kind === 'cluster' && keys[0] !== undefined ? keySlot(keys[0]) : 0;

  // ----------------------------------------------------------------- recovery from a failover (cluster only)
  // ioredis refreshes its slot map on its own only every few seconds, and our Connection would drop the whole
  // Cluster after a timeout, failing calls to healthy masters too. Instead: a node that timed out loses only
  // its own connection, and while a slot's master is suspect (timed out, refused, closed, MOVED, CLUSTERDOWN)
  // the slot map is refreshed every SUSPECT_REFRESH_MS until that slot has a new master (a promoted replica),
  // a call to it succeeds again, or SUSPECT_FOR_MS has passed.
  const suspects = new Map<number, { owner: string | undefined; since: number }>();
  let refreshTimer: NodeJS.Timeout | undefined;
  const ownerOf = (c: Client, slot: number) => (c as Cluster).slots[slot]?.[0];
  const refreshLoop = (c: Cluster) => {
    if (refreshTimer) return;
    const tick = () => {
      const now = performance.now();
      for (const [slot, s] of suspects) {
        if (ownerOf(c, slot) !== s.owner || now - s.since > SUSPECT_FOR_MS) suspects.delete(slot);
      }
      if (suspects.size === 0 || c.status === 'end' || c.status === 'close') {
        refreshTimer = undefined;
        return;
      }
      c.refreshSlotsCache(() => {});
      refreshTimer = setTimeout(tick, SUSPECT_REFRESH_MS);
      refreshTimer.unref?.();
    };
    c.refreshSlotsCache(() => {});
    refreshTimer = setTimeout(tick, SUSPECT_REFRESH_MS);
    refreshTimer.unref?.();
  };
  const suspect = (c: Client, slots: Iterable<number>) => {
    if (kind !== 'cluster') return;
    for (const slot of slots) {
      if (!suspects.has(slot)) suspects.set(slot, { owner: ownerOf(c, slot), since: performance.now() });
    }
    refreshLoop(c as Cluster);
  };
  const healthy = (slots: Iterable<number>) => {
    if (suspects.size === 0) return;
    for (const slot of slots) suspects.delete(slot);
  };
  /**
   * On a timeout: disconnect the connections to the masters of these slots, and any other node connection that
   * does not answer a PING within half a timeout (a path where every byte is dropped poisons them all); the
   * connections that answer stay, so calls to healthy masters go on (Connection keeps the client).
   */
  const dropNodes = (slots: readonly number[]) => (c: Client) => {
    if (kind !== 'cluster' || !owned) return false;
    const cluster = c as Cluster;
    const owners = new Set(slots.map((slot) => ownerOf(c, slot)));
    for (const node of cluster.nodes('all')) {
      if (owners.has(`${node.options.host}:${node.options.port}`)) {
        node.disconnect();
        continue;
      }
      const timer = setTimeout(() => node.disconnect(), Math.max(1, Math.floor(timeoutMs / 2)));
      timer.unref?.();
      node.ping().then(
        () => clearTimeout(timer),
        () => undefined,
      );
    }
    suspect(c, slots);
    return true;
  };
  const afterFailure = async (err: unknown, slots: readonly number[]) => {
    if (kind !== 'cluster' || !connectionSuspect(err)) return;
    suspect(await get(), slots);
  };

  /** A granting script and WAIT in one pipeline on the shard's connection; EVAL after NOSCRIPT. */
  const runWaited = async (script: Script, keys: readonly string[], args: readonly ScriptArg[]) => {
    const c = await get();
    const required = await replicasWanted(c, slotOf(keys));
    if (required === 0) return evalWithFallback(script, keys, args, evalsha, evalLua);
    const send = async (useLua: boolean) => {
      const p = c.pipeline();
      if (useLua) p.eval(script.lua, keys.length, ...keys, ...args);
      else p.evalsha(script.sha1, keys.length, ...keys, ...args);
      p.wait(required, wait.timeoutMs);
      return ((await p.exec()) ?? []) as [Error | null, unknown][];
    };
    let replies = await send(false);
    if (isNoScript(replies[0]?.[0])) replies = await send(true);
    const [error, value] = replies[0] ?? [new Error('no reply'), null];
    if (error) throw error;
    try {
      return checkAcknowledged(script, value, replies[1], required, name);
    } catch (err) {
      notAcknowledged(c);
      throw err;
    }
  };

  const evalsha = async (sha: string, keys: readonly string[], args: readonly ScriptArg[]) =>
    (await get()).evalsha(sha, keys.length, ...keys, ...args);
  const evalLua = async (lua: string, keys: readonly string[], args: readonly ScriptArg[]) =>
    (await get()).eval(lua, keys.length, ...keys, ...args);

  // One pipeline per slot on a cluster (a cluster pipeline must not span nodes); the groups run in parallel.
  const pipelineOnce = async (calls: readonly ScriptCall[], useLua: boolean): Promise<CallResult[]> => {
    const c = await get();
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
        const p = c.pipeline();
        for (const i of indexes) {
          const call = calls[i]!;
          if (useLua) p.eval(call.script.lua, call.keys.length, ...call.keys, ...call.args);
          else p.evalsha(call.script.sha1, call.keys.length, ...call.keys, ...call.args);
        }
        // One WAIT after the group's scripts covers every write before it on this connection.
        const grants = indexes.some((i) => calls[i]!.script.grants);
        const required = grants ? await replicasWanted(c, slot) : 0;
        if (required > 0) p.wait(required, wait.timeoutMs);
        const replies = ((await p.exec()) ?? []) as [Error | null, unknown][];
        const waited = required > 0 ? replies[indexes.length] : undefined;
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
    async run(script: Script, keys: readonly string[], args: readonly ScriptArg[]) {
      const slots = [slotOf(keys)];
      try {
        const value = await connection.call(
          () =>
            script.grants && wait.replicas !== 0
              ? runWaited(script, keys, args)
              : evalWithFallback(script, keys, args, evalsha, evalLua),
          dropNodes(slots),
        );
        healthy(slots);
        return value;
      } catch (err) {
        void afterFailure(err, slots).catch(() => undefined);
        throw mapError(err);
      }
    },
    async runMany(calls: readonly ScriptCall[]) {
      if (calls.length === 0) return [];
      const slots = [...new Set(calls.map((c) => slotOf(c.keys)))];
      try {
        const results = await connection.call(
          () => runManyWithFallback(calls, pipelineOnce),
          dropNodes(slots),
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
      // A cluster scans each master in turn (its slot map, loaded by the first call).
      const nodes = await connection
        .call(async () => {
          const c = await get();
          if (kind !== 'cluster') return [c as Redis];
          const cluster = c as Cluster;
          if (cluster.nodes('master').length === 0 || cluster.status !== 'ready')
            await new Promise((resolve) => cluster.once('ready', resolve));
          return cluster.nodes('master');
        })
        .catch((err: unknown) => {
          throw mapError(err);
        });
      for (const node of nodes) {
        let cursor = '0';
        do {
          const [next, keys] = await connection
            .call(() => node.scan(cursor, 'MATCH', match, 'COUNT', count))
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
