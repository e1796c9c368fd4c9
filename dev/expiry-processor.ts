/**
 * A leader-only keyspace-expiry processor: the seed's scenario. Several replicas run at once; each subscribes to
 * expired-key events (`__keyevent@0__:expired`, which needs `notify-keyspace-events Ex` on the server), and only
 * the current leader (oncely's elect() over a Lock, TCP mode) processes them.
 *
 * Pub/sub is fire-and-forget: an event published while no replica leads (between a leader's death and its
 * successor's election: the failover window, about one lease), or while a subscriber is reconnecting, reaches
 * nobody who acts on it, and Redis never sends it again. So the producer also records each key in a pending-work
 * set (a sorted set scored by due time, SCHEDULE below), and the leader sweeps it: right after it is elected and
 * every `sweepEveryMs`, it processes every pending key that is due (by at least `sweepGraceMs`) and already gone.
 *
 * Processing is one script (PROCESS): fenced by the leader's term (refused once a newer leader exists), and
 * claimed by ZREM from the pending set, so an event and a sweep (or two leaders) can never both process a key.
 * Its effect here is a line in a results list; a real handler would pass the term to the resource it changes.
 *
 * CLI (one replica; start several):
 *   tsx dev/expiry-processor.ts --redis 127.0.0.1:6379 --id replica-1 [--lease-ms 2000] [--prefix job:]
 *       [--name expiry] [--sweep-every-ms 1000] [--sweep-grace-ms 1000]
 *   (password from ONCELY_REDIS_PASSWORD). JSON lines on stdout: ready, elected, deposed, sweep, stopped.
 *   SIGTERM / SIGINT: resign (a follower takes over at once), close, exit 0.
 *
 * Keys (standalone Redis, db 0; the job keys themselves may be anywhere in the keyspace):
 *   oncely:{<name>}:lock / :fence / :leader   the election
 *   oncely:{<name>}:pending                    pending work: member = the key, score = its due time (server ms)
 *   oncely:{<name>}:processed                  results: "<key> <replica> <term> <event|sweep> <server ms>"
 */
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { createLock, type Election, elect, type Script } from '../layers/oncely/src/index.js';
import { redisStore } from '../layers/oncely/src/ioredis.js';

const script = (name: string, keys: number, lua: string): Script => ({
  name,
  keys,
  lua,
  sha1: createHash('sha1').update(lua).digest('hex'),
});

/**
 * SCHEDULE  KEYS: key, pending   ARGV: value, ttlMs
 * SET key value PX ttl, and ZADD pending (server now + ttl) key: the work is recorded before it can expire.
 */
export const SCHEDULE = script(
  'expirySchedule',
  2,
  `redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], due, KEYS[1])
return due`,
);

/**
 * PROCESS  KEYS: pending, processed, fence   ARGV: key, term, replica, source
 * -1: refused, a newer leader exists (the fence moved past our term). 0: already processed (not pending).
 * 1: processed — claimed from the pending set and the result recorded, atomically.
 */
export const PROCESS = script(
  'expiryProcess',
  3,
  `if tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[2]) then return -1 end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('RPUSH', KEYS[2], ARGV[1] .. ' ' .. ARGV[3] .. ' ' .. ARGV[2] .. ' ' .. ARGV[4] .. ' ' .. now)
return 1`,
);

export interface ExpiryProcessorOptions {
  redis: { host: string; port: number; password?: string };
  /** This replica's id (shown to observers and in results). */
  id: string;
  /** @default 'expiry' */
  name?: string;
  /** Only expired keys starting with this are work. @default 'job:' */
  prefix?: string;
  /** Leadership lease: a dead leader's failover window is about this long. @default 2000 */
  ttlMs?: number;
  /** Sweep the pending set this often while leading (0: only when elected). @default 1000 */
  sweepEveryMs?: number;
  /** A pending key is swept only once due for this long (its event had every chance). @default 1000 */
  sweepGraceMs?: number;
  /** JSON-able events: ready, elected, deposed, sweep, stopped. @default one JSON line on stdout */
  log?: (event: Record<string, unknown>) => void;
}

export interface ExpiryProcessor {
  readonly election: Election;
  readonly stats: Readonly<typeof emptyStats>;
  stop(): Promise<void>;
}

const SWEEP_PAGE = 1000;
const emptyStats = { events: 0, ignored: 0, processed: 0, swept: 0, duplicates: 0, fenced: 0, errors: 0 };

export function keysOf(name: string) {
  return { pending: `oncely:{${name}}:pending`, processed: `oncely:{${name}}:processed` };
}

/** The producer's side: a key that expires in `ttlMs`, recorded as pending work. Returns its due time. */
export async function scheduleExpiry(
  client: Redis,
  key: string,
  ttlMs: number,
  options: { name?: string; value?: string } = {},
): Promise<number> {
  const { pending } = keysOf(options.name ?? 'expiry');
  return Number(await client.eval(SCHEDULE.lua, 2, key, pending, options.value ?? '1', ttlMs));
}

