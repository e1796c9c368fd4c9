/**
 * What every fenced write (oncely/effects/*) checks before it touches the resource: the fence is a lock's,
 * a run-once claim's or a leader term's, a whole number from 1 up. A handler that ran without a record
 * (ONCELY_DISABLED, failOpen, missingKey: 'run') has fence 0: it has nothing to fence with, and its write is
 * refused here, loudly, rather than let through unfenced.
 */
import { wholeProblems } from '../validate.js';

/** The problems with a fence (empty when it is usable). */
export function fenceProblems(fence: unknown): string[] {
  if (fence === 0)
    return ['fence is 0: the handler ran without a record (failOpen, missingKey "run" or ONCELY_DISABLED)'];
  return wholeProblems('fence', fence, 1, Number.MAX_SAFE_INTEGER);
}
