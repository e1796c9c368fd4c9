/**
 * Fenced writes at the resource (issue 25), on real servers: PostgreSQL 15 (a database of its own), DynamoDB
 * (dynalite, in this process) and Redis (a redis-server of the harness's). For each resource:
 * - holder A takes the lock and is frozen past its lease (it acts only once its lease's signal has fired), B
 *   takes the lock over and writes, A wakes and writes: A is refused with StaleFenceError, B's write stays, the
 *   resource shows one effect;
 * - contention: 20 holders per key, rounds of keys, the first holder of each key frozen past its lease and the
 *   others pausing at random (some past their lease): exactly one effect per key, the writer of it the only one
 *   told "applied", every other write that reached the resource refused to its writer. The same run with the
 *   write unfenced shows the stale writes landing (the test's own control).
 * The script's guards (EFFECT_SET) are in effects-redis.test.ts; withOnce in effects-once.test.ts.
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fencedPut } from '../../layers/oncely/src/effects/dynamodb.js';
import { createFenceTable, fencedUpsert, withFence } from '../../layers/oncely/src/effects/pg.js';
import { StaleFenceError, ValidationError } from '../../layers/oncely/src/errors.js';
import { createLock, type Lock, type Store } from '../../layers/oncely/src/index.js';
import {
  aborted,
  contend,
  createEffectsTable,
  dynamoResource,
  pgResource,
  type Resource,
  redisResource,
  scratchDatabase,
  seeded,
  startDynalite,
} from '../support/effects.js';
import { unique } from '../support/once.js';
import { startTransport, type TransportFixture } from '../support/transports.js';

const TTL_MS = 300;
const CONTENDERS = 20;
const KEYS_PER_ROUND = 5;
const ROUNDS = 8;
const SEED = Number(process.env.EFFECTS_SEED ?? 25);

let fx: TransportFixture;
let store: Store;
let lock: Lock;
let db: { pool: pg.Pool; stop(): Promise<void> };
let dyn: { doc: DynamoDBDocumentClient; table: string; stop(): Promise<void> };

beforeAll(async () => {
  [fx, db, dyn] = await Promise.all([startTransport('redis'), scratchDatabase('effects'), startDynalite()]);
  store = fx.store({ timeoutMs: 5000 });
  lock = createLock(store);
  await createFenceTable(db.pool);
  await createEffectsTable(db.pool);
  await db.pool.query(
    'CREATE TABLE orders (id text PRIMARY KEY, status text NOT NULL, fence bigint NOT NULL)',
  );
}, 60_000);

afterAll(async () => {
  await Promise.all([fx?.stop(), db?.stop(), dyn?.stop()]);
});

/** The lock, taken as soon as it is free (the previous holder's PX has run out on the server). */
async function takeOver(key: string) {
  for (;;) {
    const lease = await lock.tryAcquire(key, { ttlMs: 60_000 });
    if (lease) return lease;
    await new Promise((r) => setTimeout(r, 5));
  }
}

const resources: [string, () => Resource, () => Resource][] = [
  ['redis', () => redisResource(store, fx.admin), () => redisResource(store, fx.admin, false)],
  ['postgresql', () => pgResource(db.pool), () => pgResource(db.pool, false)],
  ['dynamodb', () => dynamoResource(dyn.doc, dyn.table), () => dynamoResource(dyn.doc, dyn.table, false)],
];

