import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../layers/oncely/src/index.js';
import * as scripts from '../../layers/oncely/src/scripts.js';
import { keysMismatch, type Script, takesKeys } from '../../layers/oncely/src/scripts.js';

const ALL = Object.values(scripts).filter(
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
