/**
 * The options of withOnceBatch and oncePerTick, resolved and checked apart from the engine (their adapters,
 * batch.ts and per-tick.ts, build the engine from what these return): the index checks them when a handler is
 * created and loads the engine only then (once/lazy.ts).
 */
import type { ScheduledEvent, SQSRecord } from 'aws-lambda';
import { fnProblems, MAX_TTL_MS, oneOf, resolveOptions, wholeProblems, without } from '../validate.js';
import type { OnceBatchOptions } from './batch.js';
import { ONCE_FIELDS, type OnceOptions, TICK_ONCE_FIELDS } from './options.js';
import type { TickOptions } from './per-tick.js';

const DEFAULT_CONCURRENCY = 10;
const MAX_CONCURRENCY = 10_000;

/** Ticks older than this are skipped, by default (5 minutes). */
const DEFAULT_MAX_LAG_MS = 300_000;

/** withOnceBatch's options: its own (concurrency) and the engine's, or one ValidationError naming every problem. */
export function batchSetup(
  handler: unknown,
  options: OnceBatchOptions,
): { concurrency: number; engineOptions: OnceOptions<SQSRecord> } {
  const { concurrency, ...rest } = resolveOptions(
    options,
    { concurrency: DEFAULT_CONCURRENCY },
    (o) => [
      ...(typeof handler === 'function' ? [] : ['handler must be a function']),
      ...wholeProblems('concurrency', o.concurrency, 1, MAX_CONCURRENCY),
      ...oneOf('duplicate', o.duplicate, ['throw', 'skip']),
    ],
    'withOnceBatch options',
    without(ONCE_FIELDS, 'http', 'maxWaitMs', 'pollMs'),
  );
  return { concurrency, engineOptions: { ...rest, http: false } };
}

/** oncePerTick's options: its own (name, maxLagMs, tick) and the engine's, keyed by task name and tick. */
export function tickSetup(
  handler: unknown,
  options: TickOptions,
): {
  name: string | undefined;
  maxLagMs: number;
  tick: (event: ScheduledEvent) => number;
  engineOptions: OnceOptions<ScheduledEvent>;
} {
  const { name, maxLagMs, tick, ...rest } = resolveOptions(
    options,
    { maxLagMs: DEFAULT_MAX_LAG_MS, tick: (e: ScheduledEvent) => Date.parse(e.time) },
    (o) => [
      ...(typeof handler === 'function' ? [] : ['handler must be a function']),
      ...(o.name === undefined || (typeof o.name === 'string' && o.name.length > 0 && o.name.length <= 200)
        ? []
        : ['name must be 1 to 200 characters']),
      ...wholeProblems('maxLagMs', o.maxLagMs, 0, MAX_TTL_MS, 'ms'),
      ...fnProblems('tick', o.tick),
    ],
    'oncePerTick options',
    { ...TICK_ONCE_FIELDS, name: true },
  );
  const engineOptions: OnceOptions<ScheduledEvent> = {
    ...rest,
    namespace: 'leader',
    // Long enough that every replica still taking the tick as fresh finds it done (plus clock skew).
    retentionMs: maxLagMs + 60_000,
    duplicate: 'skip',
    payload: false,
    http: false,
    key: (event) => {
      const taskName = name ?? ruleName(event);
      const at = tick(event);
      return taskName && Number.isFinite(at) ? `${taskName}@${new Date(at).toISOString()}` : undefined;
    },
  };
  return { name, maxLagMs, tick, engineOptions };
}

/** The rule name in `arn:aws:events:<region>:<account>:rule/[<bus>/]<name>` (the same in every region). */
export function ruleName(event: ScheduledEvent): string | undefined {
  const arn = Array.isArray(event?.resources) ? event.resources[0] : undefined;
  if (typeof arn !== 'string') return undefined;
  const name = arn.split(':rule/')[1]?.split('/').pop();
  return name || undefined;
}