describe.each(resources)('%s', (name, fenced, unfenced) => {
  it('A frozen past its lease, B takes over and writes, A wakes and writes: refused; B stays; one effect', async () => {
    const r = fenced();
    const key = unique(`ab-${name}`);
    const a = await lock.tryAcquire(`lk:${key}`, { ttlMs: TTL_MS });
    if (!a) throw new Error('A did not get a free lock');
    await aborted(a.signal); // A is frozen: it acts only after its lease is over
    const b = await takeOver(`lk:${key}`);
    expect(b.fence).toBeGreaterThan(a.fence);
    expect(await r.write(key, 'B', b.fence)).toBe('applied');
    const refused = await r.write(key, 'A', a.fence).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StaleFenceError);
    expect(refused).toMatchObject({ name: 'StaleFenceError', fence: a.fence });
    // Where the resource says which fence it holds (Redis, PostgreSQL), it is B's.
    const current = (refused as StaleFenceError).current;
    if (current !== undefined) expect(current).toBe(b.fence);
    expect(await r.state(key)).toEqual({ effects: 1, by: 'B' });
    // B writing again with its own fence (a retried request) is not refused: it finds its effect done.
    expect(await r.write(key, 'B', b.fence)).toBe('done');
    await b.release();
  });

  it(`${CONTENDERS} holders per key, ${ROUNDS} rounds of ${KEYS_PER_ROUND} keys, random pauses: one effect per key, every refusal told`, async () => {
    const r = fenced();
    const rng = seeded(SEED);
    const totals = { applied: 0, refused: 0, skipped: 0, keys: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const keys = Array.from({ length: KEYS_PER_ROUND }, () => unique(`c-${name}`));
      const tally = await contend(lock, r, {
        keys,
        contenders: CONTENDERS,
        ttlMs: TTL_MS,
        stallRate: 0.15,
        rng,
      });
      for (const key of keys) {
        const k = tally.keys.get(key)!;
        expect(k.appliedBy, key).toHaveLength(1);
        expect(k.refused, key).toBeGreaterThanOrEqual(1); // the frozen first holder, at least
        expect(await r.state(key), key).toEqual({ effects: 1, by: k.appliedBy[0] });
      }
      expect(tally.applied + tally.refused + tally.skipped).toBe(KEYS_PER_ROUND * CONTENDERS);
      totals.applied += tally.applied;
      totals.refused += tally.refused;
      totals.skipped += tally.skipped;
      totals.keys += keys.length;
    }
    expect(totals.applied).toBe(totals.keys);
    console.log(
      `[effects] ${name}: ${totals.keys} keys x ${CONTENDERS} holders, TTL ${TTL_MS} ms, seed ${SEED}: ` +
        `${totals.applied} effects applied, ${totals.refused} writes refused (each told), ${totals.skipped} found it done`,
    );
  }, 120_000);

  it('control: the same contention unfenced lands the frozen holders’ stale writes', async () => {
    const r = unfenced();
    const keys = Array.from({ length: KEYS_PER_ROUND }, () => unique(`u-${name}`));
    const tally = await contend(lock, r, {
      keys,
      contenders: CONTENDERS,
      ttlMs: TTL_MS,
      stallRate: 0.15,
      rng: seeded(SEED),
    });
    let stale = 0;
    for (const key of keys) {
      const k = tally.keys.get(key)!;
      expect(k.appliedBy.length, key).toBeGreaterThanOrEqual(2);
      const s = await r.state(key);
      // An append (PostgreSQL, DynamoDB) shows every write; a SET (Redis) ends with the stale writer's value.
      if (name === 'redis') expect(s.by).toBe(k.appliedBy.at(-1));
      else expect(s.effects).toBe(k.appliedBy.length);
      stale += k.appliedBy.length - 1;
    }
    console.log(`[effects] ${name} unfenced: ${keys.length} keys, ${stale} stale writes landed`);
  }, 60_000);
});

