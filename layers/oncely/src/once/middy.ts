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
import { OnceEngine } from './engine.js';
import type { OnceOptions, OnceRun } from './options.js';

/** The Lambda context as a middy handler sees it: `context.oncely` holds the signal, fence and key. */
export type OnceContext = Context & { oncely: OnceRun };

/** The run onceMiddleware started for this invocation (signal, fence, key); a ConfigError without it. */
export function onceOf(context: Context): OnceRun {
  const run = (context as Partial<OnceContext>).oncely;
  if (!run) throw badConfig(['onceOf(context): no run on this context: add .use(onceMiddleware(...)) first']);
  return run;
}

/** An invocation whose handler runs: `end` hands the engine how middy's chain ended; `done` is the engine's answer. */
interface Running<R> {
  end: { resolve: (response: R) => void; reject: (error: unknown) => void };
  done: Promise<R>;
}

/**
 * Run-once as middy middleware, over the engine's one(): `before` starts it, and it claims (a duplicate answers
 * early with the stored result, or the duplicate policy); middy's handler runs as the record's handler, ended
 * by `after` (the record is completed with the response) or `onError` (released so a retry can run; the error
 * goes through unchanged).
 */
export function onceMiddleware<E = unknown, R = unknown>(
  options: OnceOptions<E>,
): MiddlewareObj<E, R, Error, Context> {
  const engine = new OnceEngine<E>(options, 'onceMiddleware options');
  const running = new WeakMap<object, Running<R>>();

  const before = async (request: Request<E, R, Error, Context>) => {
    let end!: Running<R>['end'];
    let started!: () => void;
    const handing = new Promise<void>((resolve) => (started = resolve));
    const done = engine.invoke(request.context, () =>
      engine.one(request.event, request.context, (once) => {
        (request.context as OnceContext).oncely = once;
        started();
        return new Promise<R>((resolve, reject) => (end = { resolve, reject }));
      }),
    );
    // The engine either hands the record to middy's handler, or answers (or throws) without it.
    const answered = await Promise.race([handing.then(() => false), done.then(() => true)]);
    if (answered) {
      // middy ends the chain on earlyResponse, even when it is undefined (a skipped duplicate)
      request.earlyResponse = await done;
      return;
    }
    running.set(request, { end, done });
  };

  const after = async (request: Request<E, R, Error, Context>) => {
    const r = running.get(request);
    if (!r) return;
    running.delete(request); // an error from here on (the record lost) goes through onError untouched
    r.end.resolve(request.response as R);
    request.response = await r.done;
  };

  const onError = async (request: Request<E, R, Error, Context>) => {
    const r = running.get(request);
    if (!r) return; // begin threw (in progress, mismatch, store down), or after's completion did
    running.delete(request);
    r.end.reject(request.error);
    await r.done.catch(() => undefined); // the handler's error, rethrown by the engine: middy has it already
  };

  return { before, after, onError };
}
