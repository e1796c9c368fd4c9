/**
 * Every Lua script oncely runs. Each is a constant `{ name, keys, lua, sha1 }`; the SHA-1 is pinned here and a
 * test checks each pin against `SCRIPT LOAD` on a real server. Transports run them as EVALSHA and fall back to
 * EVAL on NOSCRIPT. Durations are milliseconds: PX / PEXPIRE / PTTL only.
 *
 * Key layout (one hash tag per lock name, so every script is cluster-safe):
 *   oncely:{<name>}:lock   the owner token, with a PX expiry
 *   oncely:{<name>}:fence  the fencing counter (no expiry: it must never go back)
 */

export interface Script {
  readonly name: string;
  /** Number of KEYS the script takes. */
  readonly keys: number;
  readonly lua: string;
  readonly sha1: string;
}

/**
 * ACQUIRE  KEYS: lock, fence   ARGV: token, ttlMs
 * Returns {1, fence} when the lock is ours (new, or already ours: a retried request whose reply was lost),
 * {0, pttl} when another owner holds it (pttl = its remaining ms, for the retry delay).
 * The fence is INCRed only on a new acquisition, so while we hold the lock nobody else has moved the counter
 * and re-running acquire with our token returns the fence we were given.
 */
export const ACQUIRE: Script = {
  name: 'acquire',
  keys: 2,
  lua: `local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
if cur then
  return {0, redis.call('PTTL', KEYS[1])}
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, fence}`,
  sha1: '010ff065d5d090b3fd6ec9473eb9547263648cd9',
};

/**
 * EXTEND  KEYS: lock   ARGV: token, ttlMs
 * Returns 1 extended, -1 held by another owner, 0 expired (no owner).
 */
export const EXTEND: Script = {
  name: 'extend',
  keys: 1,
  lua: `local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur then return -1 end
return 0`,
  sha1: 'b8e057d5d660bb0f3bc11b9c846a9b25b6af15f4',
};

/**
 * RELEASE  KEYS: lock   ARGV: token
 * Returns 1 released, -1 held by another owner (untouched), 0 already expired.
 */
export const RELEASE: Script = {
  name: 'release',
  keys: 1,
  lua: `local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
if cur then return -1 end
return 0`,
  sha1: 'e60479a54586abc12fffd582e23ebbfe9e3c8e04',
};

export const LOCK_SCRIPTS: readonly Script[] = [ACQUIRE, EXTEND, RELEASE];
