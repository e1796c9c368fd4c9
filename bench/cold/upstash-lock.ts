/** @upstash/lock on an @upstash/redis client with its defaults. */
import { Lock } from '@upstash/lock';
import { Redis } from '@upstash/redis';
import type { ColdConfig } from './types.js';

export async function firstLock(cfg: ColdConfig): Promise<void> {
  const lock = new Lock({ id: cfg.key, redis: new Redis({ url: cfg.url, token: cfg.token }), lease: 10_000 });
  if (!(await lock.acquire())) throw new Error('not acquired');
  await lock.release();
}
