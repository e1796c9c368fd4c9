import type { Cluster, Redis } from 'ioredis';

type Client = Redis | Cluster;

/** How often a suspect slot's map is refreshed, and for how long at most (a failover takes seconds). */
const SUSPECT_REFRESH_MS = 200;
const SUSPECT_FOR_MS = 30_000;

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
 * our Connection would drop the whole Cluster after a timeout, failing calls to healthy masters too. Instead: a
 * node that timed out loses only its own connection, and while a slot's master is suspect (timed out, refused,
 * closed, MOVED, CLUSTERDOWN) the slot map is refreshed every SUSPECT_REFRESH_MS until that slot has a new
 * master (a promoted replica), a call to it succeeds again, or SUSPECT_FOR_MS has passed.
 */
export function slotRecovery(
  kind: 'redis' | 'cluster',
  owned: boolean,
  timeoutMs: number,
  get: () => Promise<Client>,
) {
  const suspects = new Map<number, { owner: string | undefined; since: number }>();
  let refreshTimer: NodeJS.Timeout | undefined;
  const ownerOf = (c: Client, slot: number) => (c as Cluster).slots[slot]?.[0];
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
   * On a timeout: disconnect the connections to the masters of these slots, and any other node connection that
   * does not answer a PING within half a timeout (a path where every byte is dropped poisons them all); the
   * connections that answer stay, so calls to healthy masters go on (Connection keeps the client).
   */
  const dropNodes = (slots: readonly number[]) => (c: Client) => {
    if (kind !== 'cluster' || !owned) return false;
    const cluster = c as Cluster;
    const owners = new Set(slots.map((slot) => ownerOf(c, slot)));
    for (const node of cluster.nodes('all')) {
      if (owners.has(`${node.options.host}:${node.options.port}`)) {
        node.disconnect();
        continue;
      }
      const timer = setTimeout(() => node.disconnect(), Math.max(1, Math.floor(timeoutMs / 2)));
      timer.unref?.();
      node.ping().then(
        () => clearTimeout(timer),
        () => undefined,
      );
    }
    suspect(c, slots);
    return true;
  };
  const afterFailure = async (err: unknown, slots: readonly number[]) => {
    if (kind !== 'cluster' || !connectionSuspect(err)) return;
    suspect(await get(), slots);
  };
  return { dropNodes, afterFailure, healthy };
}
