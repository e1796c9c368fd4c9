/**
 * The replica wait on a standalone master with a replica (`--replicaof`), over redisStore and over REST
 * (upstashStore through the gateway, which runs a pipeline carrying WAIT on a connection of its own): the default
 * ('auto') finds the replica in INFO replication and waits for it; a grant it cannot get acknowledged is a
 * ReplicationError (a lock not acquired, an extension not counted, a completion not reported: withOnce fails
 * closed); `replicas: 1` on a server without replicas refuses every grant; `replicas: 0` never waits.
 */
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Gateway, startGateway } from '../../dev/gateway.js';
import { type RedisProcess, replicasAcknowledging, startRedis } from '../../dev/redis-server.js';
import {
  createLock,
  fromEnv,
  ReplicationError,
  type Store,
  upstashStore,
  withOnce,
} from '../../layers/oncely/src/index.js';
import { redisStore } from '../../layers/oncely/src/ioredis.js';
import { ask, waitsOn } from '../support/failover.js';

let master: RedisProcess;
let replica: RedisProcess;
let lone: RedisProcess;
const stores: Store[] = [];
const TOKEN = 'replica-wait-token';
/** The gateway in front of each server, started on first use (REST), closed after the file. */
const gateways = new Map<RedisProcess, Promise<Gateway>>();
const gatewayOf = (server: RedisProcess) => {
  let g = gateways.get(server);
  if (!g) {
    g = startGateway({ redis: { host: server.host, port: server.port }, token: TOKEN });
    gateways.set(server, g);
  }
  return g;
};
type Transport = 'redis' | 'rest';
let transport: Transport = 'redis';
const store = async (server: RedisProcess, options: { replicas?: number | 'auto' } = {}) => {
  const s =
    transport === 'redis'
      ? redisStore({ host: server.host, port: server.port, ...options })
      : upstashStore({ url: (await gatewayOf(server)).url, token: TOKEN, ...options });
  stores.push(s);
  return s;
};

beforeAll(async () => {
  [master, lone] = await Promise.all([startRedis(), startRedis()]);
  replica = await startRedis({ args: ['--replicaof', master.host, String(master.port)] });
  await inSync();
});

/**
 * The replica acknowledges the master's writes. `state=online` in INFO replication is not enough: right after a
 * full sync the master may not stream to the replica for up to a second (replicasAcknowledging in
 * dev/redis-server.ts), and a WAIT in that window gets 0.
 */
async function inSync(of = master): Promise<void> {
  await vi.waitFor(async () => expect(await replicasAcknowledging(of, 1, 200)).toBe(1), {
    timeout: 30_000,
    interval: 50,
  });
}
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
  await Promise.allSettled([...gateways.values()].map(async (g) => (await g).close()));
  if (replica?.running) replica.resume();
  await Promise.allSettled([master?.stop(), replica?.stop(), lone?.stop()]);
});

/** The replica stops acknowledging: frozen, and its link cut on the master's side. Undone by the result. */
async function lag(): Promise<() => Promise<void>> {
  replica.pause();
  await ask(master, 1000, 'CLIENT', 'KILL', 'TYPE', 'replica');
  return async () => {
    replica.resume();
    // Attached is not enough: a replica still resyncing (state=wait_bgsave, send_bulk) acknowledges nothing.
    await inSync();
  };
}

