/**
 * Lock contenders: one acquire + release pair each, built the way a user of each library would build it.
 *
 * TCP (one shared ioredis client, so the client is not what differs):
 *   raw       SET key token PX ttl NX, then EVALSHA compare-and-delete: the floor a library can reach
 *   oncely    createLock(redisStore(client))  (acquire = one script: SET + fence INCR)
 *   redlock   new Redlock([client], { retryCount: 0 })
 * REST (same gateway):
 *   raw       @upstash/redis `new Redis({ url, token })` with its defaults: SET NX PX, then EVALSHA
 *   upstash   @upstash/lock `new Lock({ id, redis, lease })` on that client
 *   oncely    createLock(upstashStore({ url, token }))   (@upstash/redis over oncely's node:http requester)
 *   oncely-before  the same over the hand-written protocol it used before (bench/before.ts, informational)
 */
import { createHash, randomBytes } from 'node:crypto';
import { Lock as UpstashLock } from '@upstash/lock';
import { Redis as UpstashRedis } from '@upstash/redis';
import type { Cluster, Redis } from 'ioredis';
import Redlock from 'redlock';
import { DEFAULT_FENCE_GRACE_MS as FENCE_GRACE_MS } from '../layers/oncely/src/acquire.js';
import { createLock, type Store, upstashStore } from '../layers/oncely/src/index.js';
import { redisStore } from '../layers/oncely/src/ioredis.js';
import { ACQUIRE, EXTEND, LOCK_SCRIPTS, RELEASE } from '../layers/oncely/src/scripts.js';
import { BATCH_CALLS } from '../layers/oncely/src/transport/upstash-client.js';

export const TTL_MS = 10_000;

/** A held lock, as each library represents it. */
export interface Held {
  extend(): Promise<void>;
  release(): Promise<void>;
}

export interface LockContender {
  readonly id: string;
  readonly label: string;
  /** The client it talks through and how it is set up (docs/benchmarks.md states it on every row). */
  readonly client: string;
  acquire(key: string): Promise<Held>;
  close(): Promise<void>;
}

