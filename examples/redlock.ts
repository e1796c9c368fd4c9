import { createLock, createRedlock, elect, QuorumError, shardedStore, upstashStore } from 'oncely';
import { redisStore } from 'oncely/ioredis';

const upstash = (name: string) =>
  upstashStore({ url: process.env[`${name}_URL`]!, token: process.env[`${name}_TOKEN`]! });

// Redlock: three Upstash databases in three regions (any mix of stores works, TCP included).
const regions = ['UPSTASH_EU', 'UPSTASH_US', 'UPSTASH_AP'].map(upstash);
const redlock = createRedlock(regions, { nodeTimeoutMs: 300 }); // quorum 2 of 3, decided at the 2nd answer

export async function settleInvoice(
  id: string,
  charge: (fence: number, signal: AbortSignal) => Promise<void>,
) {
  try {
    // Same lease API as a single-store lock: auto-extended on a quorum, lost-lease signal, fencing token.
    return await redlock.using(`invoice:${id}`, (lease) => charge(lease.fence, lease.signal), {
      ttlMs: 10_000,
    });
  } catch (err) {
    if (err instanceof Error && err.cause instanceof QuorumError) console.error(err.cause.nodes); // each node's outcome
    throw err;
  }
}

// Leader election: one replica of a long-lived service does the work; the term is its fencing token.
export function runWhenLeader(work: (term: number, signal: AbortSignal) => void) {
  const election = elect({
    lock: createLock(redisStore({ url: process.env.ONCELY_REDIS_URL! })),
    name: 'nightly-reindex',
    ttlMs: 10_000, // renewed every 1/3; a dead leader is replaced about one lease later
    onElected: (leader) => work(leader.term, leader.signal), // signal aborts when deposed or resigned
  }); // resigns on SIGTERM / SIGINT; election.resign() does it explicitly
  return election;
}

// Shards: each lock on one of several databases by rendezvous hashing (no redundancy: see docs/redlock.md).
export const shardedLock = createLock(shardedStore(['SHARD_A', 'SHARD_B', 'SHARD_C'].map(upstash)));
