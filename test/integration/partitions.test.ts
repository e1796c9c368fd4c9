/**
 * Real network partitions (test/support/netns.ts): servers and a Lambda-side client process each in their own
 * network namespace, cut by a downed link or by iptables, one direction or both. This process is the other
 * client (the contender), never cut. Each scenario prints its figures (`[partition] ...`) and asserts the
 * safety property a wrong implementation would break:
 *
 * - a partitioned lock holder promises (validUntil, reported as it moves) no later than the moment the
 *   contender gets the lock, and the contender's fence is greater;
 * - in an election, the resource's fenced log never accepts the old leader after the new one;
 * - withOnce: the partitioned invocation's handler is aborted, the retry runs with a greater fence, and the
 *   fenced log never accepts the old invocation after the new one.
 *
 * Needs root and iptables (CI runs as root on a machine that has both); elsewhere the file fails, naming what
 * is missing.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RedisCluster, RedisProcess } from '../../dev/redis-server.js';
import {
  createLock,
  createRedlock,
  InProgressError,
  type Lease,
  type Locker,
  QuorumError,
  type Store,
  upstashStore,
  withOnce,
} from '../../layers/oncely/src/index.js';
import { clusterStore, redisStore } from '../../layers/oncely/src/ioredis.js';
import { FENCED_WRITE, type FencedWrite, parseLog } from '../support/fenced-resource.js';
import {
  type NetnsGateway,
  type Network,
  netnsUnavailable,
  type Party,
  useNetwork,
} from '../support/netns.js';
import { lambdaContext } from '../support/once.js';

const unavailable = netnsUnavailable();
// Every machine this suite runs on (CI and the sessions) runs as root with iproute2 and iptables: without them
// the file fails, naming what is missing, rather than skip.
if (unavailable) throw new Error(`partitions.test.ts needs network namespaces: ${unavailable}`);

/** The holder's lease: short, so a scenario ends in seconds; the margins asserted never depend on it. */
const TTL_MS = 1000;
const clientScript = fileURLToPath(new URL('../support/netns-client.ts', import.meta.url));
const figure = (text: string) => console.log(`[partition] ${text}`);

interface ClientEvent {
  event: string;
  id: string;
  at: number;
  fence?: number;
  term?: number;
  validUntil?: number;
  accepted?: boolean;
  reason?: string;
  result?: unknown;
}

/** A netns-client.ts process and the events it printed. */
class Client {
  readonly events: ClientEvent[] = [];
  readonly #waiters = new Set<() => void>();
  #output = '';

  constructor(readonly child: ChildProcess) {
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) this.events.push(JSON.parse(line) as ClientEvent);
      for (const wake of this.#waiters) wake();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.#output = (this.#output + chunk.toString('utf8')).slice(-4000);
    });
  }

  /** The first event named `name` (after `since`), waiting up to `timeoutMs`. */
  async next(name: string, timeoutMs = 15_000, since = 0): Promise<ClientEvent> {
    const find = () => this.events.find((e) => e.event === name && e.at >= since);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found) return found;
      if (Date.now() > deadline || this.child.exitCode !== null)
        throw new Error(
          `no '${name}' event within ${timeoutMs} ms; events: ${JSON.stringify(this.events)}\n${this.#output}`,
        );
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, 100);
        this.#waiters.add(wake);
      });
    }
  }

  /** The latest deadline the client promised (acquired or valid events). */
  lastValidUntil(): number {
    return Math.max(...this.events.map((e) => e.validUntil ?? 0));
  }
}

const addr = (s: { host: string; port: number }) => `${s.host}:${s.port}`;

function spawnClient(net: Network, party: Party, args: string[], env: Record<string, string> = {}): Client {
  return new Client(net.spawn(party, ['--import', 'tsx', clientScript, ...args], env));
}

const stores: Store[] = [];
const tracked = (store: Store) => {
  stores.push(store);
  return store;
};
const clients: Client[] = [];
afterAll(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close().catch(() => undefined)));
});

