/**
 * Every Lua script oncely runs. Each is a constant `{ name, keys, lua, sha1 }`; the SHA-1 is pinned here and a
 * test checks each pin against `SCRIPT LOAD` on a real server. Transports run them as EVALSHA and fall back to
 * EVAL on NOSCRIPT. Durations are milliseconds: PX / PEXPIRE / PTTL only.
 *
 * Key layout (one hash tag per lock name, so every script is cluster-safe):
 *   oncely:{<name>}:lock   the owner token, with a PX expiry
 *   oncely:{<name>}:fence  the fencing counter, with a PX expiry of the holder's validity plus a grace period
 *
 * Fences (locks, Redlock, leader terms, run-once records) follow one rule: fence = max(last + 1, now in ms),
 * where "now" is the store's own clock (TIME, read inside the script; the client's clock, passed as an
 * argument, only where a store refuses TIME in a script). A counter that expired or vanished in a failover
 * therefore restarts above every fence it handed out, provided the store's clock has not gone back by more than
 * the grace period: see docs/safety.md. Keys live no longer than the lock that uses them plus the grace period.
 *
 * Scripts marked `grants` write something a caller relies on (a lock, a fence, a run-once record). On a store
 * whose shards have replicas, the TCP transports pipeline WAIT after them and count the write only once a
 * replica has acknowledged it (transport/replicas.ts).
 */

export interface Script {
  readonly name: string;
  /** Number of KEYS the script takes. */
  readonly keys: number;
  readonly lua: string;
  readonly sha1: string;
  /**
   * True for a script whose write must reach a replica before it counts (acquire, extend, fence raise, leader
   * announcement, run-once claim and completion); `wrote(reply)` says whether this reply did write.
   */
  readonly grants?: { wrote(reply: unknown): boolean };
}

const firstIs =
  (...values: number[]) =>
  (reply: unknown): boolean =>
    values.includes(Number(Array.isArray(reply) ? reply[0] : reply));

/**
 * ACQUIRE  KEYS: lock, fence   ARGV: token, ttlMs, fenceTtlMs, clientNowMs[, 'client']
 * Returns {1, fence} when the lock is ours (new, or already ours: a retried request whose reply was lost),
 * {0, pttl} when another owner holds it (pttl = its remaining ms, for the retry delay).
 * A new acquisition sets fence = max(last + 1, store time in ms) and gives the counter fenceTtlMs (the TTL plus
 * the grace period); re-running acquire with our token returns the fence we were given, since nobody else can
 * have moved the counter while we hold the lock. clientNowMs is used only where the store refuses TIME, or
 * when the fifth argument is 'client': Redlock floors every node at the client's clock, so that the nodes of a
 * quorum hand out the same fence and the acquire needs no second round trip to raise the lower ones.
 */
export const ACQUIRE: Script = {
  name: 'acquire',
  keys: 2,
  // The common case first: one SET NX (a free lock), TIME and the counter. GET only when the lock is taken.
  lua: `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local now = tonumber(ARGV[4]) or 0
  local t = ARGV[5] ~= 'client' and redis.pcall('TIME')
  if type(t) == 'table' and t[1] then now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
  local fence = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, now)
  redis.call('SET', KEYS[2], string.format('%.0f', fence), 'PX', ARGV[3])
  return {1, fence}
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
return {0, redis.call('PTTL', KEYS[1])}`,
  sha1: '8c1a0e5fad33f70ab5524cb8fd6c1ffc06ad8b70',
  grants: { wrote: firstIs(1) },
};

/**
 * EXTEND  KEYS: lock, fence   ARGV: token, ttlMs, fenceTtlMs
 * Returns 1 extended, -1 held by another owner, 0 expired (no owner). Extending also keeps the fence counter
 * alive for at least fenceTtlMs (never shortens it).
 */
export const EXTEND: Script = {
  name: 'extend',
  keys: 2,
  lua: `local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if KEYS[2] and redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
  return 1
end
if cur then return -1 end
return 0`,
  sha1: '56bb8037b4e94c28f1213ff10eb912174214b271',
  grants: { wrote: firstIs(1) },
};

/**
 * RELEASE  KEYS: lock, fence   ARGV: token, fenceGraceMs
 * Returns 1 released, -1 held by another owner (untouched), 0 already expired. Releasing ends the lease, so the
 * fence counter is left to live the grace period from now (never lengthened).
 */
export const RELEASE: Script = {
  name: 'release',
  keys: 2,
  lua: `local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if KEYS[2] and redis.call('PTTL', KEYS[2]) > tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
  return 1
end
if cur then return -1 end
return 0`,
  sha1: 'c99a01169d5608fdfcd2b75128f3f1deb75c2fd2',
};

