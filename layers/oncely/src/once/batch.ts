/**
 * withOnceBatch(): SQS batches. Every record is claimed in one round trip and completed in one (the engine's
 * many()); this adapter only runs the records, in order for FIFO queues.
 */
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { OnceEngine } from './engine.js';
import type { OnceOptions, OnceRun } from './options.js';
import { batchSetup } from './setup.js';

export interface OnceBatchOptions
  extends Omit<OnceOptions<SQSRecord>, 'duplicate' | 'http' | 'maxWaitMs' | 'pollMs'> {
  /**
   * A record whose key is in progress elsewhere: `'throw'` reports it in batchItemFailures (SQS redelivers it
   * later), `'skip'` acknowledges it.
   * @default 'throw'
   */
  duplicate?: 'throw' | 'skip';
  /**
   * Records run at once. FIFO queues always run one at a time, in order, and stop at the first failure.
   * @default 10
   */
  concurrency?: number;
}

export type OnceRecordHandler<R> = (record: SQSRecord, context: Context, once: OnceRun) => Promise<R> | R;

/**
 * Wraps an SQS record handler: every record of a batch is claimed in one round trip and completed in one;
 * claimed records run with bounded concurrency; returns `batchItemFailures` (enable ReportBatchItemFailures on
 * the event source mapping). Completed duplicates are acknowledged; records in progress elsewhere, failed or
 * mismatched are reported. The store unreachable at claim time fails the whole batch (or runs it all, with
 * failOpen).
 */
export function withOnceBatch<R = unknown>(
  handler: OnceRecordHandler<R>,
  options: OnceBatchOptions,
): (event: SQSEvent, context: Context) => Promise<SQSBatchResponse> {
  const { concurrency, engineOptions } = batchSetup(handler, options);
  const engine = new OnceEngine<SQSRecord>(engineOptions, 'withOnceBatch options');
  // One invocation: one metrics document for the whole batch, never one per record.
  return (event, context) =>
    engine.invoke(context, () => runBatch(engine, handler, event, context, concurrency));
}

async function runBatch<R>(
  engine: OnceEngine<SQSRecord>,
  handler: OnceRecordHandler<R>,
  event: SQSEvent,
  context: Context,
  concurrency: number,
): Promise<SQSBatchResponse> {
  const records = Array.isArray(event?.Records) ? event.Records : [];
  const done = await engine.many(records, context, async (items) => {
    // ok: acknowledged; fail: in batchItemFailures; pending: to run.
    const state: ('pending' | 'ok' | 'fail')[] = items.map((b) =>
      b.kind === 'run' ? 'pending' : b.kind === 'return' ? 'ok' : 'fail',
    );
    const results: unknown[] = [];
    const execute = async (n: number) => {
      const item = items[n];
      if (state[n] !== 'pending' || item?.kind !== 'run') return;
      try {
        results[n] = await handler(records[n] as SQSRecord, context, item.run.once);
        state[n] = 'ok';
      } catch {
        state[n] = 'fail';
      }
    };
    const order = records.map((_, n) => n);
    if (records.some((r) => r.eventSourceARN?.endsWith('.fifo'))) {
      const failed = (n: number) => state[n] === 'fail';
      for (const n of order) {
        if (failed(n)) break;
        await execute(n);
        if (failed(n)) break;
      }
      // FIFO: everything after the first failure is reported too (and released), to keep the group's order.
      const first = state.indexOf('fail');
      if (first >= 0) state.fill('fail', first);
    } else {
      await pool(order, concurrency, execute);
    }
    return state.map((s, n) =>
      s === 'ok' ? { ok: true, result: results[n] } : { ok: false, why: 'the handler failed or did not run' },
    );
  });
  return {
    batchItemFailures: records.filter((_, n) => !done[n]).map((r) => ({ itemIdentifier: r.messageId })),
  };
}

/** Runs `fn` over `items` with at most `limit` at a time. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
