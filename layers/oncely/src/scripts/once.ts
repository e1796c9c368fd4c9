/** The run-once record's scripts (once/record.ts calls them). */
import {
  arrayReply,
  firstIs,
  type OwnerReply,
  ownerReply,
  type Script,
  type ScriptOf,
  unexpectedReply,
} from './script.js';

/** ONCE_CLAIM's reply codes (the first element of its reply). */
const CLAIM = { claimed: 1, completed: 2, mismatch: 3, inProgress: 0 } as const;

/** ONCE_CLAIM's reply: claimed (with the fence), completed earlier, in progress elsewhere, or mismatched. */
export type OnceClaimReply =
  | { kind: 'claimed'; fence: number }
  /** text: the stored, encoded result; leftMs: the record's remaining retention (undefined if not given). */
  | { kind: 'completed'; text: unknown; leftMs: number | undefined }
  | { kind: 'in-progress'; retryAfterMs: number }
  | { kind: 'mismatch' };

/** ONCE_COMPLETE's reply: recorded (now, by an earlier attempt, or after the lease ran out), or lost. */
export type CompleteReply = 'completed' | 'already-completed' | 'completed-late' | 'stolen' | 'expired';

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
 *              keeps increasing even after the counter itself has expired. Where no counter is left (a new
 *              key: the usual case) one SET NX writes it, at the clock; else GET, then SET.
 * {2, result, pttl}  completed earlier: the stored, encoded result (a duplicate costs this one round trip) and
 *              the record's remaining retention (for a local cache, which must not outlive it).
 * {0, pttl}    in progress under another owner, who has pttl ms of lease left.
 * {3, status}  the record was made for a different payload (status P or C); nothing changed.
 */
export const ONCE_CLAIM: ScriptOf<OnceClaimReply> = {
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
local t = redis.pcall('TIME')
local now = tonumber(ARGV[5]) or 0
if type(t) == 'table' and t[1] then now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local fence = string.format('%.0f', math.max(1, now))
if not redis.call('SET', KEYS[2], fence, 'PX', ARGV[4], 'NX') then
  local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  fence = string.format('%.0f', math.max(last + 1, now))
  redis.call('SET', KEYS[2], fence, 'PX', ARGV[4])
end
redis.call('HSET', KEYS[1], 's', 'P', 't', ARGV[1], 'f', fence, 'h', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, fence}`,
  sha1: '8367f3fc311ef1a2b12041f6a196bb01e27a2be7',
  grants: { wrote: firstIs(CLAIM.claimed) },
  parse(reply, store) {
    const r = arrayReply('once-claim', reply, 1, store);
    const code = Number(r[0]);
    if (code === CLAIM.claimed) return { kind: 'claimed', fence: Number(r[1]) };
    if (code === CLAIM.completed) {
      const left = Number(r[2]);
      return { kind: 'completed', text: r[1], leftMs: Number.isFinite(left) && left > 0 ? left : undefined };
    }
    if (code === CLAIM.mismatch) return { kind: 'mismatch' };
    return { kind: 'in-progress', retryAfterMs: Math.max(0, Number(r[1]) || 0) };
  },
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
export const ONCE_COMPLETE: ScriptOf<CompleteReply> = {
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
  parse(reply) {
    const r = Number(reply);
    if (r === 1) return 'completed';
    if (r === 2) return 'already-completed';
    if (r === 3) return 'completed-late';
    return r === -1 ? 'stolen' : 'expired';
  },
};

/**
 * ONCE_EXTEND  KEYS: rec, fence   ARGV: token, ttlMs, fenceTtlMs
 * 1 extended (IN PROGRESS and ours), -1 another owner's record (or already completed), 0 gone (expired).
 */
export const ONCE_EXTEND: ScriptOf<OwnerReply> = {
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
  parse: ownerReply,
};

/**
 * ONCE_RELEASE  KEYS: rec   ARGV: token
 * 1 released (IN PROGRESS and ours: deleted, so a retry can run), -1 another owner's record or a completed
 * one (untouched), 0 already gone. The fence counter stays: the next claim still gets a higher fence.
 */
export const ONCE_RELEASE: ScriptOf<OwnerReply> = {
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
  parse: ownerReply,
};

// ----------------------------------------------------------------------------------- a batch's records
//
// The same transitions as ONCE_CLAIM and ONCE_COMPLETE, for several records in one script call: an SQS batch
// claims (and completes) all its records in one script per cluster slot (one script on a single node), and
// reads the store's TIME at most once. Record by record, each guard is ONCE_CLAIM's or ONCE_COMPLETE's own.

/**
 * A script that answers per record: its reply, one element per record (`records` of them), each the reply
 * the record's own script gives (ONCE_CLAIM's, ONCE_COMPLETE's), which that script's parse reads.
 */
export interface PerRecord extends Script {
  parse(reply: unknown, store?: string, records?: number): unknown[];
}

function perRecord(script: string, reply: unknown, store: string | undefined, records = 1): unknown[] {
  const r = arrayReply(script, reply, records, store);
  if (r.length !== records) throw unexpectedReply(script, reply, store);
  return r;
}

/**
 * ONCE_CLAIM_MANY  KEYS: rec1, fence1, rec2, fence2, ...   ARGV: ttlMs, fenceTtlMs, nowMs, token1, hash1, ...
 * One reply per record, in order, each exactly ONCE_CLAIM's for that record: {1, fence}, {2, result, pttl},
 * {0, pttl} or {3, status}. TIME is read once, at the first record that needs a fence; each counter is
 * written as ONCE_CLAIM writes it (SET NX where none is left).
 */
export const ONCE_CLAIM_MANY: PerRecord = {
  name: 'once-claim-many',
  keys: 'pairs',
  lua: `local out = {}
local now
for i = 1, #KEYS / 2 do
  local rec, fk, token, hash = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 * i + 2], ARGV[2 * i + 3]
  local r = redis.call('HMGET', rec, 's', 't', 'f', 'h', 'r')
  if r[1] then
    if r[2] == token and r[1] == 'P' then
      redis.call('PEXPIRE', rec, ARGV[1])
      out[i] = {1, r[3]}
    elseif hash ~= '' and r[4] and r[4] ~= '' and r[4] ~= hash then
      out[i] = {3, r[1]}
    elseif r[1] == 'C' then
      out[i] = {2, r[5], redis.call('PTTL', rec)}
    else
      out[i] = {0, redis.call('PTTL', rec)}
    end
  else
    if not now then
      local t = redis.pcall('TIME')
      now = tonumber(ARGV[3]) or 0
      if type(t) == 'table' and t[1] then now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
    end
    local fence = string.format('%.0f', math.max(1, now))
    if not redis.call('SET', fk, fence, 'PX', ARGV[2], 'NX') then
      local last = tonumber(redis.call('GET', fk) or '0') or 0
      fence = string.format('%.0f', math.max(last + 1, now))
      redis.call('SET', fk, fence, 'PX', ARGV[2])
    end
    redis.call('HSET', rec, 's', 'P', 't', token, 'f', fence, 'h', hash)
    redis.call('PEXPIRE', rec, ARGV[1])
    out[i] = {1, fence}
  end
