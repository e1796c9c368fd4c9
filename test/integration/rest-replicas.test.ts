/**
 * The replica wait over REST, on a standalone master with a replica behind the gateway: the gateway serves
 * WAIT in a /pipeline only, on a connection of its own (a WAIT that blocks does not hold up other REST calls),
 * and a grant acknowledged by the replica survives the failover that promotes it, while one the replica did not
 * acknowledge is refused (ReplicationError) instead of being lost. The wait itself, acquire, extend, withOnce
 * and 'auto', over REST and TCP alike: replica-wait.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Gateway, startGateway } from '../../dev/gateway.js';
import { type RedisProcess, replicasAcknowledging, startRedis } from '../../dev/redis-server.js';
import {
  createLock,
  type Lease,
  ReplicationError,
  type Store,
  upstashClientStore,
  upstashStore,
} from '../../layers/oncely/src/index.js';
import { ask, waitsOn } from '../support/failover.js';
import { upstashClient } from '../support/transports.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const TOKEN = 'rest-replicas-token';
let master: RedisProcess;
let replica: RedisProcess;
let gateway: Gateway;
const gateways: Gateway[] = [];
const stores: Store[] = [];

beforeAll(async () => {
  master = await startRedis();
  replica = await startRedis({ args: ['--replicaof', master.host, String(master.port)] });
  gateway = await gatewayOf(master);
  await inSync();
});
afterAll(async () => {
  await Promise.allSettled(stores.map((s) => s.close()));
  await Promise.allSettled(gateways.map((g) => g.close()));
  if (replica?.running) replica.resume();
  await Promise.allSettled([master?.stop(), replica?.stop()]);
});

async function gatewayOf(server: RedisProcess): Promise<Gateway> {
  const g = await startGateway({ redis: { host: server.host, port: server.port }, token: TOKEN });
  gateways.push(g);
  return g;
}

function store(
  via: Gateway,
  options: { replicas?: number | 'auto'; replicaTimeoutMs?: number; timeoutMs?: number } = {},
): Store {
  const s = upstashStore({ url: via.url, token: TOKEN, timeoutMs: 10_000, ...options });
  stores.push(s);
  return s;
}

/** The replica acknowledges the master's writes (see replica-wait.test.ts). */
async function inSync(): Promise<void> {
  await vi.waitFor(async () => expect(await replicasAcknowledging(master, 1, 200)).toBe(1), {
    timeout: 30_000,
    interval: 50,
  });
}