/** What EXTEND, RELEASE, ONCE_EXTEND and ONCE_RELEASE reply: 1 ours (done), -1 another owner's, 0 gone. */
export type OwnerReply = 'ours' | 'theirs' | 'gone' | 'unexpected';

/** The one parser of the 1 / -1 / 0 reply. */
export function ownerReply(reply: unknown): OwnerReply {
  const r = Number(reply);
  return r === 1 ? 'ours' : r === -1 ? 'theirs' : r === 0 ? 'gone' : 'unexpected';
}

export const LOCK_SCRIPTS: readonly Script[] = [ACQUIRE, EXTEND, RELEASE];

// ------------------------------------------------------------------------ lock status, check, resume, sets
//
// Read-only and hand-over scripts over the same keys as ACQUIRE / EXTEND / RELEASE, and the scripts that take
// several locks at once when all their keys live in one slot (lock.ts `acquire([k1, k2])`).

/**
 * LOCK_STATUS  KEYS: lock, fence
 * Returns {1, pttl, fence} while someone holds the lock, {0, 0, fence} when it is free (fence: the last one
 * handed out, 0 if the counter is gone). Never returns the token.
 */
export const LOCK_STATUS: Script = {
  name: 'lock-status',
  keys: 2,
  lua: `local fence = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, redis.call('PTTL', KEYS[1]), fence}
end
return {0, 0, fence}`,
  sha1: '047f7ecd3e27877de04a3788c66ea6556de1f49a',
};

/**
 * LOCK_CHECK  KEYS: lock   ARGV: token
 * Read-only: 1 the lock holds our token, -1 another owner holds it, 0 nobody does (expired or released).
 */
export const LOCK_CHECK: Script = {
  name: 'lock-check',
  keys: 1,
  lua: `local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return 1 end
if cur then return -1 end
return 0`,
  sha1: '44524de4db54674b884d8798d08e5420942093f3',
};

/**
 * LOCK_RESUME  KEYS: lock, fence   ARGV: token, ttlMs, fenceTtlMs
 * Hand-over: while the lock holds the token, resets its expiry to ttlMs (the counter's to at least fenceTtlMs)
 * and returns {1, fence} (the counter has not moved since the token's holder took it). {-1} another owner
 * holds it, {0} nobody does. Unlike ACQUIRE it never takes a free lock: a token that lost its key stays lost.
 */
export const LOCK_RESUME: Script = {
  name: 'lock-resume',
  keys: 2,
  lua: `local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0') or 0}
end
if cur then return {-1} end
return {0}`,
  sha1: '796393589973133339c35fea158460a48d91fc96',
  grants: { wrote: firstIs(1) },
};

/**
 * LOCK_ACQUIRE_ALL  KEYS: lock1, fence1, lock2, fence2, ...   ARGV: token, ttlMs, fenceTtlMs, clientNowMs
 * All or none, in one script (every key in one slot). When every lock is free or already ours, takes each
 * with the token (SET PX) and returns {1, fence1, fence2, ...}: one fence per lock, moved (as ACQUIRE: to
 * max(last + 1, TIME in ms), the counter living fenceTtlMs) only where the lock was not ours yet. Otherwise changes nothing and returns {0, i, pttl}: the first lock (1-based
 * pair index) held by another owner, and that owner's remaining ms.
 */
export const LOCK_ACQUIRE_ALL: Script = {
  name: 'lock-acquire-all',
  keys: 0,
  lua: `local n = #KEYS / 2
for i = 1, n do
  local cur = redis.call('GET', KEYS[2 * i - 1])
  if cur and cur ~= ARGV[1] then
    return {0, i, redis.call('PTTL', KEYS[2 * i - 1])}
  end
end
local now = tonumber(ARGV[4]) or 0
local t = redis.pcall('TIME')
if type(t) == 'table' and t[1] then now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local out = {1}
for i = 1, n do
  local lock, fence = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('GET', lock) == ARGV[1] then
    out[i + 1] = tonumber(redis.call('GET', fence) or '0') or 0
    if redis.call('PTTL', fence) < tonumber(ARGV[3]) then redis.call('PEXPIRE', fence, ARGV[3]) end
  else
    local f = math.max((tonumber(redis.call('GET', fence)) or 0) + 1, now)
    redis.call('SET', fence, string.format('%.0f', f), 'PX', ARGV[3])
    out[i + 1] = f
  end
  redis.call('SET', lock, ARGV[1], 'PX', ARGV[2])
end
return out`,
  sha1: '8e518325fb8f26636c6c5ad05ef579aa7c043fe5',
  grants: { wrote: firstIs(1) },
};

