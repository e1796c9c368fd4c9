/** What every Lua script is, and the one parser of the owner reply several of them give. */

export interface Script {
  readonly name: string;
  /** Number of KEYS the script takes. */
  readonly keys: number;
  readonly lua: string;
  readonly sha1: string;
  /**
   * True for a script whose write must reach a replica before it counts (acquire, extend, fence raise, leader
   * announcement, run-once claim and completion); `wrote(reply)` says whether this reply did write.
   */
  readonly grants?: { wrote(reply: unknown): boolean };
}

/** A `grants` test: the reply (or its first element) is one of `values`. */
export const firstIs =
  (...values: number[]) =>
  (reply: unknown): boolean =>
    values.includes(Number(Array.isArray(reply) ? reply[0] : reply));

/** What EXTEND, RELEASE, ONCE_EXTEND and ONCE_RELEASE reply: 1 ours (done), -1 another owner's, 0 gone. */
export type OwnerReply = 'ours' | 'theirs' | 'gone' | 'unexpected';

/** The one parser of the 1 / -1 / 0 reply. */
export function ownerReply(reply: unknown): OwnerReply {
  const r = Number(reply);
  return r === 1 ? 'ours' : r === -1 ? 'theirs' : r === 0 ? 'gone' : 'unexpected';
}
