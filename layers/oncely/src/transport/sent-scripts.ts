import type { Cluster, Redis } from 'ioredis';
import type { Script } from '../scripts/script.js';

/**
 * Which scripts a standalone client's current connection has been sent. A script's first call on a
 * connection goes as EVAL (which runs it and caches it on the server), every later one as EVALSHA. So a fresh
 * server, or the one a reconnect reaches after a failover, never answers NOSCRIPT to oncely's own order of
 * calls: no call waits a second round trip, and none is sent again behind calls issued after it (an EVAL
 * resent after NOSCRIPT lands after them: a lease's release after the next acquire of the same key). The
 * record is dropped when the connection closes, since the next one may reach another server. EVALSHA still
 * falls back to EVAL on NOSCRIPT (someone ran SCRIPT FLUSH).
 *
 * A Cluster routes each call to its slot's master over a connection of its own: it keeps EVALSHA first.
 */
const sent = new WeakMap<Redis, Set<string>>();

function sentOn(client: Redis): Set<string> {
  let scripts = sent.get(client);
  if (!scripts) {
    const fresh = new Set<string>();
    client.on('close', () => fresh.clear());
    sent.set(client, fresh);
    scripts = fresh;
  }
  return scripts;
}

/**
 * True when `script` may go as EVALSHA on `client` now. False for its first call on the connection, which
 * the caller then sends as EVAL, in the same tick (later calls queue behind it on the connection).
 */
export function shaReady(kind: 'redis' | 'cluster', client: Redis | Cluster, script: Script): boolean {
  if (kind === 'cluster') return true;
  const scripts = sentOn(client as Redis);
  if (scripts.has(script.sha1)) return true;
  scripts.add(script.sha1);
  return false;
}
