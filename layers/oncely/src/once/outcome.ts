/**
 * What a claim reply means: the one place that decides. Pure: no store, no clock, no log; the engine acts on
 * the outcome (runs the handler, answers, waits, throws) and emits its decision.
 */
import { InProgressError, PayloadMismatchError, StoreUnavailableError } from '../errors.js';
import { type Decision, shortKey } from './decisions.js';
import { replayed } from './http.js';
import type { DuplicatePolicy } from './options.js';
import { type ClaimReply, isResultNotStored } from './record.js';

/** Everything besides the reply that the meaning of a claim depends on. */
export interface ClaimPolicy {
  /** The engine's run-once namespace, which every decision names. */
  readonly namespace: string;
  readonly key: string;
  readonly duplicate: DuplicatePolicy;
  readonly failOpen: boolean;
  /** The lease the claim asked for. */
  readonly ttlMs: number;
  /** The claim's reply came back after the lease it took had already run out. */
  readonly late: boolean;
  /** An HTTP event: a stored answer is replayed as such. */
  readonly http: boolean;
  /** The store's name, for messages. */
  readonly store: string;
  /** `duplicate: 'wait'`: how long this invocation has waited so far, and may still wait. */
  readonly waitedMs: number;
  readonly waitLeftMs: number;
  readonly pollMs: number;
}

export type Outcome =
  /** Run the handler on the claimed record. */
  | { kind: 'run'; fence: number; decision: Decision }
  /** Run the handler without a record (failOpen, store unreachable). */
  | { kind: 'run-unfenced'; decision: Decision }
  /** Answer with `value` without running the handler. */
  | { kind: 'return'; value: unknown; decision: Decision }
  /** Claim again after `afterMs` (`duplicate: 'wait'`). */
  | { kind: 'wait'; afterMs: number }
  /** Do not run; `giveBack`: the record is ours and must be released first. */
  | { kind: 'throw'; error: unknown; decision: Decision; giveBack: boolean };

export function outcomeOf(reply: ClaimReply, policy: ClaimPolicy): Outcome {
  const { key, namespace } = policy;
  switch (reply.kind) {
    case 'claimed': {
      if (!policy.late) {
        const decision = {
          namespace,
          decision: 'claimed',
          key,
          fence: reply.fence,
          ttlMs: policy.ttlMs,
        } as const;
        return { kind: 'run', fence: reply.fence, decision };
      }
      const error = new StoreUnavailableError(
        `${policy.store}: the claim's reply came after its lease ended`,
        {
          store: policy.store,
          ambiguous: false,
        },
      );
      return { kind: 'throw', error, decision: storeError(policy, error), giveBack: true };
    }
    case 'completed': {
      const waited = policy.waitedMs > 0 && policy.duplicate === 'wait';
      return {
        kind: 'return',
        value: policy.http ? replayed(reply.value) : reply.value,
        decision: {
          namespace,
          decision: 'duplicate-returned',
          key,
          ...(waited ? { waitedMs: policy.waitedMs } : {}),
          ...(isResultNotStored(reply.value) ? { reason: `result not stored (${reply.value.reason})` } : {}),
        },
      };
    }
    case 'mismatch': {
      const error = new PayloadMismatchError(`"${shortKey(key)}" was already used with a different payload`, {
        key,
      });
      return { kind: 'throw', error, decision: { namespace, decision: 'mismatch', key }, giveBack: false };
    }
    case 'in-progress': {
      const { retryAfterMs } = reply;
      if (policy.duplicate === 'skip')
        return {
          kind: 'return',
          value: undefined,
          decision: { namespace, decision: 'skipped', key, retryAfterMs },
        };
      if (policy.duplicate === 'wait' && policy.waitLeftMs > 0) {
        const afterMs = Math.max(
          1,
          Math.min(policy.pollMs, retryAfterMs || policy.pollMs, policy.waitLeftMs),
        );
        return { kind: 'wait', afterMs };
      }
      const error = new InProgressError(
        `"${shortKey(key)}" is in progress in another invocation (lease ends in ${retryAfterMs} ms)`,
        { key, retryAfterMs },
      );
      return {
        kind: 'throw',
        error,
        decision: { namespace, decision: 'in-progress', key, retryAfterMs },
        giveBack: false,
      };
    }
    case 'failed': {
      const { error } = reply;
      if (policy.failOpen && error instanceof StoreUnavailableError)
        return {
          kind: 'run-unfenced',
          decision: { namespace, decision: 'fail-open', key, reason: error.message },
        };
      return { kind: 'throw', error, decision: storeError(policy, error), giveBack: false };
    }
  }
}

function storeError({ namespace, key }: ClaimPolicy, error: unknown): Decision {
  const reason = (error as Error | undefined)?.message ?? 'no reply';
  return { namespace, decision: 'store-error', key, reason };
}
