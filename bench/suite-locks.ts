/** The lock pair benchmarks: TCP (raw / oncely / redlock) and REST (raw / @upstash/lock / oncely). */
import { Redis } from 'ioredis';
import { startCluster } from '../dev/redis-server.js';
import { clusterStore } from '../layers/oncely/src/ioredis.js';
import { restBeforeStore } from './before.js';
import { type ConcurrentResult, concurrent, type SequentialResult, sequential } from './harness.js';
import {
  type LockContender,
  loadRawScripts,
  oncely,
  oncelyRest,
  oncelyRestBefore,
  oncelyTcp,
  oncelyTcpOwn,
  pairOf,
  rawFencedTcp,
  rawRest,
  rawTcp,
  redlockTcp,
  upstashLock,
} from './locks.js';
import { countLock, type LockCounts } from './roundtrips.js';
import { type Stack, startRoundTripProxy, TOKEN } from './servers.js';

export interface Sizes {
  rounds: number;
  perRound: number;
  warmup: number;
  workers: number;
  durationMs: number;
  /** Operations per counted phase. */
  countN: number;
}

export interface LockSuiteResult {
  name: string;
  /** Contender ids, the one under test first. */
  ids: string[];
  sequential: SequentialResult[];
  concurrent: ConcurrentResult[];
  counts: Record<string, LockCounts>;
}

const tcpClient = (host: string, port: number) => new Redis({ host, port, protocol: 2 });

export async function lockTcp(
  stack: Stack,
  sizes: Sizes,
  log: (s: string) => void,
): Promise<LockSuiteResult> {
  const { host, port } = stack.redis;
  await loadRawScripts(stack.admin);
  const client = tcpClient(host, port);
  const make = (c: Redis): LockContender[] => [oncelyTcp(c), rawTcp(c), redlockTcp([c]), rawFencedTcp(c)];
  // The VPC mode's figure: oncely on a 3-master cluster (clusterStore, its own Cluster client).
  const cluster = await startCluster({ masters: 3 });
  const contenders = [
    ...make(client),
    oncelyTcpOwn({ host, port }),
    oncely(
      'oncely-cluster',
      'oncely TCP, 3-master cluster',
      clusterStore({ nodes: cluster.seeds }),
      'clusterStore({ nodes }): its own ioredis Cluster',
    ),
  ];
  try {
    log('  TCP sequential pairs');
    const servers = {
      redis: stack.redis.pid,
      ...Object.fromEntries(cluster.masters.map((m, i) => [`cluster${i}`, m.pid])),
    };
    for (const n of cluster.masters) {
      const c = new Redis({ host: n.host, port: n.port, protocol: 2 });
      await loadRawScripts(c);
      c.disconnect();
    }
    const seq = await sequential(contenders.map(pairOf), { ...sizes, servers, tag: 'bench:tcp' });
    log(`  TCP ${sizes.workers} concurrent workers`);
    const conc = await concurrent(contenders.map(pairOf), { ...sizes, servers, tag: 'bench:tcpc' });
    log('  TCP round trips');
    const proxy = await startRoundTripProxy({ host, port });
    const counted = tcpClient(proxy.host, proxy.port);
    const counts: Record<string, LockCounts> = {};
    try {
      for (const c of make(counted)) {
        counts[c.id] = await countLock(
          c,
          async () => proxy.roundTrips,
          stack.admin,
          `bench:tcprt:${c.id}`,
          sizes.countN,
        );
      }
    } finally {
      counted.disconnect();
      await proxy.close();
    }
    return { name: 'TCP', ids: contenders.map((c) => c.id), sequential: seq, concurrent: conc, counts };
  } finally {
    await Promise.all(contenders.map((c) => c.close()));
    client.disconnect();
    await cluster.stop();
  }
}

export async function lockRest(
  stack: Stack,
  sizes: Sizes,
  log: (s: string) => void,
): Promise<LockSuiteResult> {
  await loadRawScripts(stack.admin);
  const { url } = stack.gateway;
  const before = await restBeforeStore();
  if ('skipped' in before) log(`  (no "before" REST contender: ${before.skipped})`);
  const make = (): LockContender[] => [
    oncelyRest(url, TOKEN),
    ...('skipped' in before ? [] : [oncelyRestBefore(before, url, TOKEN)]),
    upstashLock(url, TOKEN),
    rawRest(url, TOKEN),
  ];
  const contenders = make();
  try {
    log('  REST sequential pairs');
    const servers = { gateway: stack.gateway.pid, redis: stack.redis.pid };
    const seq = await sequential(contenders.map(pairOf), { ...sizes, servers, tag: 'bench:rest' });
    log(`  REST ${sizes.workers} concurrent workers`);
    const conc = await concurrent(contenders.map(pairOf), { ...sizes, servers, tag: 'bench:restc' });
    log('  REST round trips');
    const counts: Record<string, LockCounts> = {};
    for (const c of contenders) {
      counts[c.id] = await countLock(
        c,
        stack.gateway.requests,
        stack.admin,
        `bench:restrt:${c.id}`,
        sizes.countN,
      );
    }
    return { name: 'REST', ids: contenders.map((c) => c.id), sequential: seq, concurrent: conc, counts };
  } finally {
    await Promise.all(contenders.map((c) => c.close()));
  }
}
