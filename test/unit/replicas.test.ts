/**
 * The replica wait's decisions, as a table: which replies must be acknowledged, how many acknowledgements
 * count, and what a bad option says. The wait itself runs against real replicated servers in
 * test/integration/failover.test.ts and replica-wait.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { ReplicationError, ValidationError } from '../../layers/oncely/src/errors.js';
import {
  ACQUIRE,
  EXTEND,
  FENCE_RAISE,
  LEADER_ANNOUNCE,
  ONCE_CLAIM,
  ONCE_COMPLETE,
  ONCE_EXTEND,
  ONCE_RELEASE,
  RELEASE,
  type Script,
} from '../../layers/oncely/src/scripts.js';
import { checkAcknowledged, replicaWaitOf } from '../../layers/oncely/src/transport/replicas.js';

describe('which scripts grant, and which of their replies wrote', () => {
  it.each<[Script, unknown, boolean]>([
    [ACQUIRE, [1, 1_700_000_000_000], true],
    [ACQUIRE, [0, 2500], false], // held by another owner: nothing written
    [EXTEND, 1, true],
    [EXTEND, -1, false],
    [EXTEND, 0, false],
    [FENCE_RAISE, 42, true],
    [LEADER_ANNOUNCE, 1, true],
    [LEADER_ANNOUNCE, 0, false],
    [ONCE_CLAIM, [1, '1700000000000'], true],
    [ONCE_CLAIM, [2, 'stored'], false], // a duplicate reads the stored result
    [ONCE_CLAIM, [0, 900], false],
    [ONCE_COMPLETE, 1, true],
    [ONCE_COMPLETE, 2, true], // a retried completion: it must be acknowledged too
    [ONCE_COMPLETE, 3, true],
    [ONCE_COMPLETE, -1, false],
    [ONCE_EXTEND, 1, true],
  ])('%s.name reply %j wrote: %s', (script, reply, wrote) => {
    expect(script.grants?.wrote(reply)).toBe(wrote);
  });

  it('release scripts grant nothing and never wait', () => {
    expect(RELEASE.grants).toBeUndefined();
    expect(ONCE_RELEASE.grants).toBeUndefined();
  });
});

describe('checkAcknowledged', () => {
  it('passes a write that enough replicas acknowledged, and any reply that wrote nothing', () => {
    expect(checkAcknowledged(ACQUIRE, [1, 5], [null, 1], 1, 's')).toEqual([1, 5]);
    expect(checkAcknowledged(ACQUIRE, [1, 5], [null, 2], 1, 's')).toEqual([1, 5]);
    expect(checkAcknowledged(ACQUIRE, [0, 100], [null, 0], 1, 's')).toEqual([0, 100]);
    expect(checkAcknowledged(ACQUIRE, [1, 5], undefined, 0, 's')).toEqual([1, 5]);
  });

  it.each<[string, [Error | null, unknown] | undefined, number]>([
    ['too few acknowledgements', [null, 0], 0],
    ['one of two', [null, 1], 1],
    ['WAIT failed', [new Error('ERR WAIT cannot be used with replica instances'), null], 0],
    ['no WAIT reply', undefined, 0],
  ])('%s: a ReplicationError naming the script and the counts', (_, wait, acknowledged) => {
    const required = acknowledged + 1;
    const err = (() => {
      try {
        checkAcknowledged(ACQUIRE, [1, 5], wait, required, 'cluster(h:1)');
      } catch (e) {
        return e as ReplicationError;
      }
    })();
    expect(err).toBeInstanceOf(ReplicationError);
    expect(err).toMatchObject({ name: 'ReplicationError', ambiguous: true, acknowledged, required });
    expect(err?.message).toBe(
      `cluster(h:1): acquire reached ${acknowledged} of ${required} replica(s) in time; not counted`,
    );
  });
});

describe('replica options', () => {
  it('defaults: auto, 1000 ms or half the call timeout', () => {
    expect(replicaWaitOf({}, 2000)).toEqual({ replicas: 'auto', timeoutMs: 1000 });
    expect(replicaWaitOf({}, 10_000)).toEqual({ replicas: 'auto', timeoutMs: 1000 });
    expect(replicaWaitOf({}, 800)).toEqual({ replicas: 'auto', timeoutMs: 400 });
    expect(replicaWaitOf({}, 1)).toEqual({ replicas: 'auto', timeoutMs: 1 });
    expect(replicaWaitOf({ replicas: 0, replicaTimeoutMs: 50 }, 2000)).toEqual({
      replicas: 0,
      timeoutMs: 50,
    });
  });

  it.each([
    [{ replicas: -1 }, /replicas must be 'auto' or a whole number from 0 to 16, got -1/],
    [{ replicas: 1.5 }, /replicas must be/],
    [{ replicas: 'all' as unknown as number }, /got all/],
    [
      { replicaTimeoutMs: 0 },
      /replicaTimeoutMs must be a whole number of milliseconds from 1 to timeoutMs − 1 \(1999\), got 0/,
    ],
    [{ replicaTimeoutMs: 2000 }, /replicaTimeoutMs must be/],
  ])('%j is a ValidationError naming the option', (options, message) => {
    expect(() => replicaWaitOf(options, 2000)).toThrow(ValidationError);
    expect(() => replicaWaitOf(options, 2000)).toThrow(message);
  });
});
