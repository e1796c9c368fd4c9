/**
 * The middy middleware: the same state machine as withOnce(), in middy's before / after / onError.
 * `@middy/core` is only a type import here: the layer never loads it at run time.
 *
 *   export const handler = middy<SQSEvent, R>()
 *     .use(onceMiddleware({ store: fromEnv() }))
 *     .handler(async (event, context) => charge(event, onceOf(context).fence));
 *
 * The middleware's context type is Lambda's own `Context`, so the handler middy returns is a plain
 * `Handler<E, R>`, callable with the Context Lambda passes; the handler reads the run through onceOf(context).
 *
 * Use it first, so that its `after` (which runs last) stores the response every other middleware produced, and
 * a duplicate's stored response skips them all.
 */
import type { MiddlewareObj, Request } from '@middy/core';
import type { Context } from 'aws-lambda';
import { badConfig } from '../errors.js';
import { type Invocation, OnceEngine } from './engine.js';
import type { OnceOptions, OnceRun } from './options.js';
import type { Run } from './run.js';

/** The Lambda context as a middy handler sees it: `context.oncely` holds the signal, fence and key. */
export type OnceContext = Context & { oncely: OnceRun };

/** The run onceMiddleware started for this invocation (signal, fence, key); a ConfigError without it. */
export function onceOf(context: Context): OnceRun {
  const run = (context as Partial<OnceContext>).oncely;
  if (!run) throw badConfig(['onceOf(context): no run on this context: add .use(onceMiddleware(...)) first']);
  return run;
}

/**
 * Run-once as middy middleware. `before` claims (a duplicate answers early with the stored result, or the
 * duplicate policy), `after` completes with the response, `onError` releases the record so a retry can run
 * and lets the error through unchanged.
 */
export function onceMiddleware<E = unknown, R = unknown>(
  options: OnceOptions<E>,
): MiddlewareObj<E, R, Error, Context> {
  const engine = new OnceEngine<E>(options, 'onceMiddleware options');
  const runs = new WeakMap<object, Run>();
  const invocations = new WeakMap<object, Invocation>();

  const before = async (request: Request<E, R, Error, Context>) => {
    const invocation = engine.open(request.context);
    invocations.set(request, invocation);
    const begun = await engine.within(invocation, () => engine.begin(request.event, request.context));
    if (begun.kind === 'return') {
      // middy ends the chain on earlyResponse, even when it is undefined (a skipped duplicate)
      request.earlyResponse = begun.value as R;
      engine.close(invocation);
      return;
    }
    runs.set(request, begun.run);
    (request.context as OnceContext).oncely = begun.run.once;
  };

  const after = async (request: Request<E, R, Error, Context>) => {
    const run = runs.get(request);
    const invocation = invocations.get(request);
    if (!run || !invocation) return;
    try {
      request.response = (await engine.within(invocation, () => run.complete(request.response))) as R;
    } finally {
      engine.close(invocation);
    }
  };

  const onError = async (request: Request<E, R, Error, Context>) => {
    const run = runs.get(request);
    // Our own errors from complete() arrive here too: the run is settled by then and fail() does nothing.
    const invocation = invocations.get(request);
    if (!invocation) return;
    if (run) await engine.within(invocation, () => run.fail(request.error));
    engine.close(invocation); // also when begin() threw (in progress, mismatch, store down)
  };

  return { before, after, onError };
}
