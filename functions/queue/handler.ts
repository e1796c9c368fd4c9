/**
 * queue: an SQS consumer. withOnceBatch claims every record of the batch in one round trip, runs the new ones
 * (10 at a time) and completes them in one more, and returns `batchItemFailures` so SQS redelivers only what
 * failed (the event source mapping sets ReportBatchItemFailures).
 *
 * Keyed on the order id inside the message body, not the SQS messageId: a producer that sends the same order
 * twice makes two messages with two messageIds, and both must not be processed. A record whose order is being
 * processed by another consumer right now is reported as failed, so SQS brings it back later, when it is done.
 */
import { fromEnvAsync, withOnceBatch } from 'oncely';
import { recordEffect } from '../shared/effects.js';

// Module scope, once per cold start: fromEnvAsync reads the SSM parameters *_SSM_PARAMETER variables name.
const store = await fromEnvAsync();

interface Order {
  readonly id: string;
  readonly amount: number;
  /** Demo only: a message that always fails (a poison message, which ends in the dead-letter queue). */
  readonly fail?: boolean;
}

export const handler = withOnceBatch(
  async (record, _context, { fence }) => {
    const order = JSON.parse(record.body) as Order;
    if (order.fail) throw new Error(`order ${order.id} cannot be processed`);
    await recordEffect(store, 'queue', order.id);
    return { order: order.id, fence };
  },
  { store, key: { jmespath: 'powertools_json(body).id' } },
);
