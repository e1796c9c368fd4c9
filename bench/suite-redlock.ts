/** Redlock over 3 and 5 independent masters: oncely's createRedlock vs the `redlock` package, same clients.
 * */

import { Redis } from 'ioredis';
import type { Redlock as OncelyRedlock } from '../layers/oncely/src/index.js';
import { redisStore } from '../layers/oncely/src/ioredis.js';
import { concurrent, sequential } from './harness.js';
import { type LockContender, pairOf, redlockTcp, TTL_MS } from './locks.js';
import type { LockCounts } from './roundtrips.js';
import { countLock } from './roundtrips.js';
import { startMasters, startRoundTripProxy } from './servers.js';
import type { LockSuiteResult, Sizes } from './suite-locks.js';

type Layer = typeof import('../layers/oncely/src/index.js');

/** Both sides of a Redlock row talk through the same clients. */
const REDLOCK_CLIENTS =
  'one shared ioredis `new Redis({ host, port })` per master (redisStore(client) for oncely)';

/** oncely's Redlock over one redisStore per client. */
function oncelyRedlock(layer: Layer, clients: Redis[]): LockContender {
  const stores = clients.map((c) => redisStore(c));
  const redlock: OncelyRedlock = layer.createRedlock(stores);
  const label = `oncely Redlock (${clients.length})`;
  return {
    id: 'oncely',
    label,
    client: REDLOCK_CLIENTS,
    async acquire(key) {
      const lease = await redlock.tryAcquire(key, { ttlMs: TTL_MS });
      if (!lease) throw new Error(`${label}: ${key} not acquired`);
      return {
        extend: () => lease.extend(),
        release: async () => {
          await lease.release();
        },
      };
    },
    close: async () => {
      await Promise.all(stores.map((s) => s.close()));
    },
  };
}

export async function lockRedlock(
  n: number,
  sizes: Sizes,
  log: (s: string) => void,
): Promise<LockSuiteResult | { skipped: string }> {
  const layer: Layer = await import('../layers/oncely/src/index.js');
  if (typeof layer.createRedlock !== 'function')
    return { skipped: 'layers/oncely/src/redlock.ts not present' };
  const masters = await startMasters(n);
  const clients = masters.nodes.map((m) => new Redis({ host: m.host, port: m.port, protocol: 2 }));
  const admins = masters.nodes.map((m) => new Redis({ host: m.host, port: m.port, protocol: 2 }));
  const make = (cs: Redis[]): LockContender[] => [
    oncelyRedlock(layer, cs),
    redlockTcp(cs, `redlock (${n})`, REDLOCK_CLIENTS),
  ];
  const contenders = make(clients);
  try {
    log(`  Redlock ${n}: sequential pairs`);
    const servers = Object.fromEntries(masters.nodes.map((m, i) => [`redis${i}`, m.pid]));
    const seq = await sequential(contenders.map(pairOf), { ...sizes, servers, tag: `bench:rl${n}` });
    log(`  Redlock ${n}: ${sizes.workers} concurrent workers`);
    const conc = await concurrent(contenders.map(pairOf), { ...sizes, servers, tag: `bench:rl${n}c` });
    log(`  Redlock ${n}: round trips`);
    const proxies = await Promise.all(masters.nodes.map((m) => startRoundTripProxy(m)));
    const counted = proxies.map((p) => new Redis({ host: p.host, port: p.port, protocol: 2 }));
    const counts: Record<string, LockCounts> = {};
    try {
      const total = async () => proxies.reduce((sum, p) => sum + p.roundTrips, 0);
      // Commands are counted on the first master (every master runs the same ones).
      for (const c of make(counted)) {
        counts[c.id] = await countLock(c, total, admins[0]!, `bench:rl${n}rt:${c.id}`, sizes.countN, 10);
      }
    } finally {
      for (const c of counted) c.disconnect();
      await Promise.all(proxies.map((p) => p.close()));
    }
    return {
      name: `Redlock ${n}`,
      ids: contenders.map((c) => c.id),
      sequential: seq,
      concurrent: conc,
      counts,
    };
  } finally {
    await Promise.all(contenders.map((c) => c.close()));
    for (const c of [...clients, ...admins]) c.disconnect();
    await masters.stop();
  }
}
