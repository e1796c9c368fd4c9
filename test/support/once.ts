import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { type OnceHandler, type OnceOptions, withOnce } from '../../layers/oncely/src/index.js';
import { type OnceContext, onceMiddleware } from '../../layers/oncely/src/middy.js';
import type { Script } from '../../layers/oncely/src/scripts.js';
import type { CallResult, ScriptArg, ScriptCall, Store } from '../../layers/oncely/src/transport/types.js';

/** The two adapters over the one state machine: every adapter test runs through both. */
export type Adapter = 'wrapper' | 'middleware';
export const ADAPTERS: readonly { type: Adapter }[] = [{ type: 'wrapper' }, { type: 'middleware' }];

/** A Lambda handler built with `type`: withOnce(handler), or middy(handler).use(onceMiddleware()). */
export function wrap<E, R>(
  type: Adapter,
  handler: OnceHandler<E, R>,
  options: OnceOptions<E>,
): (event: E, context: Context) => Promise<R> {
  // Tests call both adapters with every policy; a 'skip' test expects undefined, which R then includes.
  if (type === 'wrapper') return withOnce(handler, options) as (event: E, context: Context) => Promise<R>;
  const m = middy<E, R, Error, OnceContext>(async (event: E, context: Context) =>
    handler(event, context, (context as OnceContext).oncely),
  ).use(onceMiddleware<E, R>(options));
  return (event, context) => m(event, context as OnceContext);
}

/** A Lambda context whose remaining time runs down on Date.now (fake timers move it). */
export function lambdaContext(remainingMs = 60_000): Context {
  const deadline = Date.now() + remainingMs;
  return {
    functionName: 'test-fn',
    awsRequestId: 'req',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  } as Context;
}

/** A promise with its resolve and reject. */
export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Wraps a Store and counts its requests: `run` and `runMany` each make one round trip. */
export class CountingStore implements Store {
  roundTrips = 0;
  readonly scripts: string[] = [];
  constructor(readonly inner: Store) {}
  get kind() {
    return this.inner.kind;
  }
  get name() {
    return this.inner.name;
  }
  run(script: Script, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> {
    this.roundTrips++;
    this.scripts.push(script.name);
    return this.inner.run(script, keys, args);
  }
  runMany(calls: readonly ScriptCall[]): Promise<CallResult[]> {
    this.roundTrips++;
    this.scripts.push(`[${calls.map((c) => c.script.name).join(',')}]`);
    return this.inner.runMany(calls);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Collects log lines as parsed JSON. */
export function logSink() {
  const lines: string[] = [];
  return {
    lines,
    logger: (line: string) => {
      lines.push(line);
    },
    parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    decisions: () => lines.map((l) => (JSON.parse(l) as { decision: string }).decision),
  };
}
