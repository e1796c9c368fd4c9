/** ioredis alone: the size reference for the TCP path (SET NX PX, then DEL). */
import { Redis } from 'ioredis';
import type { ColdConfig } from './types.js';

export async function firstLock(cfg: ColdConfig): Promise<void> {
  const redis = new Redis({ host: cfg.host, port: cfg.port });
  if ((await redis.set(cfg.key, 'token', 'PX', 10_000, 'NX')) !== 'OK') throw new Error('not acquired');
  await redis.del(cfg.key);
}
