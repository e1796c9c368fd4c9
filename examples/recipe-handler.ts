import type { SQSEvent } from 'aws-lambda';
import { fromEnv, withOnce } from 'oncely';

// Module scope: one store per cold start, reused by warm invocations (REST or TCP, from the environment).
const store = fromEnv();

// Each message runs once, however often SQS delivers it: the key is the message id ('sqs'). A duplicate after
// completion gets the first result; one that arrives while the first runs throws, and SQS retries it later.
export const handler = withOnce(
  async (event: SQSEvent, _context, { fence, signal }) => {
    const order = JSON.parse(event.Records[0]?.body ?? '{}') as { id?: string };
    signal.throwIfAborted(); // the lease was lost: stop before writing
    return { charged: order.id, fence }; // pass `fence` to what you write, so a stale writer is refused
  },
  { store, key: 'sqs' },
);
