/** withOnce(): the function wrapper, the thinnest adapter over the engine. */
import type { Context, Handler } from 'aws-lambda';
import { invalid } from '../errors.js';
import { OnceEngine } from './engine.js';
import type { DuplicatePolicy, DuplicateValue, OnceHandler, OnceOptions, Unstorable } from './options.js';

/** The options a wrapped handler's type depends on, as literal types (inferred from the options given). */
type Typed<E, D, U, H> = OnceOptions<E> & { duplicate?: D; unstorable?: U; http?: H };

/**
 * What withOnce takes as the handler: its own kind (`once` third), or an existing Lambda `Handler<E, R>`
 * (aws-lambda's type, the usual migration move), which must return its result or a promise of it: its third
 * argument is `once` ({ signal, fence, key }), never the legacy callback.
 */
interface Handlers<E, R> {
  once: OnceHandler<E, R>;
  lambda: Handler<E, R>;
}

/**
 * withOnce for one kind of handler. Two signatures rather than one taking either kind: a union of the two
 * would leave an inline handler's parameters untyped (they differ in the third).
 */
type WithOnce<K extends keyof Handlers<unknown, unknown>> = <
  E = unknown,
  R = unknown,
  D extends DuplicatePolicy = 'throw',
  U extends Unstorable = 'marker',
  H extends 'auto' | false = 'auto',
>(
  handler: Handlers<E, R>[K],
  options: Typed<E, D, U, H>,
) => (event: E, context: Context) => Promise<R | DuplicateValue<E, D, U, H>>;

/**
 * Wraps a Lambda handler so each event runs it once: duplicates get the first invocation's result, concurrent
 * duplicates the `duplicate` policy. The handler gets `{ signal, fence, key }` as its third argument; an
 * existing `Handler<E, R>` is taken as it is (see Handlers). The wrapped handler's type says what a duplicate
 * can get besides R (see DuplicateValue).
 *
 * @example
 * export const handler = withOnce(async (event: SQSEvent, _context, { fence }) => charge(event, fence), {
 *   store: fromEnv(),
 * });
 */
export const withOnce = (<E, R>(handler: OnceHandler<E, R>, options: OnceOptions<E>) => {
  if (typeof handler !== 'function') throw invalid(['handler must be a function'], 'withOnce');
  const engine = new OnceEngine<E>(options);
  return (event: E, context: Context) =>
    engine.invoke(context, () => engine.one(event, context, (once) => handler(event, context, once)));
}) as WithOnce<'once'> & WithOnce<'lambda'>;
