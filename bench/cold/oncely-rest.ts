/**
 * oncely over REST, as a function that only takes locks: `oncely/locks` from the built layer (external), the
 * entry point for that (the whole index is bench/cold/oncely-rest-index.ts).
 */
import { createLock, upstashStore } from 'oncely/locks';
import type { ColdConfig } from './types.js';

export async function firstLock(cfg: ColdConfig): Promise<void> {
  const lock = createLock(upstashStore({ url: cfg.url, token: cfg.token }));
  const lease = await lock.tryAcquire(cfg.key, { ttlMs: 10_000 });
  if (!lease) throw new Error('not acquired');
  await lease.release();
}
