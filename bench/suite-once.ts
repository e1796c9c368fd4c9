/**
 * Run-once: a trivial handler's first call and duplicate call, oncely `withOnce` vs Powertools
 * `makeIdempotent` with its cache persistence layer (`@redis/client`), both over TCP on the same server, and
 * oncely over REST; then an SQS batch of new records: oncely `withOnceBatch` vs Powertools
 * `BatchProcessor` + `makeIdempotent` on the record handler.
 *
 * Like for like (CONFIG below, stated in docs/benchmarks.md): both sides choose the key with the same JMESPath
 * expression, evaluated by the same package (@aws-lambda-powertools/jmespath, which oncely loads for a
 * `{ jmespath }` spec): a call on its `id`, with no payload check on either side; a batch record on its
 * `messageId`, with its `body` checked on reuse on both sides. Records are kept for the same time on both
 * sides, and the local-cache row turns on both caches with the same size, each keeping a completed record until
 * the record expires. Each side talks through one connection of the client its users use (Powertools' cache
 * layer takes @redis/client, not ioredis). oncely's log lines go to a no-op logger (formatted, not written).
 */

import { randomBytes } from 'node:crypto';
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { CachePersistenceLayer } from '@aws-lambda-powertools/idempotency/cache';
import { createClient } from '@redis/client';
import type { Context, SQSEvent, SQSRecord } from 'aws-lambda';
import { Redis } from 'ioredis';
import { redisStore } from '../layers/oncely/src/ioredis.js';
import { FENCE_GRACE_MS } from '../layers/oncely/src/once/record.js';
import { ONCE_SCRIPTS } from '../layers/oncely/src/scripts.js';
import { type Contender, type SequentialResult, sequential } from './harness.js';
import { ONCELY_REST } from './locks.js';
import { CONFIG } from './once-config.js';
import { type Counter, countEach, type OpCount } from './roundtrips.js';
import { type Stack, startRoundTripProxy, TOKEN } from './servers.js';
import type { Sizes } from './suite-locks.js';

export type Layer = typeof import('../layers/oncely/src/index.js');
type Call = (event: { id: string }) => Promise<unknown>;
type BatchCall = (event: SQSEvent) => Promise<unknown>;

export const context = {
  functionName: 'bench',
  functionVersion: '$LATEST',
  awsRequestId: 'bench-request',
  invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:bench',
  memoryLimitInMB: '1024',
  logGroupName: '/aws/lambda/bench',
  logStreamName: 'bench',
  callbackWaitsForEmptyEventLoop: true,
  getRemainingTimeInMillis: () => 60_000,
  done() {},
  fail() {},
  succeed() {},
} as Context;

const handler = async (event: { id: string }) => ({ ok: event.id });
const noop = () => {};

/** withOnce's options for a single call (the TCP, cached and REST rows; the scaling suite too). */
export const oncelyCallOptions = {
  key: { jmespath: CONFIG.callKey },
  payload: false,
  retentionMs: CONFIG.retentionMs,
  logger: noop,
} as const;

/** The cache oncely's cached row turns on: the size and lifetime Powertools' cache gets. */
export const oncelyLocalCache = { maxEntries: CONFIG.localCacheEntries, ttlMs: CONFIG.retentionMs };

/** Powertools' configuration for a single call; `useLocalCache` for the cached row. */
export const powertoolsCallConfig = (useLocalCache = false) =>
  new IdempotencyConfig({
    eventKeyJmesPath: CONFIG.callKey,
    expiresAfterSeconds: CONFIG.retentionMs / 1000,
    ...(useLocalCache ? { useLocalCache, maxLocalCacheSize: CONFIG.localCacheEntries } : {}),
  });

/** Which client each contender talks through (docs/benchmarks.md states it on every row). */
export const ONCE_CLIENTS: Record<string, string> = {
  oncely: 'redisStore(client) on the shared ioredis `new Redis({ host, port })`',
  'oncely-cached': 'redisStore(client) on the shared ioredis `new Redis({ host, port })`',
  powertools: 'CachePersistenceLayer on the shared @redis/client `createClient({ url })`',
  'powertools-cached': 'CachePersistenceLayer on the shared @redis/client `createClient({ url })`',
  'oncely-rest': ONCELY_REST,
  'raw-once': 'the shared ioredis `new Redis({ host, port })`',
};

