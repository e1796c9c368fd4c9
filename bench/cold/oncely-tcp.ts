/**
 * oncely over TCP (ioredis), as a function that only takes locks: `oncely/locks` and `oncely/ioredis` from the
 * built layer (external). The whole index: bench/cold/oncely-tcp-index.ts.
 */
import { redisStore } from 'oncely/ioredis';
import { createLock } from 'oncely/locks';
import type { ColdConfig } from './types.js';

export async function firstLock(cfg: ColdConfig): Promise<void> {
  const lock = createLock(redisStore({ host: cfg.host, port: cfg.port }));
  const lease = await lock.tryAcquire(cfg.key, { ttlMs: 10_000 });
  if (!lease) throw new Error('not acquired');
  await lease.release();
}
