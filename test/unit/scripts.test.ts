import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../layers/oncely/src/index.js';
import * as scripts from '../../layers/oncely/src/scripts.js';
import { keysMismatch, type Script, takesKeys } from '../../layers/oncely/src/scripts.js';

const ALL = (Object.values(scripts) as unknown[]).filter(
  (v): v is Script => typeof v === 'object' && v !== null && 'lua' in v && 'sha1' in v,
);

describe('Script.keys', () => {
  it('every script declares the KEYS its Lua reads', () => {
    expect(ALL.length).toBeGreaterThanOrEqual(20);
    for (const s of ALL) {
      const used = [...s.lua.matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1]));
      const highest = Math.max(0, ...used);
      const loops = /#KEYS/.test(s.lua);
      if (s.keys === 'pairs') expect(loops, s.name).toBe(true);
      else {
        expect(loops, s.name).toBe(false);
        const max = typeof s.keys === 'number' ? s.keys : s.keys[1];
        expect(highest, s.name).toBe(max);
        // a key that may be left out is tested before use
        if (typeof s.keys !== 'number')
          for (let k = s.keys[0] + 1; k <= s.keys[1]; k++)
            expect(s.lua, s.name).toContain(`if KEYS[${k}] and`);
      }
    }
  });

  it.each([
    [scripts.ACQUIRE, 2, true],
    [scripts.ACQUIRE, 1, false],
    [scripts.ACQUIRE, 3, false],
    [scripts.RELEASE, 1, true],
    [scripts.RELEASE, 2, true],
    [scripts.RELEASE, 0, false],
    [scripts.RELEASE, 3, false],
    [scripts.LOCK_ACQUIRE_ALL, 2, true],
    [scripts.LOCK_ACQUIRE_ALL, 6, true],
    [scripts.LOCK_ACQUIRE_ALL, 0, false],
    [scripts.LOCK_ACQUIRE_ALL, 3, false],
  ] as const)('%s with %i keys: %s', (script, count, fits) => {
    expect(takesKeys(script, count)).toBe(fits);
  });

  it('a mismatch is a ValidationError naming the script and the counts', () => {
    const err = keysMismatch(scripts.ONCE_CLAIM, 3);
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.message).toBe('script "once-claim": takes 2 keys, got 3');
    expect(err.problems).toEqual(['takes 2 keys, got 3']);
  });
});

