/** oncePerTick(): the engine, a tick's key, a stale-tick check. Leader election is elect() (leader.ts). */
import type { Context, ScheduledEvent } from 'aws-lambda';
import { OnceEngine } from './engine.js';
import type { OnceOptions, OnceRun } from './options.js';
import type { ResultNotStored } from './record.js';
import { ruleName, tickSetup } from './setup.js';

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
  const { name, maxLagMs, tick, engineOptions } = tickSetup(handler, options);
  const engine = new OnceEngine<ScheduledEvent>(engineOptions, 'oncePerTick options');
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
