/** oncely over REST through the package's root: `oncely` from the built layer (external) loads every feature. */
import { createLock, upstashStore } from 'oncely';
import type { ColdConfig } from './types.js';

export async function firstLock(cfg: ColdConfig): Promise<void> {
  const lock = createLock(upstashStore({ url: cfg.url, token: cfg.token }));
  const lease = await lock.tryAcquire(cfg.key, { ttlMs: 10_000 });
  if (!lease) throw new Error('not acquired');
  await lease.release();
}