describe('Script.parse: each script names its own reply', () => {
  it("every one of oncely's scripts carries its parse", () => {
    for (const s of ALL) expect(typeof (s as { parse?: unknown }).parse, s.name).toBe('function');
  });

  it.each([
    [scripts.ACQUIRE, [1, 1_700_000_000_000], { kind: 'acquired', fence: 1_700_000_000_000 }],
    [scripts.ACQUIRE, [0, 850], { kind: 'held', remainingMs: 850 }],
    [scripts.EXTEND, 1, 'ours'],
    [scripts.EXTEND, -1, 'theirs'],
    [scripts.RELEASE, 0, 'gone'],
    [scripts.LOCK_CHECK, 7, 'unexpected'],
    [scripts.LOCK_STATUS, [1, 400, 12], { held: true, remainingMs: 400, fence: 12 }],
    [scripts.LOCK_STATUS, [0, 0, 12], { held: false, remainingMs: 0, fence: 12 }],
    [scripts.LOCK_RESUME, [1, 9], { owner: 'ours', fence: 9 }],
    [scripts.LOCK_RESUME, [-1], { owner: 'theirs', fence: 0 }],
    [scripts.LOCK_ACQUIRE_ALL, [1, 5, 6], { kind: 'acquired', fences: [5, 6] }],
    [scripts.LOCK_ACQUIRE_ALL, [0, 2, 300], { kind: 'held', index: 1, remainingMs: 300 }],
    [scripts.WINDOW_OPEN, [1, 0], { opened: true }],
    [scripts.WINDOW_OPEN, [0, 120], { opened: false, remainingMs: 120 }],
    [scripts.ONCE_CLAIM, [1, '77'], { kind: 'claimed', fence: 77 }],
    [scripts.ONCE_CLAIM, [2, 'j1', 5000], { kind: 'completed', text: 'j1', leftMs: 5000 }],
    [scripts.ONCE_CLAIM, [2, 'j1'], { kind: 'completed', text: 'j1', leftMs: undefined }],
    [scripts.ONCE_CLAIM, [0, 900], { kind: 'in-progress', retryAfterMs: 900 }],
    [scripts.ONCE_CLAIM, [3, 'P'], { kind: 'mismatch' }],
    [scripts.ONCE_COMPLETE, 1, 'completed'],
    [scripts.ONCE_COMPLETE, 2, 'already-completed'],
    [scripts.ONCE_COMPLETE, 3, 'completed-late'],
    [scripts.ONCE_COMPLETE, -1, 'stolen'],
    [scripts.ONCE_COMPLETE, 0, 'expired'],
    [scripts.ONCE_EXTEND, 1, 'ours'],
    [scripts.ONCE_RELEASE, -1, 'theirs'],
    [scripts.ONCE_INSPECT, [0, 1], { found: false }],
    [
      scripts.ONCE_INSPECT,
      [1, 2000, 'C', '1500', 'h', 3, 60_000, 1500],
      {
        found: true,
        nowMs: 2000,
        status: 'completed',
        fence: 1500,
        payloadHash: 'h',
        storedBytes: 3,
        remainingMs: 60_000,
      },
    ],
    [scripts.ONCE_FORGET, [1, 'C'], 'forgotten'],
    [scripts.ONCE_FORGET, [2, '5'], 'changed'],
    [scripts.ONCE_FORGET, [0], 'absent'],
    [scripts.LOCK_FORCE_RELEASE, [1, '5'], 'released'],
    [scripts.LOCK_FORCE_RELEASE, [2, '6'], 'changed'],
    [scripts.LOCK_FORCE_RELEASE, [0], 'not-held'],
    [scripts.FENCE_RAISE, 42, 42],
    [scripts.LEADER_ANNOUNCE, 1, true],
    [scripts.LEADER_ANNOUNCE, 0, false],
    [scripts.LEADER_OBSERVE, [0], { kind: 'free' }],
    [
      scripts.LEADER_OBSERVE,
      [1, 700, 'host:1', 3],
      { kind: 'announced', remainingMs: 700, id: 'host:1', term: 3 },
    ],
    [scripts.LEADER_OBSERVE, [2, 700], { kind: 'unannounced', remainingMs: 700 }],
    [scripts.EFFECT_SET, 1, { kind: 'applied' }],
    [scripts.EFFECT_SET, 2, { kind: 'exists' }],
    [scripts.EFFECT_SET, [0, '1700000000000'], { kind: 'stale', current: 1_700_000_000_000 }],
  ] as const)('%s: %j → %j', (script, reply, named) => {
    expect((script as scripts.ScriptOf<unknown>).parse(reply)).toEqual(named);
  });

  it.each([
    [scripts.ACQUIRE, 'OK'],
    [scripts.ACQUIRE, [1]],
    [scripts.LOCK_STATUS, [1, 2]],
    [scripts.LOCK_RESUME, []],
    [scripts.LOCK_ACQUIRE_ALL, [1]],
    [scripts.WINDOW_OPEN, null],
    [scripts.ONCE_CLAIM, 'x'],
    [scripts.ONCE_INSPECT, 1],
    [scripts.LEADER_OBSERVE, []],
    [scripts.EFFECT_SET, 0],
    [scripts.EFFECT_SET, [1, 0]],
  ] as const)('%s refuses %j, naming the script and the store', (script, reply) => {
    expect(() => (script as scripts.ScriptOf<unknown>).parse(reply, 'redis 127.0.0.1:1')).toThrow(
      `redis 127.0.0.1:1: unexpected ${script.name} reply ${JSON.stringify(reply)}`,
    );
  });
});