/** Acquires `key` from here, retrying until it is free: returns the lease and when it was granted. */
async function contend(lock: Locker, key: string): Promise<{ lease: Lease; at: number }> {
  const lease = await lock.acquire(key, {
    ttlMs: TTL_MS,
    retry: { attempts: 400, delayMs: 25, jitterMs: 10, maxWaitMs: 20_000 },
  });
  return { lease, at: Date.now() };
}

let n = 0;
const freshKey = (label: string) => `${label}-${++n}-${process.pid}`;

/**
 * The holder (a process in namespace `lambda`) loses its link to the servers `cutFrom` (both directions,
 * or only the replies when `repliesOnly`); the contender here then gets the lock. Asserts the holder's last
 * promise was kept and the fence grew; returns the figures.
 */
async function partitionHolder(
  net: Network,
  nodesArg: string[],
  lock: Locker,
  cutFrom: Party[],
  repliesOnly: boolean,
  env: Record<string, string> = {},
): Promise<string> {
  const key = freshKey('hold');
  const lambda = await net.add('lambda');
  const args = ['--mode', 'hold', ...nodesArg, '--key', key, '--ttl-ms', String(TTL_MS)];
  const holder = spawnClient(net, lambda, args, env);
  clients.push(holder);
  const acquired = await holder.next('acquired');
  await holder.next('valid', 15_000, acquired.at + 1); // it has extended once: the keeper runs
  const cutAt = Date.now();
  for (const server of cutFrom) {
    if (repliesOnly) await net.drop(server, lambda);
    else await net.cut(server, lambda);
  }
  const won = await contend(lock, key);
  const lost = await holder.next('lost', 15_000);
  const promised = holder.lastValidUntil();
  expect(won.lease.fence).toBeGreaterThan(acquired.fence!);
  // The safety property: the holder never promised itself the lock past the moment the contender got it.
  expect(won.at).toBeGreaterThanOrEqual(promised);
  await won.lease.release();
  return `holder lost its lease ${lost.at - cutAt} ms after the cut (${lost.reason}); contender got it ${won.at - cutAt} ms after, ${Math.round(won.at - promised)} ms after the holder's last promise; fences ${acquired.fence} -> ${won.lease.fence}`;
}

