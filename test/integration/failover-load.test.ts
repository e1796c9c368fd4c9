/**
 * A cluster failover with many calls in flight (issue 21): a 3 + 3 cluster (cluster-node-timeout 1000 ms), a
 * master frozen (SIGSTOP) until its replica is promoted, then resumed, while several stores each keep about a
 * hundred `withOnce` deliveries in flight, retried as an event source retries (in progress, store error) a
 * bounded number of times. Every delivery must be answered, every key run, none run twice at once, and no
 * listener may leak (a `MaxListenersExceededWarning`): a timed-out call must not tear down the node connection
 * that every other call to that node is using (transport/connection.ts, cluster.ts). Then the election
 * and oncePerTick through the same kind of failover.
 */
import type { Context, ScheduledEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type RedisCluster, startCluster } from '../../dev/redis-server.js';
import {
  createLock,
  type Election,
  elect,
  oncePerTick,
  type Store,
  withOnce,
} from '../../layers/oncely/src/index.js';
import { clusterStore } from '../../layers/oncely/src/ioredis.js';
import { awaitPromotion, awaitReplicated, shardOf } from '../support/failover.js';

vi.setConfig({ testTimeout: 90_000, hookTimeout: 90_000 });

/** Each store's bound per call: a frozen master costs a call this much, then it is retried. */
const TIMEOUT_MS = 1000;
/** Deliveries in flight per store, and how many stores (each its own cluster client, as separate Lambdas). */
const IN_FLIGHT = 100;
const STORES = 3;
/** An event source's retries: bounded, spaced. */
const MAX_TRIES = 40;
const RETRY_MS = 150;
/** A handler's lease (the invocation's remaining time): a claim orphaned by a failure frees within it. */
const REMAINING_MS = 3000;
/** How long the load goes on once the promotion is seen (and the frozen master resumed). */
const AFTER_PROMOTION_MS = 2000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: RedisCluster;
const stores: Store[] = [];
const warnings: Error[] = [];
const onWarning = (w: Error) => warnings.push(w);

beforeAll(async () => {
  process.on('warning', onWarning);
  cluster = await startCluster({ masters: 3, replicas: 1 });
});
afterAll(async () => {
  process.off('warning', onWarning);
  await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
  for (const n of cluster?.nodes ?? []) if (n.running) n.resume();
  await cluster?.stop();
});

function store(): Store {
  const s = clusterStore({ nodes: cluster.seeds, timeoutMs: TIMEOUT_MS });
  stores.push(s);
  return s;
}

const context = (remainingMs = REMAINING_MS) =>
  ({ getRemainingTimeInMillis: () => remainingMs }) as unknown as Context;
const listenerLeaks = () =>
  warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message);

/**
 * Freezes the master of `key`'s shard until its replica is promoted and the other nodes route to it, then
 * resumes it (it rejoins as a replica). Resolves with performance.now() at the promotion.
 */
async function freezeUntilPromoted(key: string): Promise<number> {
  await awaitReplicated(cluster);
  const { master, replicas } = await shardOf(cluster, key);
  master.pause();
  try {
    return await awaitPromotion(cluster, replicas[0]!, key, [master]);
  } finally {
    master.resume();
  }
}

/** One try's outcome, for the figures: when it started (relative to the promotion) and how it ended. */
interface Try {
  startedAt: number;
  error?: string;
}

