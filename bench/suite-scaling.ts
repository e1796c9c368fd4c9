/**
 * Scaling: p50, p99, calls/s and the share of calls answered at 1, 10, 100 and 1,000 concurrent calls in one
 * process, over REST (the local gateway), TCP standalone and a 3-master cluster, oncely and the peers on the
 * same servers, interleaved per round. Two operations, each against the peer that does the same thing:
 *
 *   lock  one acquire + release pair on a fresh key: oncely createLock vs @upstash/lock (REST) and
 *         node-redlock (TCP, cluster)
 *   once  one first call of a handler (a fresh event): oncely withOnce vs Powertools makeIdempotent with its
 *         cache persistence layer (TCP, cluster; none of Powertools' persistence layers speaks REST, so
 *         oncely's REST row has no peer), both configured as the run-once suite's rows (suite-once.ts CONFIG:
 *         the key by the same expression, no payload check, the same retention)
 *
 * Each side uses the client a user of it would: oncely builds its own (upstashStore / redisStore /
 * clusterStore from options, as fromEnv does in a function), node-redlock takes an ioredis Redis or Cluster,
 * @upstash/lock an @upstash/redis client with its defaults, Powertools an @redis/client client or cluster.
 */
import { makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { CachePersistenceLayer } from '@aws-lambda-powertools/idempotency/cache';
import { createClient, createCluster } from '@redis/client';
import type { Context } from 'aws-lambda';
import { Cluster, Redis } from 'ioredis';
import { startCluster } from '../dev/redis-server.js';
import type { Store } from '../layers/oncely/src/index.js';
import { clusterStore, redisStore } from '../layers/oncely/src/ioredis.js';
import { type Contender, type LoadResult, underLoad } from './harness.js';
import { type LockContender, oncely, redlockTcp, upstashLock } from './locks.js';
import { type Stack, TOKEN } from './servers.js';
import { median } from './stats.js';
import { context, oncelyCallOptions, powertoolsCallConfig } from './suite-once.js';

type Layer = typeof import('../layers/oncely/src/index.js');

export type Transport = 'REST' | 'TCP' | 'cluster';
export type Operation = 'lock' | 'once';

export interface ScalingSizes {
  /** Calls in flight per contender, one level after another. */
  concurrency: number[];
  /** Interleaved rounds per level. */
  rounds: number;
  /** Each contender's share of a round, ms. */
  durationMs: number;
  /** The harness's bound on one call (the peers have no timeout of their own), ms. */
  callTimeoutMs: number;
}

export const SCALING_FULL: ScalingSizes = {
  concurrency: [1, 10, 100, 1000],
  rounds: 3,
  durationMs: 600,
  callTimeoutMs: 10_000,
};
export const SCALING_QUICK: ScalingSizes = { ...SCALING_FULL, rounds: 2, durationMs: 250 };

/** One transport and operation: oncely and its peers at every level. */
export interface ScalingGroup {
  transport: Transport;
  op: Operation;
  /** Contender ids, oncely first. */
  ids: string[];
  /** Which client each contender uses, by id. */
  clients: Record<string, string>;
  /** One cell per contender and level. */
  cells: LoadResult[];
}

export interface ScalingResult {
  sizes: ScalingSizes;
  groups: ScalingGroup[];
}

interface Entry {
  contender: Contender;
  client: string;
}

/** A lock pair on a fresh key per call: a lost reply cannot leave the next call's key held. */
function lockEntry(c: LockContender, client: string): Entry {
  return {
    client,
    contender: {
      id: c.id,
      label: c.label,
      async op(key, i) {
        const held = await c.acquire(`${key}:${i}`);
        await held.release();
      },
    },
  };
}

type Call = (event: { id: string }, context: Context) => Promise<unknown>;
const handler = async (event: { id: string }) => ({ ok: event.id });
const noop = () => {};

/** A first call per op: the event's id is new every time. */
function onceEntry(id: string, label: string, call: Call, client: string): Entry {
  return {
    client,
    contender: {
      id,
      label,
      async op(key, i) {
        const event = { id: `${key}:${i}` };
        const out = (await call(event, context)) as { ok?: string };
        if (out?.ok !== event.id) throw new Error(`${label}: wrong result`);
      },
    },
  };
}

function oncelyOnce(layer: Layer, store: Store, label: string, client: string): Entry {
  const call = layer.withOnce(handler, { store, ...oncelyCallOptions });
  return onceEntry('oncely', label, call, client);
}

function powertoolsOnce(client: unknown, label: string, clientLabel: string): Entry {
  const persistenceStore = new CachePersistenceLayer({ client: client as never });
  const call = makeIdempotent(async (event: { id: string }, _context: Context) => handler(event), {
    persistenceStore,
    config: powertoolsCallConfig(),
  });
  return onceEntry('powertools', label, call, clientLabel);
}

export async function scalingSuite(
  stack: Stack,
  sizes: ScalingSizes,
  log: (s: string) => void,
): Promise<ScalingResult> {
  const layer: Layer = await import('../layers/oncely/src/index.js');
  const groups: ScalingGroup[] = [];
  const closers: (() => Promise<unknown> | undefined)[] = [];
  const { host, port } = stack.redis;
  log('  starting a 3-master cluster');
  const cluster = await startCluster({ masters: 3 });
  closers.push(() => cluster.stop());
  try {
    // REST: the gateway in front of the shared redis-server.
    const restStore = layer.upstashStore({ url: stack.gateway.url, token: TOKEN });
    closers.push(() => restStore.close());
    const ownRest = 'upstashStore({ url, token }): @upstash/redis over its node:http requester';
    const rest: [Operation, Entry[]][] = [
      [
        'lock',
        [
          lockEntry(oncely('oncely', 'oncely lock', restStore, ownRest), ownRest),
          lockEntry(
            upstashLock(stack.gateway.url, TOKEN),
            '@upstash/redis `new Redis({ url, token })`, defaults',
          ),
        ],
      ],
      ['once', [oncelyOnce(layer, restStore, 'oncely withOnce', ownRest)]],
    ];

    // TCP standalone: the same redis-server.
    const tcpStore = redisStore({ host, port });
    closers.push(() => tcpStore.close());
    const ioredis = new Redis({ host, port, protocol: 2 });
    closers.push(async () => ioredis.disconnect());
    const node = await createClient({ url: `redis://${host}:${port}` }).connect();
    closers.push(() => node.quit().catch(noop));
    const ownTcp = 'redisStore({ host, port }): its own ioredis Redis';
    const tcp: [Operation, Entry[]][] = [
      [
        'lock',
        [
          lockEntry(oncely('oncely', 'oncely lock', tcpStore, ownTcp), ownTcp),
          lockEntry(redlockTcp([ioredis], 'node-redlock'), 'one ioredis `new Redis({ host, port })`'),
        ],
      ],
      [
        'once',
        [
          oncelyOnce(layer, tcpStore, 'oncely withOnce', ownTcp),
          powertoolsOnce(node, 'Powertools makeIdempotent', '@redis/client `createClient({ url })`'),
        ],
      ],
    ];

    // A 3-master cluster.
    const clStore = clusterStore({ nodes: cluster.seeds });
    closers.push(() => clStore.close());
    const ioCluster = new Cluster(cluster.seeds.map((s) => ({ host: s.host, port: s.port })));
    closers.push(async () => ioCluster.disconnect());
    const nodeCluster = await createCluster({
      rootNodes: cluster.seeds.map((s) => ({ url: `redis://${s.host}:${s.port}` })),
    }).connect();
    closers.push(() => nodeCluster.quit().catch(noop));
    const ownCluster = 'clusterStore({ nodes }): its own ioredis Cluster';
    const clustered: [Operation, Entry[]][] = [
      [
        'lock',
        [
          lockEntry(oncely('oncely', 'oncely lock', clStore, ownCluster), ownCluster),
          lockEntry(redlockTcp([ioCluster], 'node-redlock'), 'one ioredis `new Cluster(seeds)`'),
        ],
      ],
      [
        'once',
        [
          oncelyOnce(layer, clStore, 'oncely withOnce', ownCluster),
          powertoolsOnce(
            nodeCluster,
            'Powertools makeIdempotent',
            '@redis/client `createCluster({ rootNodes })`',
          ),
        ],
      ],
    ];

    for (const [transport, ops] of [
      ['REST', rest],
      ['TCP', tcp],
      ['cluster', clustered],
    ] as const) {
      for (const [op, entries] of ops) {
        const contenders = entries.map((e) => e.contender);
        const tag = `bench:scale:${transport}:${op}`;
        // Warm every client one call at a time (code compiled, connections open, scripts cached).
        for (const c of contenders) for (let i = 0; i < 50; i++) await c.op(`${tag}:${c.id}:warm`, i);
        const cells: LoadResult[] = [];
        for (const concurrency of sizes.concurrency) {
          const level = await underLoad(contenders, { ...sizes, concurrency, tag: `${tag}:${concurrency}` });
          cells.push(...level);
          log(
            `  ${transport} ${op} × ${concurrency}: ` +
              level
                .map(
                  (x) =>
                    `${x.id} ${Math.round(median(x.rounds.map((r) => r.perSecond)))}/s ` +
                    `p50 ${x.summary.p50.toFixed(2)} ms, p99 ${x.summary.p99.toFixed(1)} ms, ` +
                    `${x.answered}/${x.calls} answered`,
                )
                .join(' · '),
          );
        }
        groups.push({
          transport,
          op,
          ids: contenders.map((c) => c.id),
          clients: Object.fromEntries(entries.map((e) => [e.contender.id, e.client])),
          cells,
        });
      }
    }
    return { sizes, groups };
  } finally {
    for (const close of closers.reverse()) await close();
  }
}
