/** The fenced write at a Redis resource (oncely/effects/redis): set a key only under a fence not older than its last. */
import { firstIs, type ScriptOf, unexpectedReply } from './script.js';

/** EFFECT_SET's reply codes (the reply, or the first element of the refusal's pair). */
const EFFECT = { applied: 1, stale: 0, exists: 2 } as const;

/** What EFFECT_SET did: applied, found the key there ('NX'), or refused with the newer fence the key holds. */
export type EffectSetReply = { kind: 'applied' } | { kind: 'exists' } | { kind: 'stale'; current: number };

/**
 * EFFECT_SET  KEYS: key, fenceKey   ARGV: fence, value, ttlMs ('' for none)[, 'NX']
 * Sets `key` to `value` only when `fence` is not older than the highest fence written to it (kept in `fenceKey`;
 * none yet counts as 0), and records `fence` as the highest. Returns 1 applied, {0, last} refused (stale:
 * nothing written), 2 with 'NX' when the key already exists (a current holder finding the effect done: nothing
 * written). Only the refusal is a pair: an array reply costs the server and the client some µs per call, a
 * tenth of the write on loopback. The same fence may write again (a retried request). With ttlMs the value
 * gets PX ttlMs and the fence lives at least as long (never cut, never given an expiry it did not have);
 * without it, both persist (one MSET: the common case is two commands), since a fence that expired before its
 * value would let a stale writer through.
 */
export const EFFECT_SET: ScriptOf<EffectSetReply> = {
  name: 'effect-set',
  keys: 2,
  lua: `local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) < last then return {0, last} end
if ARGV[4] == 'NX' and redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
local ttl = tonumber(ARGV[3])
if not ttl then
  redis.call('MSET', KEYS[1], ARGV[2], KEYS[2], ARGV[1])
  return 1
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local left = redis.call('PTTL', KEYS[2])
redis.call('SET', KEYS[2], ARGV[1], 'KEEPTTL')
if left ~= -1 and left < ttl then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1`,
  sha1: '3c496ee8ae3062ea7833d819943c62e4c5539d39',
  grants: { wrote: firstIs(1) },
  parse(reply, store) {
    if (Array.isArray(reply)) {
      if (reply.length === 2 && Number(reply[0]) === EFFECT.stale)
        return { kind: 'stale', current: Number(reply[1]) };
    } else if (Number(reply) === EFFECT.applied) return { kind: 'applied' };
    else if (Number(reply) === EFFECT.exists) return { kind: 'exists' };
    throw unexpectedReply('effect-set', reply, store);
  },
};
