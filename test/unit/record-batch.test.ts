/**
 * record-batch.ts: which single-record calls merge into one batch script (the Lua itself runs on real servers
 * in test/integration/once-record.test.ts and once-batch.test.ts), and the replies split back per call.
 */
import { describe, expect, it } from 'vitest';
import { Records } from '../../layers/oncely/src/once/record.js';
import { batchTrip, MAX_PER_SCRIPT, merge, newTokens } from '../../layers/oncely/src/once/record-batch.js';
import type { ScriptCall } from '../../layers/oncely/src/transport/types.js';
import { OnceFakeStore } from '../support/once-fake-store.js';

const records = new Records('oncely', 'rb');
const claim = (key: string, ttlMs = 30_000, nowMs = 1000) =>
  records.claim(key, `tok-${key}`, `h-${key}`, ttlMs, nowMs);
const complete = (key: string, retentionMs = 60_000) =>
  records.complete({ key, token: `tok-${key}`, fence: 7, hash: `h-${key}` }, `j"${key}"`, retentionMs);
const names = (calls: readonly { call: ScriptCall; of: number[] }[]) =>
  calls.map((m) => [m.call.script.name, m.of]);

describe('merge', () => {
  it('one node: every claim in one once-claim-many, per-record args after the shared ones', () => {
    const merged = merge([claim('a'), claim('b'), claim('c')], false);
    expect(names(merged)).toEqual([['once-claim-many', [0, 1, 2]]]);
    const { keys, args } = merged[0]!.call;
    expect(keys).toEqual([...records.keysOf('a'), ...records.keysOf('b'), ...records.keysOf('c')]);
    const [, , , fenceTtl] = claim('a').args;
    expect(args).toEqual([30_000, fenceTtl, 1000, 'tok-a', 'h-a', 'tok-b', 'h-b', 'tok-c', 'h-c']);
  });

  it('completions merge into once-complete-many; releases and claims stay apart, each in its place', () => {
    const release = records.release('x', 'tok-x');
    const merged = merge([complete('a'), release, complete('b'), claim('c')], false);
    expect(names(merged)).toEqual([
      ['once-complete-many', [0, 2]],
      ['once-release', [1]],
      ['once-claim', [3]],
    ]);
    const [, , , , fenceTtl] = complete('a').args;
    expect(merged[0]!.call.args).toEqual([
      60_000,
      fenceTtl,
      'tok-a',
      7,
      'j"a"',
      'h-a',
      'tok-b',
      7,
      'j"b"',
      'h-b',
    ]);
  });

  it('a cluster: only records of one hash tag (one slot) share a script; a record alone keeps its own script', () => {
    // The same key twice in one batch: one tag. Another key: another tag.
    expect(names(merge([claim('a'), claim('c'), claim('a')], true))).toEqual([
      ['once-claim-many', [0, 2]],
      ['once-claim', [1]],
    ]);
    expect(names(merge([claim('a'), claim('c'), claim('b')], true))).toEqual([
      ['once-claim', [0]],
      ['once-claim', [1]],
      ['once-claim', [2]],
    ]);
    expect(names(merge([claim('a'), claim('c'), claim('b')], false))).toEqual([
      ['once-claim-many', [0, 1, 2]],
    ]);
  });

  it('calls whose shared args differ are not merged', () => {
    expect(names(merge([claim('a', 30_000), claim('b', 40_000)], false))).toEqual([
      ['once-claim', [0]],
      ['once-claim', [1]],
    ]);
    expect(names(merge([complete('a', 1000), complete('b', 2000)], false))).toEqual([
      ['once-complete', [0]],
      ['once-complete', [1]],
    ]);
  });

  it(`at most ${MAX_PER_SCRIPT} records a script`, () => {
    const calls = Array.from({ length: 2 * MAX_PER_SCRIPT + 1 }, (_, i) => claim(`k${i}`));
    expect(merge(calls, false).map((m) => m.of.length)).toEqual([MAX_PER_SCRIPT, MAX_PER_SCRIPT, 1]);
  });
});

describe('batchTrip', () => {
  it('splits a merged reply back per call, as each call alone would have had it', async () => {
    const store = new OnceFakeStore(() => 5000);
    const results = await batchTrip(store, [claim('a'), claim('b')]);
    expect(store.roundTrips).toBe(1);
    expect(results).toEqual([
      { ok: true, value: [1, '1000'] },
      { ok: true, value: [1, '1000'] },
    ]);
    const again = await batchTrip(store, [claim('a'), records.claim('b', 'other', 'h-b', 30_000, 1000)]);
    expect(again).toEqual([
      { ok: true, value: [1, '1000'] },
      { ok: true, value: [0, 30_000] },
    ]);
  });

  it('a merged reply of the wrong length fails each of its records, naming the script and store', async () => {
    const store = new OnceFakeStore();
    store.run = async () => [[1, '5']];
    const results = await batchTrip(store, [claim('a'), claim('b')]);
    expect(results.map((r) => r.ok)).toEqual([false, false]);
    const error = (results[0] as { error: Error }).error;
    expect(error.message).toMatch(/^fake: unexpected once-claim-many reply/);
  });
});

describe('newTokens', () => {
  it('n distinct 128-bit base64url tokens', () => {
    const tokens = newTokens(50);
    expect(tokens).toHaveLength(50);
    expect(new Set(tokens).size).toBe(50);
    for (const t of tokens) expect(t).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(new Set([...tokens, ...newTokens(50)]).size).toBe(100);
  });
});
