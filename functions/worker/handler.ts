/**
 * worker: processes one work item per invocation, invoked asynchronously by dispatch. Asynchronous invokes
 * arrive at least once (dispatch resends on timeouts, Lambda retries failed async invocations, and the same
 * item can be in a batch twice), so the work is wrapped in withOnce keyed on the item's id: each item is
 * processed once, however many times it is delivered.
 *
 * A duplicate that arrives while the first is still running waits for its result (`duplicate: 'wait'`),
 * rather than failing and being retried by Lambda a minute later.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fromEnvAsync, withOnce } from 'oncely';
import { recordEffect } from '../shared/effects.js';
import type { WorkItem } from '../shared/work-item.js';

// Module scope, once per cold start: fromEnvAsync reads the SSM parameters *_SSM_PARAMETER variables name.
const store = await fromEnvAsync();

/** Stands in for the real work on an item. */
const WORK_MS = 100;

export const handler = withOnce(
  async (item: WorkItem, _context, { fence, signal }) => {
    await recordEffect(store, 'worker', item.id);
    await sleep(WORK_MS, undefined, { signal });
    return { id: item.id, fence, processedAt: new Date().toISOString() };
  },
  { store, key: (item) => item.id, duplicate: 'wait' },
);