/** The raw baseline's scripts: compare-and-delete and compare-and-pexpire. */
export const RAW_RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;
export const RAW_EXTEND = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`;
const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
export const RAW_RELEASE_SHA = sha1(RAW_RELEASE);
export const RAW_EXTEND_SHA = sha1(RAW_EXTEND);

const token = () => randomBytes(16).toString('base64url');

function notAcquired(label: string, key: string): never {
  throw new Error(`${label}: lock ${key} not acquired (the benchmark expects every key free)`);
}

// --------------------------------------------------------------------------------------------------- TCP

/** How the TCP lock table's shared client is described. */
export const SHARED_IOREDIS = 'the shared ioredis `new Redis({ host, port })`';

export function rawTcp(client: Redis): LockContender {
  const label = 'raw ioredis (SET NX PX + EVALSHA)';
  return {
    id: 'raw',
    label,
    client: SHARED_IOREDIS,
    async acquire(key) {
      const t = token();
      if ((await client.set(key, t, 'PX', TTL_MS, 'NX')) !== 'OK') notAcquired(label, key);
      return {
        async extend() {
          if ((await client.evalsha(RAW_EXTEND_SHA, 1, key, t, TTL_MS)) !== 1) throw new Error('raw: lost');
        },
        async release() {
          await client.evalsha(RAW_RELEASE_SHA, 1, key, t);
        },
      };
    },
    async close() {},
  };
}

/**
 * oncely's own acquire/release scripts sent straight from ioredis, no library around them: separates what
 * the fenced acquire costs the server from what the library costs the client. Informational.
 */
export function rawFencedTcp(client: Redis): LockContender {
  const label = "raw ioredis, oncely's scripts";
  return {
    id: 'raw-fenced',
    label,
    client: SHARED_IOREDIS,
    async acquire(key) {
      const t = token();
      const lockKey = `oncely:{${key}}:lock`;
      const reply = (await client.evalsha(
        ACQUIRE.sha1,
        2,
        lockKey,
        `oncely:{${key}}:fence`,
        t,
        TTL_MS,
        TTL_MS + FENCE_GRACE_MS,
        Date.now(),
      )) as number[];
      if (reply[0] !== 1) notAcquired(label, key);
      return {
        async extend() {
          const fenceKey = `oncely:{${key}}:fence`;
          await client.evalsha(EXTEND.sha1, 2, lockKey, fenceKey, t, TTL_MS, TTL_MS + FENCE_GRACE_MS);
        },
        async release() {
          await client.evalsha(RELEASE.sha1, 2, lockKey, `oncely:{${key}}:fence`, t, FENCE_GRACE_MS);
        },
      };
    },
    async close() {},
  };
}

export function oncely(id: string, label: string, store: Store, client: string): LockContender {
  const lock = createLock(store);
  return {
    id,
    label,
    client,
    async acquire(key) {
      const lease = (await lock.tryAcquire(key, { ttlMs: TTL_MS })) ?? notAcquired(label, key);
      return {
        extend: () => lease.extend(),
        release: async () => {
          await lease.release();
        },
      };
    },
    close: () => store.close(),
  };
}

export const oncelyTcp = (client: Redis) =>
  oncely('oncely', 'oncely TCP', redisStore(client), `redisStore(client) on ${SHARED_IOREDIS}`);

/** oncely's own ioredis client, as fromEnv builds it (its timeouts and retry settings): informational. */
export const oncelyTcpOwn = (endpoint: { host: string; port: number }) =>
  oncely(
    'oncely-own',
    'oncely TCP, own client',
    redisStore(endpoint),
    'redisStore({ host, port }): its own ioredis Redis (commandTimeout on)',
  );

export function redlockTcp(
  clients: (Redis | Cluster)[],
  label = 'redlock',
  client = SHARED_IOREDIS,
): LockContender {
  const redlock = new Redlock(clients, { retryCount: 0 });
  return {
    id: 'redlock',
    label,
    client,
    async acquire(key) {
      let lock = await redlock.acquire([key], TTL_MS);
      return {
        async extend() {
          lock = await lock.extend(TTL_MS);
        },
        async release() {
          await lock.release();
        },
      };
    },
    async close() {},
  };
}

// -------------------------------------------------------------------------------------------------- REST

/** The REST peers' client: what a user of @upstash/lock builds. */
export const UPSTASH_DEFAULTS =
  '@upstash/redis `new Redis({ url, token })` with its defaults: fetch, base64-encoded replies, ' +
  'auto-pipelining, retries on a network error';

/** oncely's REST client, as upstashStore({ url, token }) builds it. */
export const ONCELY_REST =
  "upstashStore({ url, token }): @upstash/redis over oncely's keep-alive node:http requester, raw replies, " +
  `up to ${BATCH_CALLS} calls per /pipeline request, no retries`;

export function rawRest(url: string, tokenValue: string): LockContender {
  const redis = new UpstashRedis({ url, token: tokenValue });
  const label = 'raw @upstash/redis (SET NX PX + EVALSHA)';
  return {
    id: 'raw',
    label,
    client: UPSTASH_DEFAULTS,
    async acquire(key) {
      const t = token();
      if ((await redis.set(key, t, { nx: true, px: TTL_MS })) !== 'OK') notAcquired(label, key);
      return {
        async extend() {
          if ((await redis.evalsha(RAW_EXTEND_SHA, [key], [t, TTL_MS])) !== 1) throw new Error('raw: lost');
        },
        async release() {
          await redis.evalsha(RAW_RELEASE_SHA, [key], [t]);
        },
      };
    },
    async close() {},
  };
}

export function upstashLock(url: string, tokenValue: string): LockContender {
  const redis = new UpstashRedis({ url, token: tokenValue });
  const label = '@upstash/lock';
  return {
    id: 'upstash-lock',
    label,
    client: UPSTASH_DEFAULTS,
    async acquire(key) {
      const lock = new UpstashLock({ id: key, redis, lease: TTL_MS, retry: { attempts: 1, delay: 0 } });
      if (!(await lock.acquire())) notAcquired(label, key);
      return {
        async extend() {
          if (!(await lock.extend(1000))) throw new Error('@upstash/lock: not extended');
        },
        async release() {
          await lock.release();
        },
      };
    },
    async close() {},
  };
}

export const oncelyRest = (url: string, tokenValue: string) =>
  oncely('oncely', 'oncely REST', upstashStore({ url, token: tokenValue }), ONCELY_REST);

/**
 * The REST transport before @upstash/redis became its client: the protocol spoken by hand (bench/before.ts
 * reads it from git). Informational: what the client costs on the REST path.
 */
export const oncelyRestBefore = (
  store: (options: { url: string; token: string }) => Store,
  url: string,
  tokenValue: string,
) =>
  oncely(
    'oncely-before',
    'oncely REST, hand-written protocol (before)',
    store({ url, token: tokenValue }),
    "oncely's own REST protocol code over node:http (before issue 14)",
  );

/** Loads the raw baselines' scripts (EVALSHA must not fall back to EVAL while measuring). */
export async function loadRawScripts(admin: Redis): Promise<void> {
  for (const lua of [RAW_RELEASE, RAW_EXTEND, ...LOCK_SCRIPTS.map((s) => s.lua)])
    await admin.script('LOAD', lua);
}

/** A lock contender as a harness contender: one acquire + release pair per operation. */
export function pairOf(c: LockContender) {
  return {
    id: c.id,
    label: c.label,
    client: c.client,
    async op(key: string) {
      const held = await c.acquire(key);
      await held.release();
    },
  };
}