export interface OnceSuiteResult {
  first: SequentialResult[];
  duplicate: SequentialResult[];
  batch: SequentialResult[];
  counts: Record<string, { first: OpCount; duplicate: OpCount }>;
  batchCounts: Record<string, OpCount>;
}

export interface Libs {
  rawOnce: Call;
  oncelyTcp: Call;
  /** withOnce with `localCache` on: a warm container answers a duplicate from memory. */
  oncelyCached: Call;
  oncelyRest: Call;
  powertools: Call;
  /** makeIdempotent with `useLocalCache` on, the same size and lifetime as oncelyCached's cache. */
  powertoolsCached: Call;
  oncelyBatch: BatchCall;
  powertoolsBatch: BatchCall;
  close(): Promise<void>;
}

/** Every contender on the given endpoints (the real server, or the counting proxy in front of it). */
export async function libs(
  layer: Layer,
  tcp: { host: string; port: number },
  restUrl: string,
): Promise<Libs> {
  const ioredis = new Redis({ host: tcp.host, port: tcp.port, protocol: 2 });
  const tcpStore = redisStore(ioredis);
  const restStore = layer.upstashStore({ url: restUrl, token: TOKEN });
  const redisClient = await createClient({ url: `redis://${tcp.host}:${tcp.port}` }).connect();
  // A persistence layer per configuration: Powertools binds one to the first configuration it serves.
  const persistence = () => new CachePersistenceLayer({ client: redisClient as never });

  for (const script of ONCE_SCRIPTS) await ioredis.script('LOAD', script.lua);
  const oncelyTcp = layer.withOnce(handler, { store: tcpStore, ...oncelyCallOptions });
  const oncelyRest = layer.withOnce(handler, { store: restStore, ...oncelyCallOptions });
  const oncelyCached = layer.withOnce(handler, {
    store: tcpStore,
    ...oncelyCallOptions,
    localCache: oncelyLocalCache,
  });
  const idempotent = (config: IdempotencyConfig) =>
    makeIdempotent(async (event: { id: string }, _context: Context) => handler(event), {
      persistenceStore: persistence(),
      config,
    });
  const powertools = idempotent(powertoolsCallConfig());
  const powertoolsCached = idempotent(powertoolsCallConfig(true));

  const recordHandler = async (record: SQSRecord) => ({ ok: record.messageId });
  const oncelyBatch = layer.withOnceBatch(recordHandler, {
    store: tcpStore,
    key: { jmespath: CONFIG.recordKey },
    payload: { jmespath: CONFIG.recordPayload },
    retentionMs: CONFIG.retentionMs,
    logger: noop,
  });
  const batchConfig = new IdempotencyConfig({
    eventKeyJmesPath: CONFIG.recordKey,
    payloadValidationJmesPath: CONFIG.recordPayload,
    expiresAfterSeconds: CONFIG.retentionMs / 1000,
  });
  const idempotentRecord = makeIdempotent(recordHandler, {
    persistenceStore: persistence(),
    config: batchConfig,
  });
  const processor = new BatchProcessor(EventType.SQS);
  const powertoolsBatch = (event: SQSEvent) => {
    batchConfig.registerLambdaContext(context);
    return processPartialResponse(event, idempotentRecord, processor, { context });
  };
  return {
    rawOnce: rawOnce(ioredis),
    oncelyTcp: (e) => oncelyTcp(e, context),
    oncelyCached: (e) => oncelyCached(e, context),
    oncelyRest: (e) => oncelyRest(e, context),
    powertools: (e) => powertools(e, context),
    powertoolsCached: (e) => powertoolsCached(e, context),
    oncelyBatch: (e) => oncelyBatch(e, context),
    powertoolsBatch,
    async close() {
      await Promise.all([tcpStore.close(), restStore.close()]);
      ioredis.disconnect();
      await redisClient.quit().catch(() => undefined);
    },
  };
}

