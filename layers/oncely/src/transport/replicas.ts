/**
 * The replica wait: a write that grants (scripts marked `grants` in scripts.ts) counts only once enough
 * replicas have acknowledged it. Lua cannot call WAIT, so the TCP transports send `WAIT n timeoutMs` after
 * the script on the same connection (in the same round trip unless a WAIT is out already: tcp-replicas.ts WaitLine). Redisson's `syncSlaves` is the model.
 *
 * - A master that has been demoted (a frozen master that woke up after its replica was promoted) has no
 *   replica left to acknowledge: its grants fail with ReplicationError instead of counting.
 * - A grant acknowledged by a replica survives the failover that promotes that replica.
 *
 * The default, `'auto'`, waits for one replica wherever the shard has one (a cluster's slot map; a standalone
 * server's INFO replication), and for none where it has none. See README "Replicas and failover".
 */
import { ReplicationError } from '../errors.js';
import type { Script } from '../scripts.js';
import { check, isWhole } from '../validate.js';

/** The most replicas a grant may be asked to wait for. */
export const MAX_REPLICAS = 16;

export interface ReplicaOptions {
  /**
   * Replicas that must acknowledge a granting write (acquire, extend, fence raise, leader announcement, run-once
   * claim and completion) within `replicaTimeoutMs` before it counts. `'auto'`: one where the shard has
   * replicas, none where it has none. `0` turns the wait off. A number above the replicas a shard has makes
   * every grant on it fail.
   * @default 'auto'
   */
  replicas?: number | 'auto';
  /**
   * How long the server waits for the acknowledgements (WAIT's timeout). Part of the call's `timeoutMs`. A
   * healthy replica acknowledges in well under a millisecond; the bound is for a replica that is not scheduled
   * (a loaded host: up to 350 ms measured) or has just finished a full resync (up to about a second), and is
   * what a grant costs when no replica acknowledges it.
   * @default 1000, at most half of timeoutMs (Redisson's `slavesSyncTimeout` is also 1000 ms)
   */
  replicaTimeoutMs?: number;
}

export interface ReplicaWait {
  readonly replicas: number | 'auto';
  readonly timeoutMs: number;
}

/** 1000 ms, at most half of the call's `timeoutMs` (the rest is for the round trip). */
export function defaultReplicaTimeoutMs(callTimeoutMs: number): number {
  return Math.max(1, Math.min(1000, Math.floor(callTimeoutMs / 2)));
}

/** What is wrong with the replica options (none: empty), for a store's option check. */
export function replicaProblems(options: ReplicaOptions, callTimeoutMs: number): string[] {
  const problems: string[] = [];
  const { replicas = 'auto', replicaTimeoutMs } = options;
  if (replicas !== 'auto' && !isWhole(replicas, 0, MAX_REPLICAS))
    problems.push(
      `replicas must be 'auto' or a whole number from 0 to ${MAX_REPLICAS}, got ${String(replicas)}`,
    );
  if (replicaTimeoutMs !== undefined && !isWhole(replicaTimeoutMs, 1, callTimeoutMs - 1))
    problems.push(
      `replicaTimeoutMs must be a whole number of milliseconds from 1 to timeoutMs − 1 (${callTimeoutMs - 1}), got ${String(replicaTimeoutMs)}`,
    );
  return problems;
}

/** The replica wait of a store whose calls take at most `callTimeoutMs`; a ValidationError if it is wrong. */
export function replicaWaitOf(options: ReplicaOptions, callTimeoutMs: number): ReplicaWait {
  check(replicaProblems(options, callTimeoutMs), 'replica options');
  return replicaWait(options, callTimeoutMs);
}

/** The replica wait of options already checked (replicaProblems), with its defaults. */
export function replicaWait(options: ReplicaOptions, callTimeoutMs: number): ReplicaWait {
  return {
    replicas: options.replicas ?? 'auto',
    timeoutMs: options.replicaTimeoutMs ?? defaultReplicaTimeoutMs(callTimeoutMs),
  };
}

/**
 * Checks one script's reply against its WAIT reply: a reply that wrote must have `required` acknowledgements.
 * Returns the script's reply, or throws ReplicationError.
 */
export function checkAcknowledged(
  script: Script,
  value: unknown,
  wait: [Error | null, unknown] | undefined,
  required: number,
  store: string,
): unknown {
  if (required <= 0 || !script.grants?.wrote(value)) return value;
  const [error, acks] = wait ?? [new Error('no reply to WAIT'), 0];
  const acknowledged = error ? 0 : Number(acks);
  if (acknowledged >= required) return value;
  throw new ReplicationError(
    `${store}: ${script.name} reached ${acknowledged} of ${required} replica(s) in time; not counted`,
    { store, acknowledged, required, cause: error ?? undefined },
  );
}
