/**
 * A TCP proxy in front of one server that can fail the way networks do without closing anything:
 *
 * - `stall()`: every connection open now stops carrying bytes in both directions and stays open (a half-open
 *   path: a failover that moved an address, a NAT or security-group drop without a reset). New connections
 *   are held the same way (accepted, never forwarded) until `heal()`.
 * - `heal()`: new connections flow again. Connections stalled before stay stalled for good, as a half-open
 *   socket does: only a client that gives up on its connection gets through.
 * - `dropReplies(n)`: the next `n` chunks from the server are thrown away, the connection kept (a reply lost
 *   on the way; every later reply on that socket then answers the command before it).
 * - `delayReplies(ms)`: every chunk from the server reaches the client `ms` later, in order (a slow path).
 *
 * Bytes are never reordered or invented. `stop()` destroys every socket and closes the listener.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { type RedisProcess, type StartClusterOptions, startCluster } from '../../dev/redis-server.js';
import { keySlot } from '../../layers/oncely/src/transport/cluster.js';

export interface StallProxy {
  readonly host: string;
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  stall(): void;
  heal(): void;
  dropReplies(n: number): void;
  delayReplies(ms: number): void;
  /** Replies thrown away so far. */
  readonly dropped: number;
  stop(): Promise<void>;
}

interface Pair {
  client: Socket;
  server: Socket;
  stalled: boolean;
}

export async function startStallProxy(target: { host: string; port: number }): Promise<StallProxy> {
  const pairs = new Set<Pair>();
  let stalledNew = false;
  let toDrop = 0;
  let dropped = 0;
  let accepted = 0;
  let delayMs = 0;

  const server: Server = createServer((client) => {
    accepted += 1;
    client.setNoDelay(true);
    const upstream = tcpConnect({ host: target.host, port: target.port });
    upstream.setNoDelay(true);
    const pair: Pair = { client, server: upstream, stalled: stalledNew };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    client.on('data', (chunk) => {
      if (!pair.stalled) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (pair.stalled) return;
      if (toDrop > 0) {
        toDrop -= 1;
        dropped += 1;
        return;
      }
      if (delayMs > 0) setTimeout(() => client.write(chunk), delayMs);
      else client.write(chunk);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('stall proxy: no TCP address');

  return {
    host: '127.0.0.1',
    port: address.port,
    get accepted() {
      return accepted;
    },
    get dropped() {
      return dropped;
    },
    stall() {
      stalledNew = true;
      for (const p of pairs) p.stalled = true;
    },
    heal() {
      stalledNew = false;
    },
    dropReplies(n) {
      toDrop = n;
    },
    delayReplies(ms) {
      delayMs = ms;
    },
    async stop() {
      for (const p of pairs) {
        p.client.destroy();
        p.server.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A port that never answers a connection attempt (a blackholed address, a security group that drops SYNs),
 * without leaving this machine: a listener with a backlog of one whose process is stopped (SIGSTOP) and whose
 * accept queue is already full, so the kernel drops every further SYN. `stop()` kills the process by PID.
 */
export interface Blackhole {
  readonly host: string;
  readonly port: number;
  stop(): Promise<void>;
}

export async function startBlackhole(): Promise<Blackhole> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:net').createServer(() => {});
       s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => process.stdout.write(s.address().port + '\\n'));
       setInterval(() => {}, 60000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error('blackhole: could not start a process');
  const exited = once(child, 'exit');
  const fillers: Socket[] = [];
  const stop = async () => {
    for (const s of fillers) s.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(pid, 'SIGKILL');
      await exited;
    }
  };
  try {
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const port = Number(String(line).trim());
    process.kill(pid, 'SIGSTOP');
    // Fill the accept queue: these complete in the kernel; every later attempt hangs.
    for (let i = 0; i < 2; i++) {
      const s = tcpConnect({ host: '127.0.0.1', port });
      s.on('error', () => {});
      fillers.push(s);
      await once(s, 'connect');
    }
    return { host: '127.0.0.1', port, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A Redis Cluster whose nodes announce their proxies' ports: every client byte goes through a StallProxy. */
export interface ProxiedCluster {
  readonly nodes: readonly RedisProcess[];
  /** One per node, in the order of `nodes`. */
  readonly proxies: readonly StallProxy[];
  /** The proxies' addresses, for clusterStore({ nodes }). */
  readonly seeds: { host: string; port: number }[];
  /** The index (in `nodes` and `proxies`) of the master that owns `key`. */
  ownerOf(key: string): Promise<number>;
  stop(): Promise<void>;
}

export async function startProxiedCluster(opts: StartClusterOptions = {}): Promise<ProxiedCluster> {
  const cluster = await startCluster({ masters: 3, ...opts });
  const proxies: StallProxy[] = [];
  const admins = cluster.nodes.map((n) => new Redis({ host: n.host, port: n.port, protocol: 2 }));
  const stop = async () => {
    for (const a of admins) a.disconnect();
    await Promise.all(proxies.map((p) => p.stop()));
    await cluster.stop();
  };
  try {
    proxies.push(...(await Promise.all(cluster.nodes.map((n) => startStallProxy(n)))));
    const indexOfPort = new Map(proxies.map((p, i) => [p.port, i]));
    await Promise.all(
      admins.map((a, i) => a.call('CONFIG', 'SET', 'cluster-announce-port', String(proxies[i]!.port))),
    );
    // Wait for the gossip: every node lists every master at its proxy's port.
    const slotsOf = (a: Redis) => a.call('CLUSTER', 'SLOTS') as Promise<[number, number, [string, number]][]>;
    for (let waited = 0; ; waited += 50) {
      const views = await Promise.all(admins.map(slotsOf));
      if (views.every((slots) => slots.every((s) => indexOfPort.has(Number(s[2][1]))))) break;
      if (waited > 20_000) throw new Error('cluster nodes did not announce their proxies within 20 s');
      await sleep(50);
    }
    return {
      nodes: cluster.nodes,
      proxies,
      seeds: proxies.map((p) => ({ host: p.host, port: p.port })),
      async ownerOf(key) {
        const slot = keySlot(key);
        const slots = await slotsOf(admins[0]!);
        const owner = slots.find(([first, last]) => slot >= first && slot <= last);
        if (!owner) throw new Error(`no owner for slot ${slot}`);
        return indexOfPort.get(Number(owner[2][1]))!;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
