/**
 * The replica wait's cost: oncely lock pairs (acquire + release) on a replicated cluster (3 masters + 3
 * replicas), with the default wait (WAIT 1 pipelined after acquire) against `replicas: 0`. One client each;
 * rounds interleaved like every other suite.
 */
import { startCluster } from '../dev/redis-server.js';
import { clusterStore } from '../layers/oncely/src/ioredis.js';
import { type SequentialResult, sequential } from './harness.js';
import { oncely, pairOf } from './locks.js';
import type { Sizes } from './suite-locks.js';

export interface ReplicaSuiteResult {
  /** `wait` (the default, replicas 'auto') and `no-wait` (replicas: 0). */
  sequential: SequentialResult[];
}

export async function replicaSuite(sizes: Sizes, log: (s: string) => void): Promise<ReplicaSuiteResult> {
  log('  starting a 3 + 3 cluster');
  const cluster = await startCluster({ masters: 3, replicas: 1 });
  const contenders = [
    oncely(
      'wait',
      'oncely cluster, replica wait (default)',
      clusterStore({ nodes: cluster.seeds }),
      'clusterStore({ nodes }): its own ioredis Cluster',
    ),
    oncely(
      'no-wait',
      'oncely cluster, replicas: 0',
      clusterStore({ nodes: cluster.seeds, replicas: 0 }),
      'clusterStore({ nodes, replicas: 0 }): its own ioredis Cluster',
    ),
  ];
  try {
    log('  sequential pairs, with and without the wait');
    return { sequential: await sequential(contenders.map(pairOf), { ...sizes, tag: 'bench:replicas' }) };
  } finally {
    await Promise.all(contenders.map((c) => c.close()));
    await cluster.stop();
  }
}