/** One raw REST request to the gateway: its status and JSON body. */
async function post(path: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${gateway.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

let n = 0;
const uniqueKey = (label: string) => `${label}-${Date.now()}-${++n}`;

describe('the gateway serves WAIT', () => {
  it('in a /pipeline, after the writes it covers; alone, inside MULTI or without a timeout it is refused', async () => {
    expect(
      await post('/pipeline', [
        ['SET', uniqueKey('w'), 'v'],
        ['WAIT', '1', '5000'],
      ]),
    ).toEqual({
      status: 200,
      body: [{ result: 'OK' }, { result: 1 }],
    });
    const alone = await post('/', ['WAIT', '1', '100']);
    expect(alone.status).toBe(400);
    expect(alone.body).toEqual({ error: expect.stringMatching(/WAIT is served in a \/pipeline/) });
    const multi = await post('/multi-exec', [
      ['SET', uniqueKey('w'), 'v'],
      ['WAIT', '1', '100'],
    ]);
    expect(multi.status).toBe(400);
    const forever = await post('/pipeline', [['WAIT', '1', '0']]);
    expect(forever.status).toBe(400);
    expect(forever.body).toEqual({ error: expect.stringMatching(/0 blocks forever/) });
  });

  it("like Upstash's, it covers every write made before it, from any connection; so does a store's first grant", async () => {
    // A WAIT connection that has written before (kept idle).
    await post('/pipeline', [
      ['SET', uniqueKey('own'), 'v'],
      ['WAIT', '1', '5000'],
    ]);
    replica.pause(); // attached, acknowledging nothing
    try {
      // A write through the shared connection (POST /), then a WAIT alone in a pipeline: not acknowledged.
      expect(await post('/', ['SET', uniqueKey('any'), 'v'])).toEqual({
        status: 200,
        body: { result: 'OK' },
      });
      expect(await post('/pipeline', [['WAIT', '1', '300']])).toEqual({ status: 200, body: [{ result: 0 }] });
      // A fresh store's first grant reads INFO in its own request and sends its WAIT in the next one.
      const err = await createLock(store(gateway, { replicaTimeoutMs: 300 }))
        .tryAcquire(uniqueKey('first'), { ttlMs: 10_000 })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ReplicationError);
      expect(err).toMatchObject({ acknowledged: 0, required: 1 });
    } finally {
      replica.resume();
    }
    expect(await post('/pipeline', [['WAIT', '1', '5000']])).toEqual({ status: 200, body: [{ result: 1 }] });
  });

  it('on connections of its own: WAITs blocked on a frozen replica hold up no other call, nor each other', async () => {
    // Two stores: one store's calls of one tick would share a request (and one WAIT).
    const waiting = [1, 2].map(() => createLock(store(gateway, { replicas: 1, replicaTimeoutMs: 4000 })));
    const other = createLock(store(gateway, { replicas: 0 }));
    replica.pause();
    try {
      let settled = 0;
      const grants = waiting.map((lock) =>
        lock
          .tryAcquire(uniqueKey('blocked'), { ttlMs: 10_000 })
          .catch((e: unknown) => e)
          .finally(() => {
            settled++;
          }),
      );
      // Both WAITs are blocked on the master at once (CLIENT LIST names a blocked client's command).
      await vi.waitFor(
        async () =>
          expect(String(await ask(master, 1000, 'CLIENT', 'LIST')).match(/cmd=wait/g)).toHaveLength(2),
        { timeout: 3000, interval: 10 },
      );
      // Meanwhile other calls through the same gateway are answered: 20 lock pairs, one after another.
      for (let i = 0; i < 20; i++) {
        const lease = await other.tryAcquire(uniqueKey('free'), { ttlMs: 10_000 });
        expect(lease).not.toBeNull();
        await lease!.release();
      }
      expect(settled).toBe(0); // the WAITs are still blocked: nothing above waited for them
      expect(gateway.waitConnections).toBe(2); // each on a connection of its own
      for (const result of await Promise.all(grants)) {
        expect(result).toBeInstanceOf(ReplicationError);
        expect(result).toMatchObject({ acknowledged: 0, required: 1 });
      }
    } finally {
      replica.resume();
    }
    await inSync();
  });
});

describe('a client of your own (upstashClientStore)', () => {
  it("waits as upstashStore does: 'auto' sends WAIT where the server has a replica, replicas: 0 does not", async () => {
    const client = () => upstashClient(gateway.url, TOKEN, 5000);
    const lock = createLock(upstashClientStore(client()));
    const before = await waitsOn(master);
    await (await lock.tryAcquire(uniqueKey('own'), { ttlMs: 10_000 }))!.release();
    const after = await waitsOn(master);
    expect(after).toBe(before + 1);
    const off = createLock(upstashClientStore(client(), { replicas: 0 }));
    await (await off.tryAcquire(uniqueKey('own'), { ttlMs: 10_000 }))!.release();
    expect(await waitsOn(master)).toBe(after);
  });
});

describe('failover of the master behind the gateway (the replica promoted)', () => {
  it('a grant the replica acknowledged survives; one it did not is refused with the wait, and lost without it', async () => {
    const withWait = createLock(store(gateway));
    const noWait = createLock(store(gateway, { replicas: 0 }));
    const [acked, lost, refused] = [uniqueKey('acked'), uniqueKey('lost'), uniqueKey('refused')];

    // Acknowledged by the replica ('auto' found it in INFO replication).
    const lease: Lease | null = await withWait.tryAcquire(acked, { ttlMs: 30_000 });
    expect(lease).not.toBeNull();

    // The replica falls behind: frozen, and its link cut on the master's side.
    replica.pause();
    await ask(master, 1000, 'CLIENT', 'KILL', 'TYPE', 'replica');
    try {
      expect(await noWait.tryAcquire(lost, { ttlMs: 30_000 })).not.toBeNull(); // on the master alone
      const err = await withWait.tryAcquire(refused, { ttlMs: 30_000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ReplicationError);
      expect(err).toMatchObject({ acknowledged: 0, required: 1, ambiguous: true });
    } finally {
      await master.kill();
      replica.resume();
    }

    // The replica is promoted; the REST endpoint now reaches it.
    expect(await ask(replica, 1000, 'REPLICAOF', 'NO', 'ONE')).toBe('OK');
    const promoted = await gatewayOf(replica);
    const contender = createLock(store(promoted, { replicas: 0 }));
    expect(await contender.tryAcquire(acked, { ttlMs: 30_000 })).toBeNull(); // the acknowledged grant held
    // Without the wait the holder's grant died with the master: the contender is granted too (two holders).
    expect(await contender.tryAcquire(lost, { ttlMs: 30_000 })).not.toBeNull();
    // With it, the holder was told no: the contender's grant is the only one.
    expect(await contender.tryAcquire(refused, { ttlMs: 30_000 })).not.toBeNull();
  });
});
