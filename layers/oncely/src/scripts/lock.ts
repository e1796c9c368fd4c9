/**
 * The lock's scripts (ACQUIRE, EXTEND, RELEASE and the lock's other operations): see scripts.ts for what every
 * script is and the key layout. Kept apart from run-once's, leader's and the operator's scripts so that a
 * function that only takes locks (`oncely/locks`) loads only these.
 */
import { arrayReply, firstIs, type OwnerReply, ownerReply, type Script, type ScriptOf } from './script.js';

/** ACQUIRE's reply: the lock is ours with its fence, or another owner holds it for `remainingMs` more. */
export type AcquireReply = { kind: 'acquired'; fence: number } | { kind: 'held'; remainingMs: number };
/** LOCK_STATUS's reply: held or free, the holder's remaining ms (0 when free), the last fence handed out. */
export type StatusReply = { held: boolean; remainingMs: number; fence: number };
/** LOCK_RESUME's reply: the owner reply and, when ours, the fence the token's holder was given. */
export type ResumeReply = { owner: OwnerReply; fence: number };
/** LOCK_ACQUIRE_ALL's reply: every lock taken (a fence each), or the first lock another owner holds. */
export type AcquireAllReply =
  | { kind: 'acquired'; fences: number[] }
  | { kind: 'held'; index: number; remainingMs: number };
/** WINDOW_OPEN's reply: a window opened now, or one is open for `remainingMs` more. */
export type WindowReply = { opened: true } | { opened: false; remainingMs: number };

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
export const ACQUIRE: ScriptOf<AcquireReply> = {
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
  parse(reply, store) {
    // on every acquire: read in place, no copy of the reply
    const r = arrayReply('acquire', reply, 2, store);
    const value = Number(r[1]);
    return Number(r[0]) === 1 ? { kind: 'acquired', fence: value } : { kind: 'held', remainingMs: value };
  },
};

/**
 * EXTEND  KEYS: lock[, fence]   ARGV: token, ttlMs, fenceTtlMs
 * Returns 1 extended, -1 held by another owner, 0 expired (no owner). Extending also keeps the fence counter
 * alive for at least fenceTtlMs (never shortens it).
 */
export const EXTEND: ScriptOf<OwnerReply> = {
  name: 'extend',
  keys: [1, 2],
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
  parse: ownerReply,
};

/**
 * RELEASE  KEYS: lock[, fence]   ARGV: token[, fenceGraceMs]
 * Returns 1 released, -1 held by another owner (untouched), 0 already expired. Releasing ends the lease, so the
 * fence counter is left to live the grace period from now (never lengthened).
 */
export const RELEASE: ScriptOf<OwnerReply> = {
  name: 'release',
  keys: [1, 2],
  lua: `local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if KEYS[2] and redis.call('PTTL', KEYS[2]) > tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
  return 1
end
if cur then return -1 end
return 0`,
  sha1: 'c99a01169d5608fdfcd2b75128f3f1deb75c2fd2',
  parse: ownerReply,
};

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
export const LOCK_STATUS: ScriptOf<StatusReply> = {
  name: 'lock-status',
  keys: 2,
  lua: `local fence = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, redis.call('PTTL', KEYS[1]), fence}
end
return {0, 0, fence}`,
  sha1: '047f7ecd3e27877de04a3788c66ea6556de1f49a',
  parse(reply, store) {
    const [held, pttl, fence] = arrayReply('lock-status', reply, 3, store).map(Number) as [
      number,
      number,
      number,
    ];
    return { held: held === 1, remainingMs: held === 1 ? Math.max(0, pttl) : 0, fence };
  },
};

/**
 * LOCK_CHECK  KEYS: lock   ARGV: token
 * Read-only: 1 the lock holds our token, -1 another owner holds it, 0 nobody does (expired or released).
 */
