/** The fenced write at a Redis resource (oncely/effects/redis): set a key only under a fence not older than its last. */
import { firstIs, type Script } from './script.js';

/**
 * EFFECT_SET  KEYS: key, fenceKey   ARGV: fence, value, ttlMs ('' for none)[, 'NX']
 * Sets `key` to `value` only when `fence` is not older than the highest fence written to it (kept in `fenceKey`;
 * none yet counts as 0), and records `fence` as the highest. Returns {1, last} applied, {0, last} refused
 * (stale: nothing written), {2, last} with 'NX' when the key already exists (a current holder finding the
 * effect done: nothing written). The same fence may write again (a retried request). With ttlMs the value gets PX
 * ttlMs and the fence lives at least as long (never cut, never given an expiry it did not have); without it,
 * both persist (plain SETs: the common case is three commands): a fence that expired before its value would
 * let a stale writer through.
 */
export const EFFECT_SET: Script = {
  name: 'effect-set',
  keys: 2,
  lua: `local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) < last then return {0, last} end
if ARGV[4] == 'NX' and redis.call('EXISTS', KEYS[1]) == 1 then return {2, last} end
local ttl = tonumber(ARGV[3])
if not ttl then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], ARGV[1])
  return {1, last}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local left = redis.call('PTTL', KEYS[2])
redis.call('SET', KEYS[2], ARGV[1], 'KEEPTTL')
if left ~= -1 and left < ttl then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return {1, last}`,
  sha1: '6df79c2797c632ef0151e4e0f7457e02aa07f279',
  grants: { wrote: firstIs(1) },
};

/** EFFECT_SET's reply codes (the first element of its reply). */
const EFFECT = { applied: 1, stale: 0, exists: 2 } as const;

/** What EFFECT_SET did: applied, found the key there ('NX'), or refused with the newer fence the key holds. */
export type EffectSetReply = { kind: 'applied' } | { kind: 'exists' } | { kind: 'stale'; current: number };

/** The one parser of EFFECT_SET's reply; anything else is `undefined` (the caller names the store). */
export function parseEffectSet(reply: unknown): EffectSetReply | undefined {
  if (!Array.isArray(reply) || reply.length !== 2) return undefined;
  const code = Number(reply[0]);
  if (code === EFFECT.applied) return { kind: 'applied' };
  if (code === EFFECT.exists) return { kind: 'exists' };
  if (code === EFFECT.stale) return { kind: 'stale', current: Number(reply[1]) };
  return undefined;
}