/**
 * LOCK_EXTEND_ALL  KEYS: lock1, fence1, lock2, fence2, ...   ARGV: token, ttlMs, fenceTtlMs
 * Extends every lock (and gives its counter at least fenceTtlMs) only if all still hold the token: 1 extended,
 * -1 one is held by another owner, 0 one is gone (nothing changed in either case).
 */
export const LOCK_EXTEND_ALL: Script = {
  name: 'lock-extend-all',
  keys: 0,
  lua: `local gone = false
for i = 1, #KEYS, 2 do
  local cur = redis.call('GET', KEYS[i])
  if cur and cur ~= ARGV[1] then return -1 end
  if not cur then gone = true end
end
if gone then return 0 end
for i = 1, #KEYS, 2 do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
  if redis.call('PTTL', KEYS[i + 1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[i + 1], ARGV[3]) end
end
return 1`,
  sha1: 'f1f32cd2cb6c8db13d0b34825814d1cb99f131b7',
  grants: { wrote: firstIs(1) },
};

/**
 * LOCK_RELEASE_ALL  KEYS: lock1, fence1, lock2, fence2, ...   ARGV: token, fenceGraceMs
 * Deletes every lock that holds the token (its counter is left fenceGraceMs to live). 1 at least one released,
 * -1 none ours and one held by another owner, 0 none left (all expired).
 */
export const LOCK_RELEASE_ALL: Script = {
  name: 'lock-release-all',
  keys: 0,
  lua: `local released, taken = 0, 0
for i = 1, #KEYS, 2 do
  local cur = redis.call('GET', KEYS[i])
  if cur == ARGV[1] then
    redis.call('DEL', KEYS[i])
    if redis.call('PTTL', KEYS[i + 1]) > tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[i + 1], ARGV[2]) end
    released = released + 1
  elseif cur then
    taken = taken + 1
  end
end
if released > 0 then return 1 end
if taken > 0 then return -1 end
return 0`,
  sha1: '11c2028c2bf601ab285553723ebe8b68cef9741d',
};

/**
 * WINDOW_OPEN  KEYS: window   ARGV: token, windowMs
 * Once per window: {1, 0} when no window was open (one now is, for windowMs, marked with the token), {0, pttl}
 * when one is, with its remaining ms.
 */
export const WINDOW_OPEN: Script = {
  name: 'window-open',
  keys: 1,
  lua: `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, 0} end
return {0, redis.call('PTTL', KEYS[1])}`,
  sha1: 'ede5815dd26e8c407ab3e42337cc575b72ad2360',
};

export const LOCK_EXTRA_SCRIPTS: readonly Script[] = [
  LOCK_STATUS,
  LOCK_CHECK,
  LOCK_RESUME,
  LOCK_ACQUIRE_ALL,
  LOCK_EXTEND_ALL,
  LOCK_RELEASE_ALL,
  WINDOW_OPEN,
];

// ------------------------------------------------------------------------------------------- run-once records
//
// One record per idempotency key (once/record.ts), a hash with PX expiry, next to its fencing counter in one slot:
//   <prefix>:once:{<namespace>:<key digest>}:rec    s = P (in progress) | C (completed), t = owner token,
//                                                   f = fence, h = payload hash ('' = unchecked),
//                                                   r = the encoded result (completed only)
//   <prefix>:once:{<namespace>:<key digest>}:fence  the last fence handed out, with a TTL that always outlives
//                                                   the record by a grace period (see docs/once.md)
// Every transition compares the owner token: a record we do not own is never overwritten or deleted.

/**
 * ONCE_CLAIM  KEYS: rec, fence   ARGV: token, ttlMs, payloadHash, fenceTtlMs, nowMs
 * {1, fence}   claimed: the record was absent (or expired) and is now ours, IN PROGRESS for ttlMs; or it was
 *              already ours (a retried request whose reply was lost). fence = max(last fence + 1, the store's
 *              TIME in ms; nowMs, the client's clock, only where the store refuses TIME in a script), so it
 *              keeps increasing even after the counter itself has expired.
 * {2, result, pttl}  completed earlier: the stored, encoded result (a duplicate costs this one round trip) and
 *              the record's remaining retention (for a local cache, which must not outlive it).
 * {0, pttl}    in progress under another owner, who has pttl ms of lease left.
 * {3, status}  the record was made for a different payload (status P or C); nothing changed.
 */
