/** oncely over TCP (ioredis) through the package's root: `oncely` (every feature) and `oncely/ioredis`. */
import { createLock } from 'oncely';
import { redisStore } from 'oncely/ioredis';
import type { ColdConfig } from './types.js';

export async function firstLock(cfg: ColdConfig): Promise<void> {
  const lock = createLock(redisStore({ host: cfg.host, port: cfg.port }));
  const lease = await lock.tryAcquire(cfg.key, { ttlMs: 10_000 });
  if (!lease) throw new Error('not acquired');
  await lease.release();
}
