/** Redlock's fence raise and leader election's scripts. */
import { arrayReply, firstIs, type ScriptOf } from './script.js';

/** LEADER_OBSERVE's reply: nobody holds the lock; a holder who announced itself; one who has not (yet). */
export type ObserveReply =
  | { kind: 'free' }
  | { kind: 'announced'; remainingMs: number; id: string; term: number }
  | { kind: 'unannounced'; remainingMs: number };

// ------------------------------------------------------------------------------ Redlock and leader election

/**
 * FENCE_RAISE  KEYS: fence   ARGV: n, fenceTtlMs
 * Sets the fencing counter to max(current, n) and returns the new value; the counter then lives at least
 * fenceTtlMs (the lease's TTL plus the grace period). Redlock runs it on the nodes of an acquisition's quorum
 * before handing the lease out, so that every later quorum (which must intersect this one) starts from at least
 * n: see docs/redlock.md.
 */
export const FENCE_RAISE: ScriptOf<number> = {
  name: 'fence-raise',
  keys: 1,
  lua: `local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = tonumber(ARGV[1])
if n > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return n
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return cur`,
  sha1: '48eefd7aeda9f8755f4d79a15a1a218f8418793e',
  grants: { wrote: () => true },
  /** The counter now (at least the n asked for, unless a reply went astray). */
  parse: (reply) => Number(reply),
};

/**
 * LEADER_ANNOUNCE  KEYS: lock, leader   ARGV: token, id, term, lifeMs
 * While the lock holds our token, records who holds it: HSET leader owner=sha1(token) id term, living lifeMs
 * (the lease's TTL plus the fence grace period; the leader announces itself again well within it, so the record
 * outlives its leadership by at most lifeMs and a name no longer used leaves nothing behind). The lock key's
 * TTL says whether the record is current. Returns 1, or 0 when the lock is not ours.
 * Only a hash of the token is stored, so observers never see a token they could release the lock with.
 */
export const LEADER_ANNOUNCE: ScriptOf<boolean> = {
  name: 'leader-announce',
  keys: 2,
  lua: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'owner', redis.sha1hex(ARGV[1]), 'id', ARGV[2], 'term', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1`,
  sha1: 'a0642abb93fba42fa6146fe56b5d7937ca403ec7',
  grants: { wrote: firstIs(1) },
  /** Announced: the lock is ours and the record written. */
  parse: (reply) => Number(reply) === 1,
};

/**
 * LEADER_OBSERVE  KEYS: lock, leader
 * Returns {0} when nobody holds the lock; {1, pttl, id, term} when the holder has announced itself; {2, pttl}
 * when the lock is held by someone who has not (yet) announced. Never returns the token.
 */
export const LEADER_OBSERVE: ScriptOf<ObserveReply> = {
  name: 'leader-observe',
  keys: 2,
  lua: `local cur = redis.call('GET', KEYS[1])
if not cur then return {0} end
local pttl = redis.call('PTTL', KEYS[1])
local info = redis.call('HMGET', KEYS[2], 'owner', 'id', 'term')
if info[1] == redis.sha1hex(cur) then return {1, pttl, info[2], tonumber(info[3])} end
return {2, pttl}`,
  sha1: 'd1e2d66c4394754ab27790ba2e20e9b47bdefc6a',
  parse(reply, store) {
    const [code, pttl, id, term] = arrayReply('leader-observe', reply, 1, store);
    if (Number(code) === 1)
      return { kind: 'announced', remainingMs: Number(pttl), id: String(id), term: Number(term) };
    return Number(code) === 2 ? { kind: 'unannounced', remainingMs: Number(pttl) } : { kind: 'free' };
  },
};
