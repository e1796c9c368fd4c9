import type { ScheduledEvent } from 'aws-lambda';
import { fromEnv, oncePerTick } from 'oncely';

const store = fromEnv();

// An EventBridge schedule runs the job once per tick (rule + scheduled time) across every copy that receives
// it: other regions, an overlapping deploy, EventBridge's own redelivery. The others return at once.
export const handler = oncePerTick(
  async (_event: ScheduledEvent, _context, { tick, fence }) => {
    return { report: `daily-${tick}`, fence }; // fence: the leader's term, for what the job writes
  },
  { store },
);
