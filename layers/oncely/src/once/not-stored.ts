/**
 * The ResultNotStored marker and its test, apart from the record protocol (record.ts re-exports them): the
 * index exports isResultNotStored, and a function that imports it must not load the run-once engine.
 */
import type { NotStorableReason } from '../errors.js';

/**
 * What a duplicate gets when the first invocation's result was not stored (`unstorable: 'marker'`, the default):
 * the handler ran and is not run again, but its value could not be kept exactly. `detail` names the type and
 * where it sits (`$.createdAt is a Date`) or the size, never the value.
 */
export interface ResultNotStored {
  readonly oncely: 'result-not-stored';
  readonly reason: NotStorableReason;
  readonly detail?: string;
  readonly bytes?: number;
}

export function isResultNotStored(value: unknown): value is ResultNotStored {
  return (
    typeof value === 'object' && value !== null && (value as ResultNotStored).oncely === 'result-not-stored'
  );
}
