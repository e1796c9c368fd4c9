/** withOnce(): the function wrapper, the thinnest adapter over the engine. */
import type { Context } from 'aws-lambda';
import { ValidationError } from '../errors.js';
import { OnceEngine } from './engine.js';
import type { OnceHandler, OnceOptions } from './options.js';

/**
 * Wraps a Lambda handler so each event runs it once: duplicates get the first invocation's result, concurrent
 * duplicates the `duplicate` policy. The handler gets `{ signal, fence, key }` as its third argument.
 *
 * @example
 * export const handler = withOnce(async (event: SQSEvent, _context, { fence }) => charge(event, fence), {
 *   store: fromEnv(),
 * });
 */
export function withOnce<E = unknown, R = unknown>(
  handler: OnceHandler<E, R>,
  options: OnceOptions<E> & { duplicate?: 'throw' | 'wait' },
): (event: E, context: Context) => Promise<R>;
/** With `duplicate: 'skip'` a duplicate in progress resolves to undefined, and the type says so. */
export function withOnce<E = unknown, R = unknown>(
  handler: OnceHandler<E, R>,
  options: OnceOptions<E>,
): (event: E, context: Context) => Promise<R | undefined>;
export function withOnce<E = unknown, R = unknown>(
  handler: OnceHandler<E, R>,
  options: OnceOptions<E>,
): (event: E, context: Context) => Promise<R | undefined> {
  if (typeof handler !== 'function') throw new ValidationError(['handler must be a function'], 'withOnce');
  const engine = new OnceEngine<E>(options);
  return (event: E, context: Context) => runOnce(engine, handler, event, context);
}

/** Runs one invocation through the state machine: begin, the handler, then complete or fail. */
export async function runOnce<E, R>(
  engine: OnceEngine<E>,
  handler: OnceHandler<E, R>,
  event: E,
  context: Context,
): Promise<R> {
  const begun = await engine.begin(event, context);
  if (begun.kind === 'return') return begun.value as R;
  const { run } = begun;
  let result: R;
  try {
    result = await handler(event, context, run.once);
  } catch (err) {
    await run.fail(err);
    throw err;
  }
  return (await run.complete(result)) as R;
}
