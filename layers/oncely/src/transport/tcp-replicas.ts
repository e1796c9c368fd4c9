import type { Cluster, Redis } from 'ioredis';
import type { ReplicaWait } from './replicas.js';

type Client = Redis | Cluster;

/**
 * How long a standalone server's replica must stay gone before 'auto' stops waiting for it, and how often at most
 * a shard that lists no replica is looked at again.
 */
const REPLICA_RECHECK_MS = 5000;

/** The replica count in an INFO replication reply. */
const replicasIn = (info: string): number => Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0);

/**
 * How many replicas a granting write on this key's shard must reach (transport/replicas.ts): the configured
 * count, or with 'auto' one where the shard has replicas. A cluster's slot map lists them. A standalone server's
 * INFO replication is read once per client, in the pipeline of its first grant (tcp-store.ts firstGrant, no
 * round trip of its own), and again 5 s after a grant that was not acknowledged (a replica gone for good stops
 * being waited for).
 *
 * A shard that lists no replica is looked at again, in the background, on a grant at most every 5 s (the slot
 * map refreshed, INFO read again): a replica that joins later (the old master back after a failover, a new node)
 * is waited for from then on. ioredis itself does not refresh its slot map on a timer. No periodic traffic.
 */
export function replicaCounter(kind: 'redis' | 'cluster', wait: ReplicaWait) {
  let standalone: { client: Client; count: number } | undefined;
  let standaloneCheck: Promise<number> | undefined;
  let lookedAt = performance.now();
  const readReplicas = (c: Client): Promise<number> =>
    (standaloneCheck ??= (c as Redis)
      .info('replication')
      .then(replicasIn)
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
  /** No replica listed: look again if the last look is REPLICA_RECHECK_MS old (not awaited). */
  const lookAgain = (c: Client) => {
    const now = performance.now();
    if (now - lookedAt < REPLICA_RECHECK_MS) return;
    lookedAt = now;
    if (kind === 'cluster') (c as Cluster).refreshSlotsCache(() => {});
    else void readReplicas(c).catch(() => undefined);
  };
  /**
   * The count when it is known without a round trip (a cluster's slot map; a standalone server's INFO read for
   * this client). A shard that lists no replica is looked at again in the background (lookAgain).
   */
  const replicasKnown = (c: Client, slot: number): number | undefined => {
    if (wait.replicas !== 'auto') return wait.replicas;
    let listed: boolean;
    if (kind === 'cluster') listed = ((c as Cluster).slots[slot]?.length ?? 1) > 1;
    else if (standalone?.client === c) listed = standalone.count > 0;
    else return undefined;
    if (listed) return 1;
    lookAgain(c);
    return 0;
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
  /**
   * A standalone server's INFO replication read in the same pipeline as a first grant (tcp-store.ts): records
   * the count (an INFO that failed leaves it unknown) and returns how many replicas that grant must reach.
   */
  const noteReplicas = (c: Client, reply: [Error | null, unknown] | undefined): number => {
    lookedAt = performance.now();
    if (reply && !reply[0] && typeof reply[1] === 'string')
      standalone = { client: c, count: replicasIn(reply[1]) };
    return standalone?.client === c && standalone.count > 0 ? 1 : 0;
  };
  return { replicasKnown, noteReplicas, notAcknowledged };
}
