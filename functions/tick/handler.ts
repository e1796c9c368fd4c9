/**
 * tick: an EventBridge schedule (`rate(1 minute)`) wrapped in oncePerTick, so the job runs once per tick no
 * matter how many copies of the function receive it: several regions or stages with the same rule name, a
 * redeployment overlapping the old version, or EventBridge's own at-least-once delivery.
 *
 * The tick is the rule's name plus the scheduled time (`event.time`), not the event id: replicas get different
 * event ids for the same tick. The handler gets the fencing token to pass to whatever it writes, and the task
 * key (`<rule>@<tick>`).
 */
import type { Context, ScheduledEvent } from 'aws-lambda';
import { fromEnvAsync, oncePerTick } from 'oncely';
import { recordEffect } from '../shared/effects.js';

// Module scope, once per cold start: fromEnvAsync reads the SSM parameters *_SSM_PARAMETER variables name.
const store = await fromEnvAsync();

export const handler = oncePerTick(
  async (_event: ScheduledEvent, _context: Context, { key, tick, fence }) => {
    // The scheduled job: here, one recorded execution per task and tick (a report, a sweep, a sync ...).
    const runs = await recordEffect(store, 'tick', key ?? tick);
    return { task: key, tick, fence, runs };
  },
  { store },
);