describe('a cluster failover with many calls in flight', () => {
  it('withOnce: every delivery answered, every key run, none twice at once, no listener leak', async () => {
    const prefix = `load-${Date.now()}`;
    const running = new Set<string>();
    const runs = new Map<string, number>();
    const fences = new Map<string, number>();
    let concurrent = 0;
    let fenceNotIncreasing = 0;
    const handlers = Array.from({ length: STORES }, () =>
      withOnce(
        async (event: { id: string }, _context, once) => {
          if (running.has(event.id)) concurrent += 1;
          running.add(event.id);
          if (once.fence <= (fences.get(event.id) ?? 0)) fenceNotIncreasing += 1;
          fences.set(event.id, once.fence);
          runs.set(event.id, (runs.get(event.id) ?? 0) + 1);
          await sleep(20);
          running.delete(event.id);
          return event.id;
        },
        { store: store(), namespace: prefix, key: (e) => e.id, payload: false, logLevel: 'silent' },
      ),
    );
    const tries: Try[] = [];
    let unanswered = 0;
    let delivered = 0;
    const deliver = async (handler: (typeof handlers)[number], id: string) => {
      for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
        const t: Try = { startedAt: performance.now() };
        tries.push(t);
        try {
          expect(await handler({ id }, context())).toBe(id);
          delivered += 1;
          return;
        } catch (err) {
          t.error = (err as Error).name;
          await sleep(RETRY_MS);
        }
      }
      unanswered += 1;
    };
    // Every store delivers every key (three duplicates per key, close together), IN_FLIGHT at a time.
    let stopping = false;
    const keysDelivered = new Set<string>();
    const workers = handlers.flatMap((handler) => {
      let next = 0;
      return Array.from({ length: IN_FLIGHT }, async () => {
        while (!stopping) {
          const id = `${prefix}-${next++}`;
          keysDelivered.add(id);
          await deliver(handler, id);
        }
      });
    });
    await sleep(500); // warm: the stores have their slot maps and connections, and calls are in flight
    const promotedAt = await freezeUntilPromoted(`${prefix}-0`);
    await sleep(AFTER_PROMOTION_MS);
    stopping = true;
    await Promise.all(workers);

    const neverRun = [...keysDelivered].filter((id) => !runs.has(id)).length;
    const late = tries.filter((t) => t.startedAt > promotedAt + TIMEOUT_MS);
    const lateUnavailable = late.filter((t) => t.error === 'StoreUnavailableError').length;
    const errors = new Map<string, number>();
    for (const t of tries) if (t.error) errors.set(t.error, (errors.get(t.error) ?? 0) + 1);
    console.log(
      `withOnce through a SIGSTOP failover, ${STORES} stores × ${IN_FLIGHT} in flight: ` +
        `${delivered + unanswered} deliveries of ${keysDelivered.size} keys, ${unanswered} unanswered after ` +
        `${MAX_TRIES} tries, ${neverRun} keys never run, ${concurrent} run twice at once, ` +
        `${listenerLeaks().length} MaxListenersExceededWarnings; ${tries.length} tries, errors: ` +
        `${JSON.stringify(Object.fromEntries(errors))}; tries started over ${TIMEOUT_MS} ms after the promotion: ` +
        `${late.length}, ${lateUnavailable} unavailable`,
    );
    expect(unanswered).toBe(0);
    expect(neverRun).toBe(0);
    expect(concurrent).toBe(0);
    expect(fenceNotIncreasing).toBe(0);
    expect(listenerLeaks()).toEqual([]);
    expect(lateUnavailable).toBe(0);
  });

  it('the election and oncePerTick: one leader acting at a time, each tick run once, answered after promotion', async () => {
    const name = `leader-${Date.now()}`;
    const LEASE_MS = 2000;
    // Candidates, each on a store of its own; a leader acts every 20 ms while it leads, through a resource
    // that keeps the highest term it has seen (the fence check).
    const elections: Election[] = [];
    let highestTerm = 0;
    let acts = 0;
    let staleActs = 0;
    let twoLeaders = 0;
    const elected: number[] = [];
    for (let i = 0; i < 3; i++) {
      elections.push(
        elect({
          lock: createLock(store()),
          name,
          id: `candidate-${i}`,
          ttlMs: LEASE_MS,
          retryEveryMs: 100,
          resignOn: false,
          onElected: (l) => elected.push(l.term),
        }),
      );
    }
    let stopping = false;
    const acting = (async () => {
      while (!stopping) {
        const leaders = elections.filter((e) => e.isLeader);
        if (leaders.length > 1) twoLeaders += 1;
        for (const e of leaders) {
          const term = e.term!;
          if (term < highestTerm) staleActs += 1;
          else highestTerm = term;
          acts += 1;
        }
        await sleep(20);
      }
    })();

    // oncePerTick: three replicas, every tick delivered to each (retried on an error, as EventBridge does),
    // a tick every 100 ms through the failover.
    const tickRuns = new Map<string, number>();
    const replicas = Array.from({ length: 3 }, () =>
      oncePerTick(
        async (_event, _context, run) => {
          tickRuns.set(run.tick, (tickRuns.get(run.tick) ?? 0) + 1);
          await sleep(10);
          return run.tick;
        },
        { store: store(), name, logLevel: 'silent' },
      ),
    );
    const tickTries: Try[] = [];
    let ticksUnanswered = 0;
    const ticks: { time: string; issuedAt: number }[] = [];
    const deliverTick = async (replica: (typeof replicas)[number], event: ScheduledEvent) => {
      for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
        const t: Try = { startedAt: performance.now() };
        tickTries.push(t);
        try {
          await replica(event, context());
          return;
        } catch (err) {
          t.error = (err as Error).name;
          await sleep(RETRY_MS);
        }
      }
      ticksUnanswered += 1;
    };
    const deliveries: Promise<void>[] = [];
    // Ticks a second apart in schedule time (recent: older ones are skipped as stale), delivered faster.
    const firstTick = Math.floor(Date.now() / 1000) * 1000;
    const ticking = (async () => {
      for (let i = 0; !stopping; i++) {
        const time = new Date(firstTick + i * 1000).toISOString();
        ticks.push({ time, issuedAt: performance.now() });
        const event = { time, resources: [`arn:aws:events:eu-west-1:1:rule/${name}`] } as ScheduledEvent;
        for (const r of replicas) deliveries.push(deliverTick(r, event));
        await sleep(100);
      }
    })();

    await vi.waitFor(() => expect(elected.length).toBeGreaterThan(0), { timeout: 10_000 });
    // The failover of the shard the election's lock lives on.
    const lockKey = createLock(stores[stores.length - 1]!).keyOf(name);
    const promotedAt = await freezeUntilPromoted(lockKey);
    // The shard serves grants again once its new master has a replica that acknowledges (the old master,
    // resynced): until then grants fail closed (ReplicationError). A candidate leads again by then.
    await awaitReplicated(cluster);
    await vi.waitFor(() => expect(elections.some((e) => e.isLeader)).toBe(true), { timeout: 20_000 });
    const recoveredAt = performance.now();
    await sleep(AFTER_PROMOTION_MS);
    stopping = true;
    await Promise.all([acting, ticking]);
    await Promise.all(deliveries);
    await Promise.all(elections.map((e) => e.resign()));

    const runTwice = [...tickRuns.values()].filter((n) => n > 1).length;
    const neverRun = ticks.filter((t) => !tickRuns.has(t.time));
    const afterRecovery = ticks.filter((t) => t.issuedAt > recoveredAt);
    const lateUnavailable = tickTries.filter(
      (t) => t.startedAt > promotedAt + TIMEOUT_MS && t.error === 'StoreUnavailableError',
    ).length;
    const errors = new Map<string, number>();
    for (const t of tickTries) if (t.error) errors.set(t.error, (errors.get(t.error) ?? 0) + 1);
    console.log(
      `election and oncePerTick through a SIGSTOP failover: ${elected.length} terms, ${acts} acts, ` +
        `${staleActs} with a stale term, ${twoLeaders} moments with two leaders, a leader again ` +
        `${Math.round(recoveredAt - promotedAt)} ms after the promotion; ${ticks.length} ticks × 3 replicas ` +
        `(${afterRecovery.length} after recovery), ${ticksUnanswered} deliveries unanswered, ${runTwice} ticks ` +
        `run twice, ${neverRun.length} never run (${neverRun.filter((t) => t.issuedAt > recoveredAt).length} ` +
        `after recovery), errors ${JSON.stringify(Object.fromEntries(errors))}, ${lateUnavailable} timed out ` +
        `over ${TIMEOUT_MS} ms after promotion; ${listenerLeaks().length} MaxListenersExceededWarnings`,
    );
    expect(twoLeaders).toBe(0);
    expect(staleActs).toBe(0);
    expect([...elected].sort((a, b) => a - b)).toEqual(elected); // terms only grow
    expect(elected.length).toBeGreaterThan(1); // the leader on the frozen master lost its lease; another took over
    expect(ticksUnanswered).toBe(0);
    expect(runTwice).toBe(0);
    // A tick whose claim was written but not acknowledged while the shard resynced (ReplicationError) is skipped
    // by the other replicas until that claim's lease ends (oncePerTick's duplicate policy is 'skip'): at most
    // once then. Once the shard serves again, every tick runs exactly once.
    expect(afterRecovery.length).toBeGreaterThan(5);
    expect(afterRecovery.filter((t) => tickRuns.get(t.time) !== 1)).toEqual([]);
    expect(lateUnavailable).toBe(0);
    expect(listenerLeaks()).toEqual([]);
  });
});