end
return out`,
  sha1: '152ff12e4980fbfa53402d9df9343406e7a9885f',
  grants: { wrote: (reply) => Array.isArray(reply) && reply.some(ONCE_CLAIM.grants!.wrote) },
  parse: (reply, store, records) => perRecord('once-claim-many', reply, store, records),
};

/**
 * ONCE_COMPLETE_MANY  KEYS: rec1, fence1, ...   ARGV: retentionMs, fenceTtlMs, then per record: token, fence,
 * result, payloadHash
 * One code per record, in order, each exactly ONCE_COMPLETE's for that record: 1, 2, 3, -1 or 0.
 */
export const ONCE_COMPLETE_MANY: PerRecord = {
  name: 'once-complete-many',
  keys: 'pairs',
  lua: `local out = {}
for i = 1, #KEYS / 2 do
  local rec, fk, a = KEYS[2 * i - 1], KEYS[2 * i], 4 * i - 1
  local r = redis.call('HMGET', rec, 's', 't')
  if r[2] == ARGV[a] then
    if r[1] == 'C' then
      out[i] = 2
    else
      redis.call('HSET', rec, 's', 'C', 'r', ARGV[a + 2])
      redis.call('PEXPIRE', rec, ARGV[1])
      redis.call('PEXPIRE', fk, ARGV[2])
      out[i] = 1
    end
  elseif r[1] then
    out[i] = -1
  elseif redis.call('GET', fk) ~= ARGV[a + 1] then
    out[i] = 0
  else
    redis.call('HSET', rec, 's', 'C', 't', ARGV[a], 'f', ARGV[a + 1], 'h', ARGV[a + 3], 'r', ARGV[a + 2])
    redis.call('PEXPIRE', rec, ARGV[1])
    redis.call('PEXPIRE', fk, ARGV[2])
    out[i] = 3
  end
end
return out`,
  sha1: '0cfa1596ddadd8cdd5676ac105b3a184ba82dddd',
  grants: { wrote: (reply) => Array.isArray(reply) && reply.some(ONCE_COMPLETE.grants!.wrote) },
  parse: (reply, store, records) => perRecord('once-complete-many', reply, store, records),
};

export const ONCE_SCRIPTS: readonly Script[] = [
  ONCE_CLAIM,
  ONCE_COMPLETE,
  ONCE_EXTEND,
  ONCE_RELEASE,
  ONCE_CLAIM_MANY,
  ONCE_COMPLETE_MANY,
];
