/** oncePerTick(): the engine, a tick's key, a stale-tick check. Leader election is elect() (leader.ts). */
import type { Context, ScheduledEvent } from 'aws-lambda';
import { fnProblems, MAX_TTL_MS, resolveOptions, wholeProblems } from '../validate.js';
import { OnceEngine } from './engine.js';
import { type OnceOptions, type OnceRun, TICK_ONCE_FIELDS } from './options.js';
import type { ResultNotStored } from './record.js';

/** Ticks older than this are skipped, by default (5 minutes). */
const DEFAULT_MAX_LAG_MS = 300_000;

/** The withOnce options oncePerTick sets itself, and those that mean nothing for a tick. */
type SetByTick = 'namespace' | 'key' | 'payload' | 'missingKey' | 'duplicate' | 'http';
type NotForTicks = 'retentionMs' | 'pollMs' | 'maxWaitMs' | 'localCache' | 'completeFailure';

export interface TickOptions extends Omit<OnceOptions<ScheduledEvent>, SetByTick | NotForTicks> {
  /**
   * The task's name, shared by every replica that must not run the same tick twice (set it when stages or
   * regions name their rules differently).
   * @default the schedule rule's name (the last part of the event's resources[0] ARN)
   */
  name?: string;
  /**
   * Ticks older than this are skipped (and logged as stale-tick): a late retry must not run yesterday's job.
   * @default 300_000 (5 minutes)
   */
  maxLagMs?: number;
  /**
   * The tick a event stands for, in ms since the epoch.
   * @default Date.parse(event.time) (an EventBridge schedule's scheduled time)
   */
  tick?: (event: ScheduledEvent) => number;
}

export interface TickRun extends OnceRun {
  /** The tick this run is for (ISO 8601). */
  readonly tick: string;
}

/**
 * Runs a scheduled handler once per schedule tick (task name + tick time) across every replica, stage and
 * region that shares the store. Other replicas skip the tick (undefined, or the stored result when it is
 * done: a ResultNotStored marker when it could not be stored exactly); ticks older than maxLagMs are skipped.
 * The handler gets the fence.
 */
export function oncePerTick<R = unknown>(
  handler: (event: ScheduledEvent, context: Context, run: TickRun) => Promise<R> | R,
  options: TickOptions,
): (event: ScheduledEvent, context: Context) => Promise<R | ResultNotStored | undefined> {
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
  const engine = new OnceEngine<ScheduledEvent>(
    {
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
    },
    'oncePerTick options',
  );
  return (event, context) =>
    engine.invoke(context, async () => {
      const at = Number(tick(event));
      const lagMs = Number.isFinite(at) ? Math.round(engine.options.wallClock() - at) : 0;
      if (lagMs > maxLagMs) {
        engine.decide({
          namespace: engine.options.namespace,
          decision: 'stale-tick',
          key: `${name ?? ruleName(event) ?? '?'}@${new Date(at).toISOString()}`,
          reason: `tick is ${lagMs} ms old, maxLagMs is ${maxLagMs}`,
        });
        return undefined;
      }
      const run = (once: OnceRun) => handler(event, context, { ...once, tick: new Date(at).toISOString() });
      return engine.one(event, context, run) as Promise<R | ResultNotStored | undefined>;
    });
}

/** The rule name in `arn:aws:events:<region>:<account>:rule/[<bus>/]<name>` (the same in every region). */
function ruleName(event: ScheduledEvent): string | undefined {
  const arn = Array.isArray(event?.resources) ? event.resources[0] : undefined;
  if (typeof arn !== 'string') return undefined;
  const name = arn.split(':rule/')[1]?.split('/').pop();
  return name || undefined;
}
