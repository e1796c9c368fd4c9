/**
 * Issue 25 through withOnce: the handler may run more than once for an id, the effect happens once. Each id's
 * first delivery runs a handler that freezes past its lease (its invocation has 400 ms left, so the lease cannot
 * be extended past the deadline; the handler wakes only once its signal has fired and every redelivery is
 * answered). Redeliveries, several at once per id, take the record over and write the effect with their fence;
 * then the frozen handlers wake and write with theirs: each is refused with StaleFenceError. The resource
 * (PostgreSQL, withFence deciding inside its transaction) shows exactly one effect per distinct id. Then every
 * trigger of the design card hands its handler a fence that a helper accepts: withOnce, an SQS batch item,
 * middy (context.oncely), a per-tick task, a lock holder.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, SQSBatchResponse } from 'aws-lambda';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFenceTable } from '../../layers/oncely/src/effects/pg.js';
import { fencedSet } from '../../layers/oncely/src/effects/redis.js';
import { StaleFenceError } from '../../layers/oncely/src/errors.js';
import {
  createLock,
  type OnceRun,
  oncePerTick,
  type Store,
  withOnceBatch,
} from '../../layers/oncely/src/index.js';
import {
  aborted,
  createEffectsTable,
  pgResource,
  type Resource,
  scratchDatabase,
} from '../support/effects.js';
import {
  ADAPTERS,
  deferred,
  lambdaContext,
  scheduledTick,
  sqsRecord,
  unique,
  wrap,
} from '../support/once.js';
import { startTransport, type TransportFixture } from '../support/transports.js';

const IDS = 20;
/** Redeliveries of each id racing each other once the frozen first run has lost its lease. */
const REDELIVERIES = 3;

let fx: TransportFixture;
let store: Store;
let db: { pool: pg.Pool; stop(): Promise<void> };
let resource: Resource;

beforeAll(async () => {
  [fx, db] = await Promise.all([startTransport('redis'), scratchDatabase('effects_once')]);
  store = fx.store({ timeoutMs: 5000 });
  await createFenceTable(db.pool);
  await createEffectsTable(db.pool);
  resource = pgResource(db.pool);
}, 60_000);

afterAll(async () => {
  await Promise.all([fx?.stop(), db?.stop()]);
});

/** What the handlers saw: runs per id, the frozen runs' signals, and each refusal with its fences. */
function scenario() {
  const runs = new Map<string, number>();
  const signals: AbortSignal[] = [];
  const refused: { id: string; fence: number; current: number | undefined }[] = [];
  const wake = deferred();
  const frozenWrites: Promise<void>[] = [];
  const noop = () => undefined;
  /** The handler's work: freeze first (the first delivery's run), then the effect with the run's fence. */
  const work = async (id: string, once: OnceRun, freeze: boolean) => {
    runs.set(id, (runs.get(id) ?? 0) + 1);
    if (freeze) {
      signals.push(once.signal);
      await aborted(once.signal);
      await wake.promise;
    }
    const write = resource.write(id, `fence-${once.fence}`, once.fence).catch((err: unknown) => {
      if (err instanceof StaleFenceError) refused.push({ id, fence: err.fence, current: err.current });
      throw err;
    });
    if (freeze) frozenWrites.push(write.then(noop, noop));
    return write;
  };
  /**
   * Resolves once every frozen run has written (or been refused). The invocation can end before its handler does
   * (middy answers at the Lambda deadline and leaves the handler running), so `await first` does not say it.
   */
  const frozenWritten = async (n: number) => {
    await expect.poll(() => frozenWrites.length, { timeout: 10_000 }).toBe(n);
    await Promise.all(frozenWrites);
  };
  /** Resolves once every frozen run has lost its lease. */
  const allFrozen = async (n: number) => {
    await expect.poll(() => signals.length, { timeout: 10_000 }).toBe(n);
    await Promise.all(signals.map(aborted));
  };
  return { runs, refused, wake, work, allFrozen, frozenWritten };
}

/** One effect per distinct id at the resource, the writer the redelivery's run. */
async function expectOneEffectEach(ids: readonly string[]) {
  for (const id of ids) expect((await resource.state(id)).effects, id).toBe(1);
  const total = await db.pool.query('SELECT count(*)::int AS n FROM effects WHERE key = ANY($1)', [ids]);
  expect(total.rows[0].n).toBe(ids.length);
}

