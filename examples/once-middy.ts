import middy from '@middy/core';
import type { SQSEvent } from 'aws-lambda';
import { fromEnv } from 'oncely';
import { type OnceContext, onceMiddleware } from 'oncely/middy';

const store = fromEnv();

// The same state machine as withOnce, as middy middleware: `before` claims (a duplicate answers early with the
// stored result), `after` stores the response, `onError` releases the record so the retry runs. Use it first,
// so its `after` stores what every other middleware produced.
export const handler = middy<SQSEvent, { charged: string; fence: number }, Error, OnceContext>(
  async (event: SQSEvent, context: OnceContext) => {
    const { fence, signal } = context.oncely; // as withOnce's third argument
    signal.throwIfAborted();
    return { charged: event.Records[0]?.messageId ?? '', fence };
  },
).use(onceMiddleware({ store, logLevel: 'warn' }));
