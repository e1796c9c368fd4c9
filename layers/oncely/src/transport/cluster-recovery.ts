import type { Cluster, Redis } from 'ioredis';
import type { Route } from './connection.js';
import { Probes } from './probe.js';

type Client = Redis | Cluster;

/** How often a suspect slot's map is refreshed, and for how long at most (a failover takes seconds). */
const SUSPECT_REFRESH_MS = 200;
const SUSPECT_FOR_MS = 30_000;

const ownerOf = (c: Client, slot: number) => (c as Cluster).slots[slot]?.[0];

/** The connection to the master of `slot` in the client's slot map, if it has one. */
export function nodeOf(c: Cluster, slot: number): Redis | undefined {
  const owner = ownerOf(c, slot);
  if (owner === undefined) return undefined;
  return c.nodes('all').find((n) => `${n.options.host}:${n.options.port}` === owner);
}

/** Errors that say a node may be gone or no longer master: worth a fresh slot map. */
export function connectionSuspect(err: unknown): boolean {
  if (err === true) return true; // the caller has checked already
  const text = err instanceof Error ? err.message : String(err);
  return /timed out|timeout|no reply|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|max retries|MOVED|CLUSTERDOWN|READONLY|ClusterAllFailed|replica/i.test(
    text,
  );
}

/**
 * Recovery from a failover (cluster only). ioredis refreshes its slot map on its own only every few seconds, and
 * dropping the whole Cluster after a timeout would fail calls to healthy masters too. Instead: a node a call
 * timed out on has its connection probed (and dropped only if it is bad, see `route`), and while a slot's
 * master is suspect (timed out, refused, closed, MOVED, CLUSTERDOWN) the slot map is refreshed every
 * SUSPECT_REFRESH_MS until that slot has a new master (a promoted replica), a call to it succeeds again, or
 * SUSPECT_FOR_MS has passed: one refresh loop per client, however many calls fail.
 */
export function slotRecovery(
  kind: 'redis' | 'cluster',
  owned: boolean,
  timeoutMs: number,
  get: () => Promise<Client>,
) {
  const suspects = new Map<number, { owner: string | undefined; since: number }>();
  let refreshTimer: NodeJS.Timeout | undefined;
  const probes = new Probes<Redis>();
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
   * Where a call to these slots goes (each slot's master in the client's slot map), for Connection: a call
   * is held while the connection to such a node is being probed, and a call that timed out has that node's
   * connection probed (probe.ts, once per node at a time): kept if it answers in step within timeoutMs, else
   * that node's connection alone is disconnected, once. The connections to other nodes are left alone, so
   * calls to healthy masters go on; the Cluster itself is never dropped.
   */
  const route = (slots: readonly number[]): Route<Client> | undefined => {
    if (kind !== 'cluster') return undefined;
    return {
      held(c) {
        if (probes.size === 0) return undefined;
        const pending = slots.flatMap((slot) => {
          const node = nodeOf(c as Cluster, slot);
          const probe = node && probes.pending(node);
          return probe ? [probe] : [];
        });
        return pending.length === 0 ? undefined : Promise.all(pending);
      },
      timedOut(c) {
        if (!owned) return;
        for (const slot of new Set(slots)) {
          const node = nodeOf(c as Cluster, slot);
          if (node && node.status !== 'end') void probes.start(node, timeoutMs, () => node.disconnect());
        }
      },
    };
  };
  const afterFailure = async (err: unknown, slots: readonly number[]) => {
    if (kind !== 'cluster' || !connectionSuspect(err)) return;
    suspect(await get(), slots);
  };
  return { route, afterFailure, healthy };
}