describe('withOnce effects: once per distinct id, while the handler runs more than once', () => {
  it(`SQS batch: ${IDS} ids, the first run of each frozen past its lease, ${REDELIVERIES} racing redeliveries`, async () => {
    const s = scenario();
    const options = {
      store,
      namespace: unique('fx-sqs'),
      logLevel: 'silent',
      marginMs: 100,
      concurrency: IDS,
    } as const;
    const frozen = withOnceBatch((r, _c, once) => s.work(r.messageId, once, true), options);
    const normal = withOnceBatch((r, _c, once) => s.work(r.messageId, once, false), options);
    const ids = Array.from({ length: IDS }, () => unique('msg'));
    const batch = (of: readonly string[]) => ({
      Records: [...of].sort(() => Math.random() - 0.5).map((id) => sqsRecord(id)),
    });
    const failed = (r: SQSBatchResponse) => new Set(r.batchItemFailures.map((f) => f.itemIdentifier));

    const first = frozen(batch(ids), lambdaContext(400));
    await s.allFrozen(IDS);
    // SQS redelivers (the visibility timeout ran out): several batches at once, retried until each id is done.
    let pending = ids;
    for (let round = 0; pending.length > 0; round++) {
      if (round > 500) throw new Error(`still pending: ${pending.join(', ')}`);
      const results = await Promise.all(
        Array.from({ length: REDELIVERIES }, () => normal(batch(pending), lambdaContext(60_000))),
      );
      pending = pending.filter((id) => results.every((r) => failed(r).has(id)));
      if (pending.length > 0) await delay(10);
    }
    s.wake.resolve();
    expect([...failed(await first)].sort()).toEqual([...ids].sort());
    await s.frozenWritten(IDS);
    // Delivered once more: answered from the records, no run.
    expect((await normal(batch(ids), lambdaContext())).batchItemFailures).toEqual([]);

    await expectOneEffectEach(ids);
    for (const id of ids) expect(s.runs.get(id), id).toBe(2);
    expect(s.refused.map((r) => r.id).sort()).toEqual([...ids].sort());
    for (const r of s.refused) expect(r.current).toBeGreaterThan(r.fence);
    console.log(
      `[effects] withOnceBatch: ${IDS} ids, ${[...s.runs.values()].reduce((a, b) => a + b)} handler runs, ` +
        `${IDS} effects applied, ${s.refused.length} writes refused`,
    );
  }, 60_000);

  it.each(ADAPTERS)(
    `webhook ($type): ${IDS} GitHub deliveries, each first run frozen, redelivered ${REDELIVERIES} times at once`,
    async ({ type }) => {
      const s = scenario();
      const options = { store, namespace: unique('fx-hook'), logLevel: 'silent', marginMs: 100 } as const;
      const handler = (freeze: boolean) =>
        wrap<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>(
          type,
          async (event, _c, once) => ({
            statusCode: 200,
            body: await s.work(event.headers['x-github-delivery'] as string, once, freeze),
          }),
          options,
        );
      const frozen = handler(true);
      const normal = handler(false);
      const delivery = (id: string) =>
        ({
          version: '2.0',
          rawPath: '/hook',
          rawQueryString: '',
          headers: { 'x-github-delivery': id, 'content-type': 'application/json' },
          requestContext: { http: { method: 'POST', path: '/hook' }, requestId: `r-${id}` },
          body: `{"delivery":"${id}"}`,
          isBase64Encoded: false,
        }) as unknown as APIGatewayProxyEventV2;
      const ids = Array.from({ length: IDS }, () => unique('gh'));

      const first = ids.map((id) => frozen(delivery(id), lambdaContext(400)).catch((e: unknown) => e));
      await s.allFrozen(IDS);
      // GitHub redelivers: a 409 (still in progress on the server) is retried until a 200.
      const until200 = async (id: string) => {
        for (let attempt = 0; ; attempt++) {
          const res = await normal(delivery(id), lambdaContext(60_000));
          if (res.statusCode === 200) return res.body;
          if (res.statusCode !== 409 || attempt > 500)
            throw new Error(`${id}: ${res.statusCode} ${res.body}`);
          await delay(10);
        }
      };
      const bodies = await Promise.all(
        ids.flatMap((id) => Array.from({ length: REDELIVERIES }, () => until200(id))),
      );
      expect(new Set(bodies)).toEqual(new Set(['applied'])); // the duplicates get the first run's answer
      s.wake.resolve();
      await Promise.all(first);
      await s.frozenWritten(IDS);
      for (const id of ids) expect((await normal(delivery(id), lambdaContext())).body).toBe('applied');

      await expectOneEffectEach(ids);
      for (const id of ids) expect(s.runs.get(id), id).toBe(2);
      expect(s.refused.map((r) => r.id).sort()).toEqual([...ids].sort());
      console.log(
        `[effects] webhook (${type}): ${IDS} ids, ${[...s.runs.values()].reduce((a, b) => a + b)} handler runs, ` +
          `${IDS} effects applied, ${s.refused.length} writes refused`,
      );
    },
    60_000,
  );
});

describe('every trigger hands its handler a fence and signal that a fenced write takes', () => {
  /** A fenced write with `fence` to a fresh key, then one with an older fence: refused. */
  const writes = async (once: { fence: number; signal: AbortSignal }) => {
    expect(once.signal).toBeInstanceOf(AbortSignal);
    expect(once.signal.aborted).toBe(false);
    const key = unique('trigger');
    expect(await fencedSet(store, { key, value: 'ok', fence: once.fence })).toBe(true);
    await expect(fencedSet(store, { key, value: 'old', fence: once.fence - 1 })).rejects.toBeInstanceOf(
      StaleFenceError,
    );
    return once.fence;
  };
  const options = () => ({ store, namespace: unique('fx-ctx'), logLevel: 'silent' }) as const;

  it.each(ADAPTERS)(
    'withOnce / middy ($type): the third argument (middy: context.oncely)',
    async ({ type }) => {
      const h = wrap<{ id: string }, number>(type, (_e, _c, once) => writes(once), {
        ...options(),
        key: (e: { id: string }) => e.id,
      });
      expect(await h({ id: unique('e') }, lambdaContext())).toBeGreaterThan(0);
    },
  );

  it('an SQS batch item', async () => {
    const h = withOnceBatch((_r, _c, once) => writes(once), options());
    expect((await h({ Records: [sqsRecord(unique('m'))] }, lambdaContext())).batchItemFailures).toEqual([]);
  });

  it('a per-tick task', async () => {
    let fence = 0;
    const h = oncePerTick(
      async (_e, _c, once) => {
        fence = await writes(once);
      },
      { store, logLevel: 'silent', name: unique('tick') },
    );
    await h(scheduledTick(Date.now(), unique('rule')), lambdaContext());
    expect(fence).toBeGreaterThan(0);
  });

  it('a lock holder (using)', async () => {
    const lock = createLock(store);
    expect(await lock.using(unique('held'), (lease) => writes(lease), { ttlMs: 5000 })).toBeGreaterThan(0);
  });
});
