/** oncely over TCP (ioredis), as a function using the layer: `oncely` is the built layer (external). */
import { createLock, fromEnv } from 'oncely';
import type { ColdConfig } from './types.js';

export async function firstLock(cfg: ColdConfig): Promise<void> {
  // fromEnv, as the functions build their store: the root entry loads ioredis on the first TCP call.
  const lock = createLock(fromEnv({ ONCELY_REDIS_URL: `redis://${cfg.host}:${cfg.port}` }));
  const lease = await lock.tryAcquire(cfg.key, { ttlMs: 10_000 });
  if (!lease) throw new Error('not acquired');
  await lease.release();
}
