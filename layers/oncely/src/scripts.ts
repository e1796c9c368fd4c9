/**
 * Every Lua script oncely runs, by module: the lock's in scripts/lock.ts, run-once's in scripts/once.ts, and
 * leader, operator (admin) and fenced-write (effects) scripts in their own files; this file names them all.
 * Library modules import the module that holds a script, not this one: a bundle split into chunks puts every
 * module an entry point reaches in that entry's chunks, so `oncely/locks` reaching this file would load every
 * script.
 *
 * Every Lua script oncely runs. Each is a constant `{ name, keys, lua, sha1, grants?, parse }`; the SHA-1 is
 * pinned here and a test checks each pin against `SCRIPT LOAD` on a real server. `parse` is the one reader of
 * the script's reply: it returns a named value (its type beside the script), so no caller compares bare codes. Transports run them as EVALSHA and fall back to
 * EVAL on NOSCRIPT (a standalone TCP store sends each script's first call on a connection as EVAL:
 * transport/connection.ts shaReady). Durations are milliseconds: PX / PEXPIRE / PTTL only.
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

export * from './scripts/admin.js';
export * from './scripts/effects.js';
export * from './scripts/leader.js';
export * from './scripts/lock.js';
export * from './scripts/once.js';
export * from './scripts/script.js';
