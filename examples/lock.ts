// oncely/locks: the lock API alone (oncely has it too, with everything else: more to load at cold start)
import { createLock, fromEnv, LockNotAcquiredError } from 'oncely/locks';

// Module scope: created once per cold start, reused by warm invocations.
const store = fromEnv(); // UPSTASH_REDIS_REST_URL + _TOKEN, ONCELY_REDIS_CLUSTER_NODES or ONCELY_REDIS_URL
const lock = createLock(store);

export async function rebuildReport(reportId: string, write: (fence: number) => Promise<void>) {
  try {
    // Waits up to 10 attempts for the lock, extends it while the work runs, always releases it.
    return await lock.using(
      `report:${reportId}`,
      async (lease) => {
        // lease.fence grows with every new holder: the database rejects writes with an older fence.
        await write(lease.fence);
        // lease.signal aborts if the lease is lost (store unreachable past the TTL, key stolen).
        if (lease.signal.aborted) throw lease.signal.reason;
        return { fence: lease.fence };
      },
      { ttlMs: 30_000, retry: { attempts: 10, delayMs: 200, jitterMs: 100 } },
    );
  } catch (err) {
    if (err instanceof LockNotAcquiredError) return { skipped: true }; // someone else is rebuilding it
    throw err;
  }
}

// Lower level: one attempt, explicit extend and release.
export async function once(key: string) {
  const lease = await lock.tryAcquire(key, { ttlMs: 5_000 }); // null when another owner holds it
  if (!lease) return 'busy';
  try {
    await lease.extend(10_000); // throws LockLostError('expired' | 'stolen') if it is no longer ours
  } finally {
    console.log(await lease.release()); // 'released' | 'not-held' (someone else has it) | 'expired'
  }
  return 'done';
}
