/**
 * The lease driver of a Redlock: extend, check and release run on every node, each bounded by the per-node
 * timeout, and are decided as soon as a quorum has answered (or can no longer answer) the same way.
 */
import { type NodeOutcome, quorumNotReached } from './errors.js';
import { count, gather, type NodeAnswer, type Parsed, parseTriState } from './fan-out.js';
import {
  type CheckOutcome,
  checkOutcome,
  type ExtendOutcome,
  extendOutcomeOf,
  type LeaseDriver,
  type ReleaseResult,
} from './lease.js';
import { EXTEND, LOCK_CHECK, RELEASE, type Script } from './scripts.js';
import type { ScriptArg, Store } from './transport/types.js';

/** What the driver needs of its Redlock. */
export interface QuorumNodes {
  readonly stores: readonly Store[];
  readonly quorum: number;
  readonly fenceGraceMs: number;
  /** Release and check do not know the lease's TTL: the configured node timeout, else the default's bound. */
  readonly releaseTimeoutMs: number;
  keyOf(key: string): string;
  fenceKeyOf(key: string): string;
  nodeTimeoutMs(ttlMs: number): number;
  outcomes(results: readonly (Parsed | undefined)[]): NodeOutcome[];
}

export function quorumDriver(q: QuorumNodes): LeaseDriver {
  const need = q.quorum;
  // gather()'s readers and tests, made once per Redlock (not per call).
  const reader = (operation: string) => (i: number, a: NodeAnswer) =>
    parseTriState(q.stores[i]!, operation, a);
  const owner: OwnerTests = {
    extend: reader('extend'),
    check: reader('check'),
    // Lost for sure once the nodes without our key leave fewer than a quorum that could still have it.
    lost: (r) => count(r, 'taken') + count(r, 'expired') > q.stores.length - need,
    decided: (r) => count(r, 'ok') >= need || owner.lost(r),
  };
  const parseRelease = reader('release');
  const answered = (r: readonly (Parsed | undefined)[]) =>
    r.length - count(r, undefined) - count(r, 'unreachable');
  // Once a quorum has answered the lock is free for others: do not wait for a frozen node (its request goes on
  // in the background, bounded by the node timeout; our key there expires with its TTL).
  const released = (r: readonly (Parsed | undefined)[]) => answered(r) >= need;
  return {
    extend: async (key, token, ttlMs): Promise<ExtendOutcome> =>
      extendOutcomeOf(
        await quorumOwner(
          q,
          owner,
          key,
          'extend',
          EXTEND,
          [q.keyOf(key), q.fenceKeyOf(key)],
          [token, ttlMs, ttlMs + q.fenceGraceMs],
          q.nodeTimeoutMs(ttlMs),
        ),
      ),
    check: async (key, token): Promise<CheckOutcome> =>
      checkOutcome(
        await quorumOwner(q, owner, key, 'check', LOCK_CHECK, [q.keyOf(key)], [token], q.releaseTimeoutMs),
      ),
    release: async (key, token): Promise<ReleaseResult> => {
      const results = await gather(
        q.stores,
        RELEASE,
        [q.keyOf(key), q.fenceKeyOf(key)],
        [token, q.fenceGraceMs],
        q.releaseTimeoutMs,
        parseRelease,
        released,
      ).decided;
      if (answered(results) < need) throw quorumNotReached(key, 'release', need, q.outcomes(results));
      const taken = count(results, 'taken');
      if (taken >= need) return 'not-held';
      if (count(results, 'ok') > 0) return 'released';
      return taken > 0 ? 'not-held' : 'expired';
    },
  };
}

/** An owner script's readers (per operation) and tests on a quorum's answers. */
interface OwnerTests {
  readonly extend: (i: number, a: NodeAnswer) => Parsed;
  readonly check: (i: number, a: NodeAnswer) => Parsed;
  readonly lost: (r: readonly (Parsed | undefined)[]) => boolean;
  readonly decided: (r: readonly (Parsed | undefined)[]) => boolean;
}

/**
 * Runs an owner script (1 ours, -1 another's, 0 gone) on every node: 'ours' once a quorum says so, 'theirs'
 * or 'gone' once a quorum can no longer say so. Unreachable nodes might still have our key, which is no proof
 * of loss: a QuorumError then (the lease stays valid until its deadline; the caller may try again).
 */
async function quorumOwner(
  q: QuorumNodes,
  tests: OwnerTests,
  key: string,
  operation: 'extend' | 'check',
  script: Script,
  keys: string[],
  args: ScriptArg[],
  timeoutMs: number,
): Promise<'ours' | 'theirs' | 'gone'> {
  const results = await gather(q.stores, script, keys, args, timeoutMs, tests[operation], tests.decided)
    .decided;
  if (count(results, 'ok') >= q.quorum) return 'ours';
  if (tests.lost(results)) return count(results, 'taken') > 0 ? 'theirs' : 'gone';
  throw quorumNotReached(key, operation, q.quorum, q.outcomes(results));
}
