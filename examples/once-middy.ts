import middy from '@middy/core';
import type { SQSEvent } from 'aws-lambda';
import { fromEnv } from 'oncely';
import { onceMiddleware, onceOf } from 'oncely/middy';

const store = fromEnv();

// The same state machine as withOnce, as middy middleware: `before` claims (a duplicate answers early with the
// stored result), `after` stores the response, `onError` releases the record so the retry runs. Use it first,
// so its `after` stores what every other middleware produced. The handler is a plain Handler<SQSEvent, R>.
export const handler = middy<SQSEvent, { charged: string; fence: number }>()
  .use(onceMiddleware({ store, logLevel: 'warn' }))
  .handler(async (event, context) => {
    const { fence, signal } = onceOf(context); // as withOnce's third argument
    signal.throwIfAborted();
    return { charged: event.Records[0]?.messageId ?? '', fence };
  });
