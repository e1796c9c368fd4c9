// oncely/locks: the lock API alone (oncely has it too, with everything else: more to load at cold start)
import { createLock, fromEnv, LockLostError } from 'oncely/locks';

const lock = createLock(fromEnv(), {
  onError: (err) => console.error(err.message), // background failures: a lock that could not be given back
});

// `await using`: the lease is released when the scope exits, whether it returns or throws.
export async function charge(orderId: string, pay: (fence: number) => Promise<void>) {
  await using lease = await lock.acquire(`order:${orderId}`, { ttlMs: 10_000 });
  await pay(lease.fence);
  // One round trip asks the store whether the lease is still ours (held and signal follow the answer).
  if (!(await lease.check())) throw lease.signal.reason;
}

// Who holds it, for how long, under which fence: never the token.
export async function inspect(orderId: string) {
  const { held, remainingMs, fence } = await lock.status(`order:${orderId}`);
  return held ? `held for ${remainingMs} ms more (fence ${fence})` : 'free';
}

// Hand-over: the dispatcher passes lease.token on (e.g. in an async invoke's payload); the worker resumes it.
export async function worker(event: { orderId: string; token: string }) {
  try {
    await using lease = await lock.resume(`order:${event.orderId}`, event.token, { ttlMs: 60_000 });
    return { fence: lease.fence };
  } catch (err) {
    if (err instanceof LockLostError) return { lost: err.reason }; // 'expired' | 'stolen'
    throw err;
  }
}

// Several resources, all or none. Keys sharing a hash tag ({42}) are taken by one script; others key by key,
// in sorted order, rolled back if one is held. One fence per key: lease.fences[i] belongs to lease.keys[i].
export async function transfer(from: string, to: string) {
  await using lease = await lock.acquire([`account:${from}`, `account:${to}`], { ttlMs: 5_000 });
  return lease.fences;
}

// At most once per window across every container: "rebuild the cache at most once a minute".
export async function onEvent(rebuild: () => Promise<number>) {
  const r = await lock.oncePerWindow('cache-rebuild', rebuild, { windowMs: 60_000 });
  return r.ran ? `rebuilt ${r.value} entries` : `skipped, next window in ${r.retryAfterMs} ms`;
}
