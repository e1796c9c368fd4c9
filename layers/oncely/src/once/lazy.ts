/**
 * withOnce, withOnceBatch and oncePerTick as the index exports them: each checks its handler and options when
 * it is called (the same ValidationError, thrown at once, as the adapter itself throws) and starts loading the
 * run-once engine then (in Lambda: in the init phase, for a handler made at module scope), so a function that
 * imports `oncely` for its locks never loads the engine. Calls made before the engine has loaded wait for it;
 * after that, a call goes straight to the adapter's handler. The adapters are with-once.ts, batch.ts and
 * per-tick.ts; `oncely/middy` and the package's tests reach them directly.
 */
import type { Context } from 'aws-lambda';
import { invalid } from '../errors.js';
import type { withOnceBatch as WithOnceBatch } from './batch.js';
import { resolveOnceOptions } from './options.js';
import type { oncePerTick as OncePerTick } from './per-tick.js';
import { batchSetup, tickSetup } from './setup.js';
import type { withOnce as WithOnce } from './with-once.js';

type Handler = (event: unknown, context: Context) => Promise<unknown>;

/** The handler that `made` resolves to, callable now: calls wait for it until it is there. */
function whenLoaded(made: Promise<Handler>): Handler {
  let ready: Handler | undefined;
  made.then(
    (handler) => {
      ready = handler;
    },
    () => undefined, // each call reports it
  );
  return (event, context) => (ready ? ready(event, context) : made.then((h) => h(event, context)));
}

export const withOnce = ((handler: unknown, options: Parameters<typeof WithOnce>[1]) => {
  if (typeof handler !== 'function') throw invalid(['handler must be a function'], 'withOnce');
  resolveOnceOptions(options, 'withOnce options');
  return whenLoaded(import('./with-once.js').then((m) => m.withOnce(handler as never, options) as Handler));
}) as typeof WithOnce;

export const withOnceBatch = ((handler: unknown, options: Parameters<typeof WithOnceBatch>[1]) => {
  resolveOnceOptions(batchSetup(handler, options).engineOptions, 'withOnceBatch options');
  return whenLoaded(import('./batch.js').then((m) => m.withOnceBatch(handler as never, options) as Handler));
}) as typeof WithOnceBatch;

export const oncePerTick = ((handler: unknown, options: Parameters<typeof OncePerTick>[1]) => {
  resolveOnceOptions(tickSetup(handler, options).engineOptions, 'oncePerTick options');
  return whenLoaded(import('./per-tick.js').then((m) => m.oncePerTick(handler as never, options) as Handler));
}) as typeof OncePerTick;