export async function startExpiryProcessor(options: ExpiryProcessorOptions): Promise<ExpiryProcessor> {
  const {
    id,
    name = 'expiry',
    prefix = 'job:',
    ttlMs = 2000,
    sweepEveryMs = 1000,
    sweepGraceMs = 1000,
    log = (e) => process.stdout.write(`${JSON.stringify(e)}\n`),
  } = options;
  const emit = (event: string, extra: Record<string, unknown> = {}) =>
    log({ event, id, at: Date.now(), ...extra });
  const { host, port, password } = options.redis;
  const keys = keysOf(name);
  const stats = { ...emptyStats };

  const store = redisStore({ host, port, password, timeoutMs: Math.max(100, Math.floor(ttlMs / 4)) });
  const lock = createLock(store);
  const clientOptions = { host, port, password, protocol: 2 as const, maxRetriesPerRequest: 1 };
  const sub = new Redis(clientOptions);
  const cmd = new Redis(clientOptions);
  sub.on('error', () => {});
  cmd.on('error', () => {});

  const process1 = async (key: string, term: number, source: 'event' | 'sweep'): Promise<void> => {
    try {
      const r = Number(
        await store.run(
          PROCESS,
          [keys.pending, keys.processed, lock.fenceKeyOf(name)],
          [key, term, id, source],
        ),
      );
      if (r === 1) stats[source === 'event' ? 'processed' : 'swept'] += 1;
      else if (r === 0) stats.duplicates += 1;
      else stats.fenced += 1;
    } catch {
      stats.errors += 1; // the key stays pending: a sweep retries it
    }
  };

  let sweeping = false;
  const sweep = async (): Promise<void> => {
    const leadership = election.leadership;
    if (!leadership || sweeping) return;
    sweeping = true;
    let swept = 0;
    try {
      const [sec = 0, usec = 0] = (await cmd.time()).map(Number);
      const before = Number(sec) * 1000 + Math.floor(Number(usec) / 1000) - sweepGraceMs;
      // One page per sweep; the next sweep takes the rest.
      const due = await cmd.zrangebyscore(keys.pending, '-inf', before, 'LIMIT', 0, SWEEP_PAGE);
      const exists = await Promise.all(due.map((k) => cmd.exists(k)));
      for (const [i, k] of due.entries()) {
        if (exists[i] !== 0 || !election.isLeader) continue; // not expired yet (or extended): not work yet
        await process1(k, leadership.term, 'sweep');
        swept += 1;
      }
      if (swept > 0) emit('sweep', { term: leadership.term, swept });
    } catch {
      stats.errors += 1;
    } finally {
      sweeping = false;
    }
  };

  const election = elect({
    lock,
    name,
    id,
    ttlMs,
    resignOn: false,
    onElected: (leadership) => {
      emit('elected', { term: leadership.term });
      void sweep();
    },
    onDeposed: (reason, leadership) => emit('deposed', { term: leadership.term, reason: reason.reason }),
  });

  // Every replica listens; only the leader acts. `leadership` checks the lease's validity on the monotonic
  // clock, so a replica that was frozen past its lease drops the event instead of acting on it.
  sub.on('message', (_channel: string, key: string) => {
    if (!key.startsWith(prefix)) return;
    stats.events += 1;
    const leadership = election.leadership;
    if (!leadership) {
      stats.ignored += 1;
      return;
    }
    void process1(key, leadership.term, 'event');
  });
  await sub.subscribe('__keyevent@0__:expired');
  const flags = await cmd.config('GET', 'notify-keyspace-events').catch(() => undefined);
  const value = Array.isArray(flags) ? String(flags[1] ?? '') : undefined;
  if (value !== undefined && !(value.includes('E') && (value.includes('x') || value.includes('A'))))
    emit('warning', { message: `notify-keyspace-events is "${value}": expired events need at least "Ex"` });

  const timer = sweepEveryMs > 0 ? setInterval(() => void sweep(), sweepEveryMs) : undefined;
  emit('ready', { ttlMs, sweepEveryMs, sweepGraceMs });

  let stopping: Promise<void> | undefined;
  return {
    election,
    stats,
    stop() {
      stopping ??= (async () => {
        clearInterval(timer);
        await election.resign();
        await Promise.allSettled([sub.quit(), cmd.quit(), store.close()]);
        emit('stopped', { stats });
      })();
      return stopping;
    },
  };
}

// -----------------------------------------------------------------------------------------------------------
// CLI

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      redis: { type: 'string', default: '127.0.0.1:6379' },
      id: { type: 'string' },
      name: { type: 'string' },
      prefix: { type: 'string' },
      'lease-ms': { type: 'string' },
      'sweep-every-ms': { type: 'string' },
      'sweep-grace-ms': { type: 'string' },
    },
  });
  const match = /^(.+):(\d+)$/.exec(values.redis);
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const bad = ['lease-ms', 'sweep-every-ms', 'sweep-grace-ms'].filter((k) => {
    const v = num(values[k as 'lease-ms']);
    return v !== undefined && !(Number.isInteger(v) && v >= 0);
  });
  if (!match?.[1] || !match[2] || !values.id || bad.length > 0) {
    console.error(
      'usage: tsx dev/expiry-processor.ts --redis HOST:PORT --id REPLICA_ID [--lease-ms 2000] [--prefix job:]\n' +
        '                                   [--name expiry] [--sweep-every-ms 1000] [--sweep-grace-ms 1000]\n' +
        '       (password from ONCELY_REDIS_PASSWORD; durations are whole milliseconds)',
    );
    process.exit(2);
  }
  const processor = await startExpiryProcessor({
    redis: { host: match[1], port: Number(match[2]), password: process.env.ONCELY_REDIS_PASSWORD },
    id: values.id,
    name: values.name,
    prefix: values.prefix,
    ttlMs: num(values['lease-ms']),
    sweepEveryMs: num(values['sweep-every-ms']),
    sweepGraceMs: num(values['sweep-grace-ms']),
  });
  const shutdown = (): void => {
    processor.stop().finally(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

const entry = process.argv[1];
if (entry && realpathSync(entry) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(`expiry processor: ${(error as Error).message}`);
    process.exit(1);
  });
}