export const ONCE_CLAIM: Script = {
  name: 'once-claim',
  keys: 2,
  lua: `local r = redis.call('HMGET', KEYS[1], 's', 't', 'f', 'h', 'r')
if r[1] then
  if r[2] == ARGV[1] and r[1] == 'P' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, r[3]}
  end
  if ARGV[3] ~= '' and r[4] and r[4] ~= '' and r[4] ~= ARGV[3] then
    return {3, r[1]}
  end
  if r[1] == 'C' then
    return {2, r[5], redis.call('PTTL', KEYS[1])}
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local t = redis.pcall('TIME')
local now = tonumber(ARGV[5]) or 0
if type(t) == 'table' and t[1] then now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local fence = string.format('%.0f', math.max(last + 1, now))
redis.call('SET', KEYS[2], fence, 'PX', ARGV[4])
redis.call('HSET', KEYS[1], 's', 'P', 't', ARGV[1], 'f', fence, 'h', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, fence}`,
  sha1: '66819042a4d8972c7f2bb169a22315963072d794',
  grants: { wrote: firstIs(1) },
};

/**
 * ONCE_COMPLETE  KEYS: rec, fence   ARGV: token, fence, result, retentionMs, fenceTtlMs, payloadHash
 * 1   completed: IN PROGRESS and ours -> COMPLETED(result), kept for retentionMs.
 * 2   already completed by us (a retried request whose reply was lost): unchanged.
 * 3   completed late: our lease had run out but nobody has claimed since (the counter still holds our
 *     fence), so the record is written as ours and COMPLETED.
 * -1  another owner's record (or one made for another payload): untouched.
 * 0   our record is gone and the fence has moved on (someone claimed after us): nothing written.
 */
export const ONCE_COMPLETE: Script = {
  name: 'once-complete',
  keys: 2,
  lua: `local r = redis.call('HMGET', KEYS[1], 's', 't')
if r[2] == ARGV[1] then
  if r[1] == 'C' then return 2 end
  redis.call('HSET', KEYS[1], 's', 'C', 'r', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
  return 1
end
if r[1] then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 's', 'C', 't', ARGV[1], 'f', ARGV[2], 'h', ARGV[6], 'r', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 3`,
  sha1: '65fffdf7584772dcfb0dd0294364a4c8c904f5ef',
  grants: { wrote: firstIs(1, 2, 3) },
};

/**
 * ONCE_EXTEND  KEYS: rec, fence   ARGV: token, ttlMs, fenceTtlMs
 * 1 extended (IN PROGRESS and ours), -1 another owner's record (or already completed), 0 gone (expired).
 */
export const ONCE_EXTEND: Script = {
  name: 'once-extend',
  keys: 2,
  lua: `local r = redis.call('HMGET', KEYS[1], 's', 't')
if r[2] == ARGV[1] and r[1] == 'P' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 1
end
if r[1] then return -1 end
return 0`,
  sha1: '78901b856881445c75451dfef995a344e5f0766e',
  grants: { wrote: firstIs(1) },
};

/**
 * ONCE_RELEASE  KEYS: rec   ARGV: token
 * 1 released (IN PROGRESS and ours: deleted, so a retry can run), -1 another owner's record or a completed
 * one (untouched), 0 already gone. The fence counter stays: the next claim still gets a higher fence.
 */
export const ONCE_RELEASE: Script = {
  name: 'once-release',
  keys: 1,
  lua: `local r = redis.call('HMGET', KEYS[1], 's', 't')
if r[2] == ARGV[1] and r[1] == 'P' then
  redis.call('DEL', KEYS[1])
  return 1
end
if r[1] then return -1 end
return 0`,
  sha1: '598aabf5476fbb4e6cdf848397ed7c0e32fbdb1c',
};

export const ONCE_SCRIPTS: readonly Script[] = [ONCE_CLAIM, ONCE_COMPLETE, ONCE_EXTEND, ONCE_RELEASE];

// ------------------------------------------------------------------------------ Redlock and leader election

/**
 * FENCE_RAISE  KEYS: fence   ARGV: n, fenceTtlMs
 * Sets the fencing counter to max(current, n) and returns the new value; the counter then lives at least
 * fenceTtlMs (the lease's TTL plus the grace period). Redlock runs it on the nodes of an acquisition's quorum
 * before handing the lease out, so that every later quorum (which must intersect this one) starts from at least
 * n: see docs/redlock.md.
 */
export const FENCE_RAISE: Script = {
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
};

/**
 * LEADER_ANNOUNCE  KEYS: lock, leader   ARGV: token, id, term
 * While the lock holds our token, records who holds it: HSET leader owner=sha1(token) id term (no expiry; the
 * lock key's TTL says whether the record is current). Returns 1, or 0 when the lock is not ours.
 * Only a hash of the token is stored, so observers never see a token they could release the lock with.
 */
