/** redlock (v5 beta) on one ioredis client. */
import { Redis } from 'ioredis';
import Redlock from 'redlock';
import type { ColdConfig } from './types.js';

export async function firstLock(cfg: ColdConfig): Promise<void> {
  const redlock = new Redlock([new Redis({ host: cfg.host, port: cfg.port })], { retryCount: 0 });
  const lock = await redlock.acquire([cfg.key], 10_000);
  await lock.release();
}
