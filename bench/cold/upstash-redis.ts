/** @upstash/redis alone: the size reference for the REST path (SET NX PX, then DEL). */
import { Redis } from '@upstash/redis';
import type { ColdConfig } from './types.js';

export async function firstLock(cfg: ColdConfig): Promise<void> {
  const redis = new Redis({ url: cfg.url, token: cfg.token });
  if ((await redis.set(cfg.key, 'token', { nx: true, px: 10_000 })) !== 'OK') throw new Error('not acquired');
  await redis.del(cfg.key);
}