export const LEADER_ANNOUNCE: Script = {
  name: 'leader-announce',
  keys: 2,
  lua: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'owner', redis.sha1hex(ARGV[1]), 'id', ARGV[2], 'term', ARGV[3])
return 1`,
  sha1: 'e79f1b58c1bbd6ec64e38d6e0378af2471ef9810',
  grants: { wrote: firstIs(1) },
};

/**
 * LEADER_OBSERVE  KEYS: lock, leader
 * Returns {0} when nobody holds the lock; {1, pttl, id, term} when the holder has announced itself; {2, pttl}
 * when the lock is held by someone who has not (yet) announced. Never returns the token.
 */
export const LEADER_OBSERVE: Script = {
  name: 'leader-observe',
  keys: 2,
  lua: `local cur = redis.call('GET', KEYS[1])
if not cur then return {0} end
local pttl = redis.call('PTTL', KEYS[1])
local info = redis.call('HMGET', KEYS[2], 'owner', 'id', 'term')
if info[1] == redis.sha1hex(cur) then return {1, pttl, info[2], tonumber(info[3])} end
return {2, pttl}`,
  sha1: 'd1e2d66c4394754ab27790ba2e20e9b47bdefc6a',
};

export const REDLOCK_SCRIPTS: readonly Script[] = [FENCE_RAISE, LEADER_ANNOUNCE, LEADER_OBSERVE];

// ------------------------------------------------------------------------------------ operators (the CLI)
//
// Read-only inspection and the two deletions an operator may need (`oncely release --force`, `oncely forget`).
// Each touches the keys of one lock or one record (one hash tag: cluster-safe), never a token.

/**
 * ONCE_INSPECT  KEYS: rec, fence
 * {0, now}                                          no record
 * {1, now, status, fence, payloadHash, resultBytes, pttl, lastFence}
 * status 'P' (in progress) or 'C' (completed); resultBytes is the stored result's length (completed only);
 * pttl the record's remaining lease (P) or retention (C); lastFence the counter (0 once it has expired). now is
 * the store's TIME in ms (0 where a store refuses TIME in a script). Never returns the owner token.
 */
export const ONCE_INSPECT: Script = {
  name: 'once-inspect',
  keys: 2,
  lua: `local t = redis.pcall('TIME')
local now = 0
if type(t) == 'table' and t[1] then now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local r = redis.call('HMGET', KEYS[1], 's', 'f', 'h')
if not r[1] then return {0, now} end
local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
return {1, now, r[1], r[2] or '0', r[3] or '', redis.call('HSTRLEN', KEYS[1], 'r'), redis.call('PTTL', KEYS[1]), last}`,
  sha1: '91d6ee8d82f86368b6e53ee48e2b7edf287dfa8d',
};

/**
 * ONCE_FORGET  KEYS: rec   ARGV: fence ('' = whatever is there)
 * Deletes a record so its event can run again: {1, status} deleted; {0} no record; {2, fence} the record now
 * holds another fence than the one shown to the operator (someone claimed since): untouched. The fence counter
 * stays, so the next claim still gets a higher fence.
 */
export const ONCE_FORGET: Script = {
  name: 'once-forget',
  keys: 1,
  lua: `local r = redis.call('HMGET', KEYS[1], 's', 'f')
if not r[1] then return {0} end
if ARGV[1] ~= '' and r[2] ~= ARGV[1] then return {2, r[2]} end
redis.call('DEL', KEYS[1])
return {1, r[1]}`,
  sha1: '0bbf4168e651386d50d7e2efb5ef7c1d56f56e60',
};

/**
 * LOCK_FORCE_RELEASE  KEYS: lock, fence   ARGV: fence ('' = whoever holds it)
 * Deletes a stuck lock without its token: {1, fence} deleted; {0} not held; {2, fence} held under another
 * fence than the one shown to the operator (a new holder since): untouched. The fence counter stays, so the
 * next holder still gets a higher fence.
 */
export const LOCK_FORCE_RELEASE: Script = {
  name: 'lock-force-release',
  keys: 2,
  lua: `if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local fence = redis.call('GET', KEYS[2]) or '0'
if ARGV[1] ~= '' and fence ~= ARGV[1] then return {2, fence} end
redis.call('DEL', KEYS[1])
return {1, fence}`,
  sha1: '491f9292f734fa831bdbdc69d1748ede755c0d81',
};

export const ADMIN_SCRIPTS: readonly Script[] = [ONCE_INSPECT, ONCE_FORGET, LOCK_FORCE_RELEASE];