describe('postgresql helpers', () => {
  it('fencedUpsert: one statement; an older fence is refused and the row keeps the newer write', async () => {
    const id = unique('order');
    await fencedUpsert(db.pool, { table: 'orders', key: { id }, values: { status: 'created' }, fence: 10 });
    await fencedUpsert(db.pool, { table: 'orders', key: { id }, values: { status: 'charged' }, fence: 12 });
    const err = await fencedUpsert(db.pool, {
      table: 'orders',
      key: { id },
      values: { status: 'created again' },
      fence: 11,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StaleFenceError);
    expect(err).toMatchObject({ fence: 11, current: 12 });
    await fencedUpsert(db.pool, {
      table: 'orders',
      key: { id },
      values: { status: 'charged twice' },
      fence: 12,
    });
    const row = await db.pool.query('SELECT status, fence FROM orders WHERE id = $1', [id]);
    expect(row.rows).toEqual([{ status: 'charged twice', fence: '12' }]);
  });

  it('withFence: a refused transaction runs no write; a write that throws rolls the fence back too', async () => {
    const resource = unique('res');
    let ran = 0;
    await withFence(db.pool, { resource, fence: 5 }, async () => ran++);
    const err = await withFence(db.pool, { resource, fence: 4 }, async () => ran++).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'StaleFenceError', resource, fence: 4, current: 5 });
    expect(ran).toBe(1);
    const boom = new Error('boom');
    await expect(withFence(db.pool, { resource, fence: 9 }, async () => Promise.reject(boom))).rejects.toBe(
      boom,
    );
    const f = await db.pool.query('SELECT fence FROM oncely_fences WHERE resource = $1', [resource]);
    expect(f.rows).toEqual([{ fence: '5' }]);
    // On a client the caller checked out, the transaction is the caller's connection's.
    const client = await db.pool.connect();
    try {
      expect(
        await withFence(client, { resource, fence: 6 }, async (tx) => (tx === client ? 'same' : 'other')),
      ).toBe('same');
    } finally {
      client.release();
    }
  });

  it('bad input is a ValidationError naming each problem; fence 0 (an unfenced run) is refused', async () => {
    const err = await withFence(db.pool, { resource: '', fence: 0, table: 'a.b.c' }, async () => 1).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).problems).toEqual([
      'resource must be a non-empty string',
      'fence is 0: the handler ran without a record (failOpen, missingKey "run" or ONCELY_DISABLED)',
      'table must be a table or column name (name or schema.name)',
    ]);
    await expect(
      fencedUpsert(db.pool, { table: 'orders', key: {}, values: {}, fence: 1.5 }),
    ).rejects.toMatchObject({
      problems: [
        'key must name at least one column',
        'fence must be a whole number from 1 to 9007199254740991, got 1.5',
      ],
    });
  });
});

describe('dynamodb helpers', () => {
  it('fencedPut: an older fence is refused, a newer one replaces; the caller’s own condition still applies', async () => {
    const id = unique('item');
    await fencedPut(dyn.doc, { TableName: dyn.table, Item: { id, v: 'first' }, fence: 7 });
    const err = await fencedPut(dyn.doc, { TableName: dyn.table, Item: { id, v: 'stale' }, fence: 6 }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ name: 'StaleFenceError', fence: 6 });
    await fencedPut(dyn.doc, { TableName: dyn.table, Item: { id, v: 'second' }, fence: 8 });
    // The caller's condition failing is DynamoDB's error, not a stale fence.
    const own = await fencedPut(dyn.doc, {
      TableName: dyn.table,
      Item: { id, v: 'third' },
      fence: 9,
      ConditionExpression: 'v = :never',
      ExpressionAttributeValues: { ':never': 'nope' },
    }).catch((e: unknown) => e);
    expect((own as Error).name).toBe('ConditionalCheckFailedException');
    const item = await dynamoResource(dyn.doc, dyn.table).state(id);
    expect(item.effects).toBe(0);
    const { Item } = await dyn.doc.send(
      new (await import('@aws-sdk/lib-dynamodb')).GetCommand({ TableName: dyn.table, Key: { id } }),
    );
    expect(Item).toEqual({ id, v: 'second', fence: 8 });
  });

  it('a placeholder of the fence condition used by the caller is a ValidationError', async () => {
    await expect(
      fencedPut(dyn.doc, {
        TableName: dyn.table,
        Item: { id: 'x' },
        fence: 1,
        ExpressionAttributeNames: { '#oncelyFence': 'f' },
      }),
    ).rejects.toMatchObject({ name: 'ValidationError', problems: ['#oncelyFence is taken'] });
  });
});
