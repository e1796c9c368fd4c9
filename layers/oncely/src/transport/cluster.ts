/**
 * What only a Redis Cluster needs: a key's slot, the connection to a slot's master, and recovery from a
 * failover (SlotRecovery).
 */
import type { Cluster, Redis } from 'ioredis';
import { Probes, type Route } from './connection.js';

type Client = Redis | Cluster;

const TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let j = 0; j < 8; j++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    t[i] = crc;
  }
  return t;
})();

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ b) & 0xff]!;
  return crc;
}

/** Redis Cluster key slot: CRC16 (XMODEM) of the hash tag (or the whole key) mod 16384. */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  return crc16(Buffer.from(key, 'utf8')) % 16384;
}

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
 * Recovery from a failover. ioredis refreshes its slot map on its own only every few seconds, and
 * dropping the whole Cluster after a timeout would fail calls to healthy masters too. Instead: a node a call
 * timed out on has its connection probed (and dropped only if it is bad, see `route`), and while a slot's
 * master is suspect (timed out, refused, closed, MOVED, CLUSTERDOWN) the slot map is refreshed every
 * SUSPECT_REFRESH_MS until that slot has a new master (a promoted replica), a call to it succeeds again, or
 * SUSPECT_FOR_MS has passed: one refresh loop per client, however many calls fail.
 */
export class SlotRecovery {
  readonly #suspects = new Map<number, { owner: string | undefined; since: number }>();
  readonly #probes = new Probes<Redis>();
  #refreshTimer: NodeJS.Timeout | undefined;

  readonly #owned: boolean;
  readonly #timeoutMs: number;
  readonly #get: () => Promise<Cluster>;

  /** `owned`: the store made the Cluster, so a bad node connection may be dropped (see route). */
  constructor(get: () => Promise<Cluster>, options: { owned: boolean; timeoutMs: number }) {
    this.#get = get;
    this.#owned = options.owned;
    this.#timeoutMs = options.timeoutMs;
  }

  /**
   * Where a call to these slots goes (each slot's master in the client's slot map), for Connection: a call
   * is held while the connection to such a node is being probed, and a call that timed out has that node's
   * connection probed (Probes, once per node at a time): kept if it answers in step within timeoutMs, else
   * that node's connection alone is disconnected, once. The connections to other nodes are left alone, so
   * calls to healthy masters go on; the Cluster itself is never dropped.
   */
  route(slots: readonly number[]): Route<Client> {
    const probes = this.#probes;
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
      timedOut: (c) => {
        if (!this.#owned) return;
        for (const slot of new Set(slots)) {
          const node = nodeOf(c as Cluster, slot);
          if (node && node.status !== 'end')
            void probes.start(node, this.#timeoutMs, () => node.disconnect());
        }
      },
    };
  }

  /** After a failed call: its slots become suspect if the error says their node may be gone (not awaited). */
  afterFailure(err: unknown, slots: readonly number[]): void {
    if (!connectionSuspect(err)) return;
    this.#get().then(
      (c) => this.#suspect(c, slots),
      () => undefined,
    );
  }

  /** A call to these slots succeeded: they are no longer suspect. */
  healthy(slots: Iterable<number>): void {
    if (this.#suspects.size === 0) return;
    for (const slot of slots) this.#suspects.delete(slot);
  }

  #suspect(c: Cluster, slots: Iterable<number>): void {
    for (const slot of slots) {
      if (!this.#suspects.has(slot))
        this.#suspects.set(slot, { owner: ownerOf(c, slot), since: performance.now() });
    }
    this.#refreshLoop(c);
  }

  #refreshLoop(c: Cluster): void {
    if (this.#refreshTimer) return;
    const tick = () => {
      const now = performance.now();
      for (const [slot, s] of this.#suspects) {
        if (ownerOf(c, slot) !== s.owner || now - s.since > SUSPECT_FOR_MS) this.#suspects.delete(slot);
      }
      if (this.#suspects.size === 0 || c.status === 'end' || c.status === 'close') {
        this.#refreshTimer = undefined;
        return;
      }
      c.refreshSlotsCache(() => {});
      this.#refreshTimer = setTimeout(tick, SUSPECT_REFRESH_MS);
      this.#refreshTimer.unref?.();
    };
    c.refreshSlotsCache(() => {});
    this.#refreshTimer = setTimeout(tick, SUSPECT_REFRESH_MS);
    this.#refreshTimer.unref?.();
  }
}