/**
 * oncely's claim and complete scripts sent straight from ioredis, no library around them (no key digest,
 * payload hash, lease, logging): what the two scripts cost, apart from withOnce. Informational.
 */
function rawOnce(redis: Redis): Call {
  const [claim, complete] = ONCE_SCRIPTS;
  const grace = FENCE_GRACE_MS;
  return async (event) => {
    const keys = [`oncely:once:{raw:${event.id}}:rec`, `oncely:once:{raw:${event.id}}:fence`];
    const token = randomBytes(16).toString('base64url');
    const reply = (await redis.evalsha(
      claim!.sha1,
      2,
      ...keys,
      token,
      30_000,
      '',
      30_000 + grace,
      Date.now(),
    )) as [number, string];
    if (reply[0] === 2) return JSON.parse(reply[1].slice(1));
    if (reply[0] !== 1) throw new Error(`raw once: claim answered ${reply[0]}`);
    const result = await handler(event);
    await redis.evalsha(
      complete!.sha1,
      2,
      ...keys,
      token,
      reply[1],
      `j${JSON.stringify(result)}`,
      CONFIG.retentionMs,
      CONFIG.retentionMs + grace,
      '',
    );
    return result;
  };
}

let unique = 0;
const fresh = (tag: string) => `${tag}-${process.pid}-${Date.now().toString(36)}-${++unique}`;

export function sqsEvent(tag: string, n: number = CONFIG.batchSize): SQSEvent {
  return {
    Records: Array.from({ length: n }, (_, i) => {
      const messageId = fresh(`${tag}-${i}`);
      return {
        messageId,
        receiptHandle: `rh-${messageId}`,
        body: JSON.stringify({ order: messageId }),
        attributes: {
          ApproximateReceiveCount: '1',
          SentTimestamp: String(Date.now()),
          SenderId: 'bench',
          ApproximateFirstReceiveTimestamp: String(Date.now()),
        },
        messageAttributes: {},
        md5OfBody: '',
        eventSource: 'aws:sqs',
        eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:bench',
        awsRegion: 'eu-west-1',
      };
    }),
  };
}

/** First call: a new event every time. Duplicate: one of a pool of completed events, again. */
export function callContenders(l: Libs, poolSize: number): { first: Contender[]; duplicate: Contender[] } {
  const entries: [string, string, Call][] = [
    ['oncely', 'oncely withOnce TCP', l.oncelyTcp],
    ['powertools', 'Powertools makeIdempotent (@redis/client)', l.powertools],
    ['oncely-rest', 'oncely withOnce REST', l.oncelyRest],
    ['raw-once', "raw ioredis, oncely's scripts", l.rawOnce],
  ];
  // The local caches only change duplicates (the pool fits both).
  const cached: [string, string, Call][] = [
    ['oncely-cached', 'oncely withOnce TCP, localCache on', l.oncelyCached],
    ['powertools-cached', 'Powertools makeIdempotent (@redis/client), useLocalCache on', l.powertoolsCached],
  ];
  const pools = new Map<string, { id: string }[]>();
  return {
    first: entries.map(([id, label, call]) => ({
      id,
      label,
      client: ONCE_CLIENTS[id],
      op: async (key) => {
        await call({ id: fresh(key) });
      },
    })),
    duplicate: [...entries, ...cached].map(([id, label, call]) => ({
      id,
      label,
      client: ONCE_CLIENTS[id],
      op: async (key, i) => {
        let pool = pools.get(id);
        if (!pool) {
          pool = Array.from({ length: poolSize }, () => ({ id: fresh(`${key}-dup`) }));
          for (const e of pool) await call(e);
          pools.set(id, pool);
        }
        const out = await call(pool[i % poolSize]!);
        if ((out as { ok?: string }).ok !== pool[i % poolSize]!.id) throw new Error(`${label}: wrong replay`);
      },
    })),
  };
}