describe('partitions', () => {
  const net = useNetwork();
  afterEach(async () => {
    for (const client of clients.splice(0)) client.child.kill('SIGKILL');
    await net().heal();
  });

  describe('standalone', () => {
    let server: RedisProcess;
    let lock: Locker;
    beforeAll(async () => {
      server = await net().startRedis('m1');
      lock = createLock(tracked(redisStore({ host: server.host, port: server.port, timeoutMs: 500 })));
    });

    it.each([
      ['symmetric', false],
      ['asymmetric: replies dropped', true],
    ])(
      'a holder partitioned from its master (%s) loses the lease before the contender gets it',
      async (label, repliesOnly) => {
        const m1 = net().partyAt(server.host);
        figure(
          `standalone, ${label}: ${await partitionHolder(net(), ['--nodes', addr(server)], lock, [m1], repliesOnly)}`,
        );
      },
    );

    it('a downed link: the holder is cut from everyone, the lock passes on expiry', async () => {
      const key = freshKey('down');
      const lambda = await net().add('lambda');
      const holder = spawnClient(net(), lambda, [
        '--mode',
        'hold',
        '--nodes',
        addr(server),
        '--key',
        key,
        '--ttl-ms',
        String(TTL_MS),
      ]);
      clients.push(holder);
      const acquired = await holder.next('acquired');
      const cutAt = Date.now();
      await net().down(lambda);
      const won = await contend(lock, key);
      expect(won.lease.fence).toBeGreaterThan(acquired.fence!);
      expect(won.at).toBeGreaterThanOrEqual(holder.lastValidUntil());
      figure(`standalone, link down: contender got the lock ${won.at - cutAt} ms after the cut`);
      await won.lease.release();
    });
  });

  describe('redlock, 5 masters', () => {
    let masters: RedisProcess[];
    let lock: Locker;
    const nodesArg = () => ['--nodes', masters.map(addr).join(',')];
    beforeAll(async () => {
      masters = await net().startMasters(5, 'r');
      lock = createRedlock(
        masters.map((m) => tracked(redisStore({ host: m.host, port: m.port, timeoutMs: 250 }))),
        { nodeTimeoutMs: 250 },
      );
    });

    it.each([
      ['symmetric', false],
      ['asymmetric: replies dropped', true],
    ])(
      'a holder cut from 3 of 5 masters (%s) loses its quorum before the contender gets it',
      async (label, repliesOnly) => {
        const cut = masters.slice(0, 3).map((m) => net().partyAt(m.host));
        figure(
          `redlock, 3 of 5, ${label}: ${await partitionHolder(net(), nodesArg(), lock, cut, repliesOnly)}`,
        );
      },
    );

    it('a holder cut from 1 of 5 masters keeps its quorum: the contender never gets the lock', async () => {
      const key = freshKey('minority');
      const lambda = await net().add('lambda');
      const holder = spawnClient(net(), lambda, [
        '--mode',
        'hold',
        ...nodesArg(),
        '--key',
        key,
        '--ttl-ms',
        String(TTL_MS),
      ]);
      clients.push(holder);
      await holder.next('acquired');
      await net().cut(net().partyAt(masters[0]!.host), lambda);
      const cutAt = Date.now();
      let attempts = 0;
      while (Date.now() - cutAt < 3 * TTL_MS) {
        attempts++;
        // Not granted: refused as taken (null), or a QuorumError when some nodes were slow to answer (a busy
        // machine); never a lease.
        const lease = await lock.tryAcquire(key, { ttlMs: TTL_MS }).catch((error: unknown) => {
          expect(error).toBeInstanceOf(QuorumError);
          return null;
        });
        expect(lease).toBeNull();
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(holder.events.some((e) => e.event === 'lost')).toBe(false);
      expect(holder.lastValidUntil()).toBeGreaterThan(cutAt + 2 * TTL_MS); // it kept extending
      figure(
        `redlock, 1 of 5 cut: holder kept its lease for ${3 * TTL_MS} ms (${attempts} contender attempts refused)`,
      );
    });
  });

  describe('REST gateway', () => {
    let gateway: NetnsGateway;
    let lock: Locker;
    beforeAll(async () => {
      const server = await net().startRedis('g1');
      gateway = await net().startGateway('gw', server);
      lock = createLock(tracked(upstashStore({ url: gateway.url, token: gateway.token, timeoutMs: 500 })));
    });

    it.each([
      ['symmetric', false],
      ['asymmetric: replies dropped', true],
    ])(
      'a holder partitioned from the gateway (%s) loses the lease before the contender gets it',
      async (label, repliesOnly) => {
        const env = { ONCELY_GATEWAY_TOKEN: gateway.token };
        const result = await partitionHolder(
          net(),
          ['--rest', gateway.url],
          lock,
          [gateway.party],
          repliesOnly,
          env,
        );
        figure(`REST, ${label}: ${result}`);
      },
    );
  });

  describe('3 + 3 cluster: the master of the key cut off with the holder (a minority side)', () => {
    const FAILOVER_TTL_MS = 2000;
    let cluster: RedisCluster;
    let lock: Locker;
    beforeAll(async () => {
      cluster = await net().startCluster({ masters: 3, replicas: 1 }, 'f');
      lock = createLock(tracked(clusterStore({ nodes: cluster.seeds, timeoutMs: 500 })));
    });

    it("the replica is promoted on the majority side; the contender there is granted only after the holder's last promise", async () => {
      const key = freshKey('minority');
      const probe = await lock.acquire(key, { ttlMs: FAILOVER_TTL_MS });
      let owner: RedisProcess | undefined;
      for (const node of cluster.masters) {
        const c = new Redis({ host: node.host, port: node.port, protocol: 2 });
        if ((await c.keys(`*${key}*`)).length > 0) owner = node;
        c.disconnect();
      }
      await probe.release();
      const lambda = await net().add('lambda');
      const holder = spawnClient(net(), lambda, [
        ...['--mode', 'hold', '--cluster', '--nodes', cluster.seeds.map(addr).join(',')],
        ...['--key', key, '--ttl-ms', String(FAILOVER_TTL_MS)],
      ]);
      clients.push(holder);
      const acquired = await holder.next('acquired');
      await holder.next('valid', 15_000, acquired.at + 1);
      // The minority side: the key's master and the holder. Everyone else (its replica, the other shards,
      // the contender here) is on the other side.
      const master = net().partyAt(owner!.host);
      const cutAt = Date.now();
      for (const node of cluster.nodes) {
        if (node === owner) continue;
        await net().cut(master, net().partyAt(node.host));
        await net().cut(lambda, net().partyAt(node.host));
      }
      await net().cut(master, net().here);
      const won = await contend(lock, key);
      const lost = await holder.next('lost');
      expect(won.lease.fence).toBeGreaterThan(acquired.fence!);
      expect(won.at).toBeGreaterThanOrEqual(holder.lastValidUntil());
      figure(
        `3+3 cluster, key's master + holder on the minority side: holder lost ${lost.at - cutAt} ms after the ` +
          `cut (${lost.reason}), contender granted on the promoted replica ${won.at - cutAt} ms after, ` +
          `${Math.round(won.at - holder.lastValidUntil())} ms after the holder's last promise`,
      );
      await won.lease.release();
    });
  });

  describe('cluster, 3 masters', () => {
    let cluster: RedisCluster;
    let lock: Locker;
    beforeAll(async () => {
      cluster = await net().startCluster({ masters: 3 });
      lock = createLock(tracked(clusterStore({ nodes: cluster.seeds, timeoutMs: 500 })));
    });

    it('a holder cut from the master of its key (the others still reachable) loses the lease first', async () => {
      const key = freshKey('cluster');
      // The master of the key: the one where a probe lock on it lands.
      const probe = await lock.acquire(key, { ttlMs: TTL_MS });
      let owner: RedisProcess | undefined;
      for (const node of cluster.masters) {
        const c = new Redis({ host: node.host, port: node.port, protocol: 2 });
        const keys = await c.keys(`*${key}*`);
        c.disconnect();
        if (keys.length > 0) owner = node;
      }
      await probe.release();
      expect(owner).toBeDefined();
      const lambda = await net().add('lambda');
      const holder = spawnClient(net(), lambda, [
        '--mode',
        'hold',
        '--cluster',
        '--nodes',
        cluster.seeds.map(addr).join(','),
        '--key',
        key,
        '--ttl-ms',
        String(TTL_MS),
      ]);
      clients.push(holder);
      const acquired = await holder.next('acquired');
      await holder.next('valid', 15_000, acquired.at + 1);
      const cutAt = Date.now();
      await net().cut(net().partyAt(owner!.host), lambda);
      const won = await contend(lock, key);
      const lost = await holder.next('lost');
      expect(won.lease.fence).toBeGreaterThan(acquired.fence!);
      expect(won.at).toBeGreaterThanOrEqual(holder.lastValidUntil());
      figure(
        `cluster, cut from the key's master: holder lost ${lost.at - cutAt} ms after the cut, contender got it ${won.at - cutAt} ms after, ${Math.round(won.at - holder.lastValidUntil())} ms after the holder's last promise`,
      );
      await won.lease.release();
    });
  });

  describe('election and withOnce, fenced writes at a resource nobody is cut from', () => {
    let server: RedisProcess;
    let resource: RedisProcess;
    let admin: Redis;
    const log = async (key: string): Promise<FencedWrite[]> =>
      parseLog(await admin.lrange(`${key}:log`, 0, -1));
    beforeAll(async () => {
      [server, resource] = await Promise.all([net().startRedis('e1'), net().startRedis('res')]);
      admin = new Redis({ host: resource.host, port: resource.port, protocol: 2 });
    });
    afterAll(() => admin?.disconnect());

    /** No write of `old` accepted after the first accepted write of `next`. */
    const neverInterleaved = (writes: FencedWrite[], old: string, next: string) => {
      const first = writes.findIndex((w) => w.accepted && w.writer === next);
      expect(first).toBeGreaterThanOrEqual(0);
      expect(writes.slice(first).filter((w) => w.accepted && w.writer === old)).toEqual([]);
    };

    it('election: the leader cut from the master is deposed, the new term never interleaves with the old', async () => {
      const key = freshKey('election');
      const common = [
        '--mode',
        'leader',
        '--nodes',
        addr(server),
        '--key',
        key,
        '--ttl-ms',
        String(TTL_MS),
        '--resource',
        addr(resource),
      ];
      const a = spawnClient(net(), await net().add('cand1'), [...common, '--id', 'a']);
      clients.push(a);
      const elected = await a.next('elected');
      await a.next('act', 15_000, elected.at);
      const b = spawnClient(net(), await net().add('cand2'), [...common, '--id', 'b']);
      clients.push(b);
      await new Promise((r) => setTimeout(r, 200)); // b is running, and losing
      const cutAt = Date.now();
      await net().cut(net().partyAt(server.host), net().party('cand1'));
      const bElected = await b.next('elected');
      const deposed = await a.next('deposed');
      await b.next('act', 15_000, bElected.at);
      expect(bElected.term!).toBeGreaterThan(elected.term!);
      const writes = await log(key);
      neverInterleaved(writes, 'a', 'b');
      const refused = writes.filter((w) => !w.accepted).length;
      figure(
        `election: a deposed ${deposed.at - cutAt} ms after the cut, b elected ${bElected.at - cutAt} ms after; ${writes.length} fenced writes, ${refused} refused`,
      );
    });

    it('withOnce: the invocation cut from the store is aborted, the retry runs once with a greater fence', async () => {
      const key = freshKey('once');
      const store = tracked(redisStore({ host: server.host, port: server.port, timeoutMs: 500 }));
      const lambda = await net().add('lambda');
      const first = spawnClient(net(), lambda, [
        '--mode',
        'once',
        '--nodes',
        addr(server),
        '--key',
        key,
        '--ttl-ms',
        String(TTL_MS),
        '--work-ms',
        '20000',
        '--resource',
        addr(resource),
        '--id',
        'first',
      ]);
      clients.push(first);
      const started = await first.next('started');
      await first.next('write', 15_000, started.at);
      const cutAt = Date.now();
      await net().cut(net().partyAt(server.host), lambda);
      let runs = 0;
      let busy = 0;
      let retryFence = 0;
      const handler = withOnce(
        async (_event: { id: string }, _context, once) => {
          runs++;
          retryFence = once.fence;
          const accepted = await admin.eval(
            FENCED_WRITE,
            2,
            `${key}:fence`,
            `${key}:log`,
            once.fence,
            'retry',
          );
          return { by: 'retry', accepted: Number(accepted) };
        },
        { store, key: (e) => e.id, ttlMs: TTL_MS, namespace: 'partition', logger: () => {} },
      );
      let result: unknown;
      for (;;) {
        try {
          result = await handler({ id: key }, lambdaContext(60_000));
          break;
        } catch (error) {
          if (!(error instanceof InProgressError)) throw error;
          busy++;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const ranAt = Date.now();
      expect(result).toEqual({ by: 'retry', accepted: 1 });
      const aborted = await first.next('aborted');
      expect(retryFence).toBeGreaterThan(started.fence!);
      await net().heal();
      // A duplicate after the heal gets the stored result: the handler does not run again.
      expect(await handler({ id: key }, lambdaContext(60_000))).toEqual(result);
      expect(runs).toBe(1);
      const writes = await log(key);
      neverInterleaved(writes, 'first', 'retry');
      figure(
        `withOnce: first invocation aborted ${aborted.at - cutAt} ms after the cut; the retry ran ${ranAt - cutAt} ms after (${busy} in-progress answers); fences ${started.fence} -> ${retryFence}; ${writes.filter((w) => !w.accepted).length} of ${writes.length} fenced writes refused`,
      );
    });
  });
});
