/**
 * Helpers for failover tests on a replicated cluster (startCluster({ masters: 3, replicas: 1 })): who owns a
 * key's slot now, waiting for a replica's promotion, and waiting until every shard has a replica in sync again.
 * Every question goes to the servers themselves (CLUSTER SLOTS, ROLE, INFO), through short-lived clients.
 */
import { Redis } from 'ioredis';
import { type RedisCluster, type RedisProcess, replicasAcknowledging } from '../../dev/redis-server.js';
import { keySlot } from '../../layers/oncely/src/transport/cluster.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One command on one node, or undefined when it does not answer within `timeoutMs`. */
export async function ask(node: RedisProcess, timeoutMs: number, ...command: string[]): Promise<unknown> {
  const c = new Redis({
    host: node.host,
    port: node.port,
    protocol: 2,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  c.on('error', () => {});
  try {
    await c.connect();
    return await c.call(command[0]!, ...command.slice(1));
  } catch {
    return undefined;
  } finally {
    c.disconnect();
  }
}

/** How many WAITs `node` has run (INFO commandstats): tells a grant that waited from one that did not. */
export async function waitsOn(node: RedisProcess): Promise<number> {
  const stats = String(await ask(node, 1000, 'INFO', 'commandstats'));
  return Number(/cmdstat_wait:calls=(\d+)/.exec(stats)?.[1] ?? 0);
}

/** The master and replicas of `key`'s slot, as the first node that answers sees them. */
export async function shardOf(
  cluster: RedisCluster,
  key: string,
  exclude: readonly RedisProcess[] = [],
): Promise<{ master: RedisProcess; replicas: RedisProcess[] }> {
  const slot = keySlot(key);
  for (const node of cluster.nodes) {
    if (exclude.includes(node) || !node.running) continue;
    const reply = (await ask(node, 500, 'CLUSTER', 'SLOTS')) as [number, number, ...[string, number][]][];
    if (!Array.isArray(reply)) continue;
    const range = reply.find(([start, end]) => slot >= start && slot <= end);
    if (!range) continue;
    const [, , ...owners] = range;
    const byPort = (port: number) => cluster.nodes.find((n) => n.port === Number(port))!;
    return { master: byPort(owners[0]![1]), replicas: owners.slice(1).map((o) => byPort(o[1])) };
  }
  throw new Error(`no node answered CLUSTER SLOTS for ${key}`);
}

/** Resolves (with performance.now()) once `replica` is a master and the other nodes route `key` to it. */
export async function awaitPromotion(
  cluster: RedisCluster,
  replica: RedisProcess,
  key: string,
  others: readonly RedisProcess[],
  timeoutMs = 30_000,
): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const role = (await ask(replica, 300, 'ROLE')) as [string] | undefined;
    if (role?.[0] === 'master') {
      const seen = await shardOf(cluster, key, others);
      if (seen.master === replica) return performance.now();
    }
    await sleep(20);
  }
  throw new Error(`${replica} was not promoted within ${timeoutMs} ms`);
}

/**
 * Waits until every master has `replicas` connected replicas that acknowledge its writes (WAIT), every slot is
 * served and every node lists every replica in CLUSTER SLOTS (what a client's slot map, and so the replica
 * wait, is built from).
 */
export async function awaitReplicated(
  cluster: RedisCluster,
  replicas = 1,
  timeoutMs = 40_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let problem = '';
  while (performance.now() < deadline) {
    problem = '';
    for (const node of cluster.nodes) {
      const info = String((await ask(node, 500, 'INFO', 'replication')) ?? '');
      if (info.includes('role:master') && !info.includes(`connected_slaves:${replicas}\r\n`))
        problem = `${node} has no replica in sync`;
      // Listed as online is not enough (see replicasAcknowledging): its replicas must acknowledge a write.
      else if (info.includes('role:master') && (await replicasAcknowledging(node, replicas, 200)) < replicas)
        problem = `${node}: replicas do not acknowledge writes yet`;
      if (info.includes('role:slave') && !/master_link_status:up/.test(info)) problem = `${node} link down`;
      if (!info) problem = `${node} does not answer`;
      const state = String((await ask(node, 500, 'CLUSTER', 'INFO')) ?? '');
      if (!state.includes('cluster_state:ok')) problem = `${node} cluster not ok`;
      // A replica that was marked failed (frozen past the node timeout) is left out of CLUSTER SLOTS until the
      // others see it again: wait until every node lists every replica.
      const slots = (await ask(node, 500, 'CLUSTER', 'SLOTS')) as unknown[][] | undefined;
      if (!slots || slots.some((range) => range.length < 3 + replicas))
        problem = `${node} lists a shard without replica`;
      if (problem) break;
    }
    if (!problem) return;
    await sleep(100);
  }
  throw new Error(`cluster not replicated again within ${timeoutMs} ms: ${problem}`);
}
