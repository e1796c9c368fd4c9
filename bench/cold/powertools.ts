/**
 * Powertools idempotency with its cache persistence layer on @redis/client: Powertools has no lock, so its
 * "first lock" is the first idempotent call (in-progress record, then the result).
 */
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { CachePersistenceLayer } from '@aws-lambda-powertools/idempotency/cache';
import { createClient } from '@redis/client';
import type { Context } from 'aws-lambda';
import type { ColdConfig } from './types.js';

export async function firstLock(cfg: ColdConfig): Promise<void> {
  const client = await createClient({ url: `redis://${cfg.host}:${cfg.port}` }).connect();
  const handler = makeIdempotent(async (event: { id: string }, _context: Context) => ({ done: event.id }), {
    persistenceStore: new CachePersistenceLayer({ client: client as never }),
    config: new IdempotencyConfig({}),
  });
  const context = { getRemainingTimeInMillis: () => 30_000, functionName: 'cold' } as unknown as Context;
  await handler({ id: cfg.key }, context);
}