describe.each(['redis', 'rest'] as const)('over %s', (name) => {
  beforeAll(() => {
    transport = name;
  });

  describe('a standalone master with a replica', () => {
    it("'auto' waits for the replica: acquire and extend are refused while it acknowledges nothing", async () => {
      const lock = createLock(await store(master));
      const lease = (await lock.tryAcquire(`${transport}-standalone`, { ttlMs: 10_000 }))!;
      expect(lease).not.toBeNull();
      const heal = await lag();
      try {
        await expect(lock.tryAcquire(`${transport}-standalone-2`, { ttlMs: 10_000 })).rejects.toBeInstanceOf(
          ReplicationError,
        );
        const validUntil = lease.validUntil;
        await expect(lease.extend(20_000)).rejects.toBeInstanceOf(ReplicationError);
        expect(lease.validUntil).toBe(validUntil); // the extension did not count
        // replicas: 0 grants on the master alone
        expect(
          await createLock(await store(master, { replicas: 0 })).tryAcquire(`${transport}-standalone-3`, {
            ttlMs: 1000,
          }),
        ).not.toBeNull();
      } finally {
        await heal();
      }
      // Back in sync (its acknowledgements seen), the replica acknowledges the extension.
      await lease.extend(20_000);
      await lease.release();
    });

    it('withOnce: a completion the replica did not acknowledge fails the invocation (closed); a retry gets the value that landed', async () => {
      let runs = 0;
      let healing: Promise<() => Promise<void>> | undefined;
      const handler = withOnce(
        async () => {
          runs += 1;
          if (runs === 1) healing = lag(); // after the claim was acknowledged, before the completion
          await healing;
          return { runs };
        },
        {
          store: await store(master),
          namespace: `replica-wait-${transport}`,
          key: () => 'k',
          payload: false,
          logLevel: 'silent',
        },
      );
      const context = { getRemainingTimeInMillis: () => 10_000 } as unknown as Context;
      await expect(handler({}, context)).rejects.toBeInstanceOf(ReplicationError);
      await (await healing!)();
      // The invocation was not reported complete. The write itself landed on the master (the failure is
      // ambiguous) and, with no failover, survived: the event source's retry gets that first value, once and
      // for all, and the handler never runs again.
      const retried = await vi.waitFor(() => handler({}, context), { timeout: 15_000 });
      expect(retried).toEqual({ runs: 1 });
      expect(await handler({}, context)).toEqual({ runs: 1 });
      expect(runs).toBe(1);
    });
  });

  describe('replicas: 1 on a server without replicas', () => {
    it('refuses every grant (safe, not available); the default grants there without waiting', async () => {
      const strict = createLock(await store(lone, { replicas: 1 }));
      const err = await strict.tryAcquire(`${transport}-lone`, { ttlMs: 1000 }).catch((e) => e);
      expect(err).toBeInstanceOf(ReplicationError);
      expect(err).toMatchObject({ acknowledged: 0, required: 1 });
      const lease = await vi.waitFor(async () => {
        const l = await createLock(await store(lone)).tryAcquire(`${transport}-lone`, { ttlMs: 1000 });
        expect(l).not.toBeNull(); // the refused grant was given back
        return l!;
      });
      await lease.release();
    });
  });

  describe('the replica wait from the environment', () => {
    it('fromEnv() with ONCELY_REDIS_REPLICAS=1 refuses grants on a server without replicas; =0 grants', async () => {
      const gatewayUrl = transport === 'rest' ? (await gatewayOf(lone)).url : '';
      const env = (replicas: string) => {
        const s = fromEnv({
          ...(transport === 'redis'
            ? { ONCELY_REDIS_URL: lone.url }
            : { UPSTASH_REDIS_REST_URL: gatewayUrl, UPSTASH_REDIS_REST_TOKEN: TOKEN }),
          ONCELY_REDIS_REPLICAS: replicas,
          ONCELY_REDIS_REPLICA_TIMEOUT_MS: '100',
        });
        stores.push(s);
        return createLock(s);
      };
      const err = await env('1')
        .tryAcquire(`${transport}-from-env`, { ttlMs: 1000 })
        .catch((e) => e);
      expect(err).toBeInstanceOf(ReplicationError);
      expect(err).toMatchObject({ acknowledged: 0, required: 1 });
      const lease = await vi.waitFor(async () => {
        const l = await env('0').tryAcquire(`${transport}-from-env`, { ttlMs: 1000 });
        expect(l).not.toBeNull(); // the refused grant was given back
        return l!;
      });
      await lease.release();
    });
  });

  describe("'auto' when the replica goes away", () => {
    it('the grant that found no replica fails; the replicas are read again, and later grants no longer wait', async () => {
      const lock = createLock(await store(master));
      expect(await lock.tryAcquire(`${transport}-gone-warm`, { ttlMs: 1000 })).not.toBeNull(); // replicas read: 1
      await replica.kill();
      const err = await lock.tryAcquire(`${transport}-gone`, { ttlMs: 1000 }).catch((e) => e);
      expect(err).toBeInstanceOf(ReplicationError);
      // 5 s later the replicas are read again: connected_slaves:0, and 'auto' stops waiting (availability first).
      const lease = await vi.waitFor(
        async () => {
          const l = await lock.tryAcquire(`${transport}-gone-2`, { ttlMs: 1000 });
          expect(l).not.toBeNull();
          return l!;
        },
        { timeout: 30_000, interval: 250 },
      );
      await lease.release();
      // Back for the next transport's run.
      await replica.restart();
      await inSync();
    });
  });

  describe("'auto' when a replica joins later", () => {
    it('a warm store starts waiting for it within seconds of a grant, not from its next connection', async () => {
      const alone = await startRedis();
      let late: RedisProcess | undefined;
      try {
        const lock = createLock(await store(alone));
        await (await lock.tryAcquire(`${transport}-late-0`, { ttlMs: 1000 }))!.release(); // replicas read: none
        expect(await waitsOn(alone)).toBe(0);
        late = await startRedis({ args: ['--replicaof', alone.host, String(alone.port)] });
        await inSync(alone);
        const before = await waitsOn(alone);
        // A grant on a server that listed no replica has the replicas read again (at most every 5 s, in the
        // background): the grants after that wait for the new one.
        let i = 0;
        await vi.waitFor(
          async () => {
            const lease = await lock.tryAcquire(`${transport}-late-${++i}`, { ttlMs: 1000 });
            expect(lease).not.toBeNull();
            await lease!.release();
            expect(await waitsOn(alone)).toBeGreaterThan(before);
          },
          { timeout: 20_000, interval: 250 },
        );
      } finally {
        await Promise.allSettled([late?.stop(), alone.stop()]);
      }
    });
  });
});
