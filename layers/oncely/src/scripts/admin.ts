/** The operators' scripts (the CLI, admin.ts): read-only inspection and guarded deletes. */
import { arrayReply, type Script, type ScriptOf } from './script.js';

/** ONCE_INSPECT's reply: no record, or what the record holds (never its token). */
export type InspectReply =
  | { found: false }
  | {
      found: true;
      /** The store's TIME in ms (0 where a store refuses TIME in a script). */
      nowMs: number;
      status: 'in-progress' | 'completed';
      fence: number;
      payloadHash: string;
      /** The stored result's length, its one-character tag included (completed only). */
      storedBytes: number;
      remainingMs: number;
    };

/** ONCE_FORGET's reply: deleted, no record, or the record holds another fence now (untouched). */
export type ForgetReply = 'forgotten' | 'absent' | 'changed';
/** LOCK_FORCE_RELEASE's reply: deleted, not held, or held under another fence now (untouched). */
export type ForceReleaseReply = 'released' | 'not-held' | 'changed';

/** The first element of a reply (or the reply itself), as a number. */
const codeOf = (reply: unknown) => Number(Array.isArray(reply) ? reply[0] : reply);

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
export const ONCE_INSPECT: ScriptOf<InspectReply> = {
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
  parse(reply, store) {
    const r = arrayReply('once-inspect', reply, 1, store);
    if (Number(r[0]) !== 1) return { found: false };
    const [, now, s, f, h, bytes, pttl] = r;
    return {
      found: true,
      nowMs: Number(now),
      status: s === 'C' ? 'completed' : 'in-progress',
      fence: Number(f),
      payloadHash: String(h ?? ''),
      storedBytes: Number(bytes),
      remainingMs: Math.max(0, Number(pttl)),
    };
  },
};

/**
 * ONCE_FORGET  KEYS: rec   ARGV: fence ('' = whatever is there)
 * Deletes a record so its event can run again: {1, status} deleted; {0} no record; {2, fence} the record now
 * holds another fence than the one shown to the operator (someone claimed since): untouched. The fence counter
 * stays, so the next claim still gets a higher fence.
 */
export const ONCE_FORGET: ScriptOf<ForgetReply> = {
  name: 'once-forget',
  keys: 1,
  lua: `local r = redis.call('HMGET', KEYS[1], 's', 'f')
if not r[1] then return {0} end
if ARGV[1] ~= '' and r[2] ~= ARGV[1] then return {2, r[2]} end
redis.call('DEL', KEYS[1])
return {1, r[1]}`,
  sha1: '0bbf4168e651386d50d7e2efb5ef7c1d56f56e60',
  parse(reply) {
    const code = codeOf(reply);
    return code === 1 ? 'forgotten' : code === 2 ? 'changed' : 'absent';
  },
};

/**
 * LOCK_FORCE_RELEASE  KEYS: lock, fence   ARGV: fence ('' = whoever holds it)
 * Deletes a stuck lock without its token: {1, fence} deleted; {0} not held; {2, fence} held under another
 * fence than the one shown to the operator (a new holder since): untouched. The fence counter stays, so the
 * next holder still gets a higher fence.
 */
export const LOCK_FORCE_RELEASE: ScriptOf<ForceReleaseReply> = {
  name: 'lock-force-release',
  keys: 2,
  lua: `if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local fence = redis.call('GET', KEYS[2]) or '0'
if ARGV[1] ~= '' and fence ~= ARGV[1] then return {2, fence} end
redis.call('DEL', KEYS[1])
return {1, fence}`,
  sha1: '491f9292f734fa831bdbdc69d1748ede755c0d81',
  parse(reply) {
    const code = codeOf(reply);
    return code === 1 ? 'released' : code === 2 ? 'changed' : 'not-held';
  },
};

export const ADMIN_SCRIPTS: readonly Script[] = [ONCE_INSPECT, ONCE_FORGET, LOCK_FORCE_RELEASE];