/**
 * Warm-up calls per contender for the run-once rows (a tenth as many batches): withOnce's first call kept V8's
 * optimising compiler busy longer than the lock paths. Measured under load, per round of 75 calls, process
 * CPU / main thread CPU: after 2,000 calls still 170-230 / 125-165 µs (the compiler's threads on top), after
 * 5,000 about 100-140 / 100-130 µs; Powertools' had settled by 2,000.
 */
export const ONCE_WARMUP = 5000;

export async function onceSuite(
  stack: Stack,
  sizes: Sizes,
  log: (s: string) => void,
): Promise<OnceSuiteResult | { skipped: string }> {
  const layer: Layer = await import('../layers/oncely/src/index.js');
  if (typeof layer.withOnce !== 'function') return { skipped: 'the run-once module is not present' };
  const { host, port } = stack.redis;
  const l = await libs(layer, { host, port }, stack.gateway.url);
  const seqSizes = {
    ...sizes,
    warmup: Math.max(sizes.warmup, ONCE_WARMUP),
    perRound: Math.max(20, Math.round(sizes.perRound / 2)),
    servers: { gateway: stack.gateway.pid, redis: stack.redis.pid },
  };
  try {
    const { first, duplicate } = callContenders(l, CONFIG.duplicatePool);
    log('  run-once: first calls');
    const firstResult = await sequential(first, { ...seqSizes, tag: 'bench:once1' });
    log('  run-once: duplicate calls');
    const dupResult = await sequential(duplicate, { ...seqSizes, tag: 'bench:once2' });
    log('  SQS batch of 10');
    const batch: Contender[] = [
      {
        id: 'oncely',
        label: 'oncely withOnceBatch TCP',
        client: ONCE_CLIENTS.oncely,
        op: (key) => l.oncelyBatch(sqsEvent(key)).then(noop),
      },
      {
        id: 'powertools',
        label: 'Powertools BatchProcessor + makeIdempotent',
        client: ONCE_CLIENTS.powertools,
        op: (key) => l.powertoolsBatch(sqsEvent(key)).then(noop),
      },
    ];
    const batchResult = await sequential(batch, {
      ...seqSizes,
      perRound: Math.max(10, Math.round(seqSizes.perRound / 5)),
      warmup: Math.max(5, Math.round(seqSizes.warmup / 10)),
      tag: 'bench:batch',
    });

    log('  run-once: round trips');
    const proxy = await startRoundTripProxy({ host, port });
    const counted = await libs(layer, proxy, stack.gateway.url);
    try {
      const tcpCounter: Counter = async () => proxy.roundTrips;
      const n = sizes.countN;
      const count = async (call: Call, counter: Counter) => {
        await call({ id: fresh('warm') }); // connections open, scripts cached
        const events = Array.from({ length: n }, () => ({ id: fresh('rt') }));
        const first = await countEach(counter, stack.admin, n, (i) => call(events[i]!).then(noop));
        const duplicate = await countEach(counter, stack.admin, n, (i) => call(events[i]!).then(noop));
        return { first, duplicate };
      };
      const counts = {
        oncely: await count(counted.oncelyTcp, tcpCounter),
        'oncely-cached': await count(counted.oncelyCached, tcpCounter),
        powertools: await count(counted.powertools, tcpCounter),
        'powertools-cached': await count(counted.powertoolsCached, tcpCounter),
        'oncely-rest': await count(counted.oncelyRest, stack.gateway.requests),
      };
      await counted.oncelyBatch(sqsEvent('warm'));
      await counted.powertoolsBatch(sqsEvent('warm'));
      const batches = Math.max(3, Math.round(n / 4));
      const batchCounts = {
        oncely: await countEach(tcpCounter, stack.admin, batches, () =>
          counted.oncelyBatch(sqsEvent('rt')).then(noop),
        ),
        powertools: await countEach(tcpCounter, stack.admin, batches, () =>
          counted.powertoolsBatch(sqsEvent('rt')).then(noop),
        ),
      };
      return { first: firstResult, duplicate: dupResult, batch: batchResult, counts, batchCounts };
    } finally {
      await counted.close();
      await proxy.close();
    }
  } finally {
    await l.close();
  }
}