export const LOCK_CHECK: ScriptOf<OwnerReply> = {
  name: 'lock-check',
  keys: 1,
  lua: `local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return 1 end
if cur then return -1 end
return 0`,
  sha1: '44524de4db54674b884d8798d08e5420942093f3',
  parse: ownerReply,
};

/**
 * LOCK_RESUME  KEYS: lock, fence   ARGV: token, ttlMs, fenceTtlMs
 * Hand-over: while the lock holds the token, resets its expiry to ttlMs (the counter's to at least fenceTtlMs)
 * and returns {1, fence} (the counter has not moved since the token's holder took it). {-1} another owner
 * holds it, {0} nobody does. Unlike ACQUIRE it never takes a free lock: a token that lost its key stays lost.
 */
export const LOCK_RESUME: ScriptOf<ResumeReply> = {
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
  parse(reply, store) {
    const [code, fence] = arrayReply('lock-resume', reply, 1, store).map(Number) as [number, number?];
    return { owner: ownerReply(code), fence: fence ?? 0 };
  },
};

/**
 * LOCK_ACQUIRE_ALL  KEYS: lock1, fence1, lock2, fence2, ...   ARGV: token, ttlMs, fenceTtlMs, clientNowMs
 * All or none, in one script (every key in one slot). When every lock is free or already ours, takes each
 * with the token (SET PX) and returns {1, fence1, fence2, ...}: one fence per lock, moved (as ACQUIRE: to
 * max(last + 1, TIME in ms), the counter living fenceTtlMs) only where the lock was not ours yet. Otherwise changes nothing and returns {0, i, pttl}: the first lock (1-based
 * pair index) held by another owner, and that owner's remaining ms.
 */
export const LOCK_ACQUIRE_ALL: ScriptOf<AcquireAllReply> = {
  name: 'lock-acquire-all',
  keys: 'pairs',
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
  parse(reply, store) {
    const [code = 0, ...rest] = arrayReply('lock-acquire-all', reply, 2, store).map(Number);
    if (code === 1) return { kind: 'acquired', fences: rest };
    return { kind: 'held', index: (rest[0] ?? 1) - 1, remainingMs: rest[1] ?? 0 };
  },
};

/**
 * LOCK_EXTEND_ALL  KEYS: lock1, fence1, lock2, fence2, ...   ARGV: token, ttlMs, fenceTtlMs
 * Extends every lock (and gives its counter at least fenceTtlMs) only if all still hold the token: 1 extended,
 * -1 one is held by another owner, 0 one is gone (nothing changed in either case).
 */
export const LOCK_EXTEND_ALL: ScriptOf<OwnerReply> = {
  name: 'lock-extend-all',
  keys: 'pairs',
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
  parse: ownerReply,
};

/**
 * LOCK_RELEASE_ALL  KEYS: lock1, fence1, lock2, fence2, ...   ARGV: token, fenceGraceMs
 * Deletes every lock that holds the token (its counter is left fenceGraceMs to live). 1 at least one released,
 * -1 none ours and one held by another owner, 0 none left (all expired).
 */
export const LOCK_RELEASE_ALL: ScriptOf<OwnerReply> = {
  name: 'lock-release-all',
  keys: 'pairs',
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
  parse: ownerReply,
};

/**
 * WINDOW_OPEN  KEYS: window   ARGV: token, windowMs
 * Once per window: {1, 0} when no window was open (one now is, for windowMs, marked with the token), {0, pttl}
 * when one is, with its remaining ms.
 */
export const WINDOW_OPEN: ScriptOf<WindowReply> = {
  name: 'window-open',
  keys: 1,
  lua: `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, 0} end
return {0, redis.call('PTTL', KEYS[1])}`,
  sha1: 'ede5815dd26e8c407ab3e42337cc575b72ad2360',
  parse(reply, store) {
    const [opened, pttl] = arrayReply('window-open', reply, 2, store).map(Number) as [number, number];
    return opened === 1 ? { opened: true } : { opened: false, remainingMs: Math.max(0, pttl) };
  },
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
