import middy from '@middy/core';
import type { Context, Handler, SQSEvent, SQSHandler } from 'aws-lambda';
import { describe, expectTypeOf, it } from 'vitest';
import { handler as readmeHandler } from '../../examples/once-middy.js';
import { fromEnv, type OnceRun } from '../../layers/oncely/src/index.js';
import { onceMiddleware, onceOf } from '../../layers/oncely/src/middy.js';

// Type tests, checked by tsc alone (as once-types.test-d.ts): the README's middy pattern (examples/once-middy.ts)
// gives a handler Lambda's own types accept, called with the Context Lambda passes (issue 24, item 5).
describe('the middy pattern', () => {
  it("is a Handler<SQSEvent, unknown> and an SQSHandler's shape, callable with a plain Context", () => {
    const asHandler: Handler<SQSEvent, unknown> = readmeHandler;
    expectTypeOf(readmeHandler).toBeCallableWith({ Records: [] }, {} as Context);
    expectTypeOf(readmeHandler).parameter(1).toEqualTypeOf<Context>();
    expectTypeOf(asHandler).toBeFunction();
  });

  it('onceOf(context) gives the run: fence, signal, key', () => {
    expectTypeOf(onceOf).parameter(0).toEqualTypeOf<Context>();
    expectTypeOf(onceOf({} as Context)).toEqualTypeOf<OnceRun>();
    expectTypeOf(onceOf({} as Context).fence).toEqualTypeOf<number>();
  });

  it('a handler of its own event and result, assigned to the standard types', () => {
    const store = fromEnv({});
    const sqs: SQSHandler = middy<SQSEvent>()
      .use(onceMiddleware({ store }))
      .handler(async (_event, context) => {
        void onceOf(context).fence;
      });
    expectTypeOf(sqs).toBeFunction();
  });
});
