/**
 * The resources of oncely/effects on real servers (Redis through any Store, PostgreSQL, DynamoDB on dynalite),
 * each as one effect per key that a test can count at the resource, and the contention that issue 25 measured:
 * many holders of one lock per key, the first of them frozen past its lease until a successor has written, the
 * others pausing at random (some past their lease), each then writing with its fence.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import dynalite from 'dynalite';
import pg from 'pg';
import { fencedUpdate } from '../../layers/oncely/src/effects/dynamodb.js';
import { withFence } from '../../layers/oncely/src/effects/pg.js';
import { fencedSet } from '../../layers/oncely/src/effects/redis.js';
import { StaleFenceError } from '../../layers/oncely/src/errors.js';
import type { Lock, Store } from '../../layers/oncely/src/index.js';

/** One effect per key, as the resource shows it. */
export interface Resource {
  readonly name: string;
  /** Whether an effect has been applied for `key` (what a holder reads before it acts). */
  done(key: string): Promise<boolean>;
  /**
   * The effect, decided and written in one fenced operation (unless the resource was made unfenced: then a
   * plain write, as a table that trusts the lock would take it): 'applied', 'done' when the operation found
   * the effect already there (nothing written), StaleFenceError when the fence was older than the resource's.
   */
  write(key: string, writer: string, fence: number): Promise<'applied' | 'done'>;
  /** How many effects the resource shows for `key`, and whose the last one is. */
  state(key: string): Promise<{ effects: number; by: string | undefined }>;
}

// ---------------------------------------------------------------------------------------------------- Redis

/** The effect is the key's value (the writer's id); a landed stale write would replace the successor's. */
export function redisResource(
  store: Store,
  admin: { get(k: string): Promise<string | null> },
  fenced = true,
) {
  return {
    name: fenced ? 'redis' : 'redis (unfenced)',
    done: async (key: string) => (await admin.get(key)) !== null,
    // Decided in the script: the fence first, then NX (a current holder finding the effect there).
    write: async (key: string, writer: string, fence: number) => {
      if (!fenced)
        await (admin as unknown as { set(k: string, v: string): Promise<unknown> }).set(key, writer);
      else if (!(await fencedSet(store, { key, value: writer, fence, ifAbsent: true })))
        return 'done' as const;
      return 'applied' as const;
    },
    async state(key: string) {
      const v = await admin.get(key);
      return { effects: v === null ? 0 : 1, by: v ?? undefined };
    },
  } satisfies Resource;
}

// ----------------------------------------------------------------------------------------------- PostgreSQL

export const PG = { host: '127.0.0.1', port: 5432, user: 'postgres' } as const;

/** A database of its own (dropped by the returned stop), and a pool on it. */
export async function scratchDatabase(label: string): Promise<{ pool: pg.Pool; stop(): Promise<void> }> {
  const name = `oncely_${label}_${process.pid}_${Date.now()}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  const admin = new pg.Client({ ...PG, database: 'test' });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const pool = new pg.Pool({ ...PG, database: name, max: 30 });
  return {
    pool,
    async stop() {
      // A connection still closing when the database is dropped is told so (57P01): expected here.
      pool.on('error', () => undefined);
      await pool.end();
      const c = new pg.Client({ ...PG, database: 'test' });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** The effect is a row in `effects` (an append: every write that lands shows), written under withFence. */
export function pgResource(pool: pg.Pool, fenced = true) {
  const insert = (db: pg.ClientBase | pg.Pool, key: string, writer: string) =>
    db
      .query('INSERT INTO effects (key, writer) VALUES ($1, $2)', [key, writer])
      .then(() => 'applied' as const);
  const found = async (db: pg.ClientBase | pg.Pool, key: string) =>
    (await db.query('SELECT 1 FROM effects WHERE key = $1 LIMIT 1', [key])).rowCount !== 0;
  return {
    name: fenced ? 'postgresql' : 'postgresql (unfenced)',
    done: (key: string) => found(pool, key),
    // Decided inside the fenced transaction: a newer holder's raise of the fence comes first, or this one's does.
    write: (key: string, writer: string, fence: number) =>
      fenced
        ? withFence(pool, { resource: key, fence }, async (tx) =>
            (await found(tx, key)) ? ('done' as const) : insert(tx, key, writer),
          )
        : insert(pool, key, writer),
    async state(key: string) {
      const r = await pool.query<{ writer: string }>(
        'SELECT writer FROM effects WHERE key = $1 ORDER BY id',
        [key],
      );
      return { effects: r.rowCount ?? 0, by: r.rows.at(-1)?.writer };
    },
  } satisfies Resource;
}

export async function createEffectsTable(pool: pg.Pool): Promise<void> {
  await pool.query(
    'CREATE TABLE IF NOT EXISTS effects (id bigserial PRIMARY KEY, key text NOT NULL, writer text NOT NULL)',
  );
}

// ------------------------------------------------------------------------------------------------- DynamoDB

/** dynalite in this process on a free port, a document client on it, and a table keyed by `id`. */
export async function startDynalite(): Promise<{
  doc: DynamoDBDocumentClient;
  table: string;
  stop(): Promise<void>;
}> {
  const server = dynalite({ createTableMs: 0, updateTableMs: 0, deleteTableMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  const raw = new DynamoDBClient({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
  });
  const table = 'effects';
  await raw.send(
    new CreateTableCommand({
      TableName: table,
      AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  return {
    doc: DynamoDBDocumentClient.from(raw),
    table,
    async stop() {
      raw.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The effect is `ADD effects 1` on the item (a count: every write that lands shows), through fencedUpdate. */
export function dynamoResource(doc: DynamoDBDocumentClient, table: string, fenced = true) {
  const update = (key: string, writer: string) => ({
    TableName: table,
    Key: { id: key },
    UpdateExpression: 'SET writer = :w ADD effects :one',
    ExpressionAttributeValues: { ':w': writer, ':one': 1 },
  });
  const read = async (key: string) =>
    (await doc.send(new GetCommand({ TableName: table, Key: { id: key }, ConsistentRead: true }))).Item;
  return {
    name: fenced ? 'dynamodb' : 'dynamodb (unfenced)',
    done: async (key: string) => (await read(key))?.effects !== undefined,
    write: async (key: string, writer: string, fence: number) => {
      if (!fenced) await doc.send(new UpdateCommand(update(key, writer)));
      else {
        // The effect's own condition (not done yet) ANDed with the fence's: one request decides and writes.
        const once = { ...update(key, writer), ConditionExpression: 'attribute_not_exists(effects)' };
        try {
          await fencedUpdate(doc, { ...once, fence });
        } catch (err) {
          if ((err as Error).name === 'ConditionalCheckFailedException') return 'done' as const;
          throw err;
        }
      }
      return 'applied' as const;
    },
    async state(key: string) {
      const item = await read(key);
      return { effects: Number(item?.effects ?? 0), by: item?.writer as string | undefined };
    },
  } satisfies Resource;
}

// ----------------------------------------------------------------------------------------------- contention

/** What one contender did: wrote and landed, wrote and was told it was refused, or found the work done. */
export type Outcome = 'applied' | 'refused' | 'skipped';

export interface Tally {
  applied: number;
  refused: number;
  skipped: number;
  /** Per key: the writer whose write landed (undefined: none), and each outcome. */
  keys: Map<string, { appliedBy: string[]; refused: number }>;
}

/** Resolves once `signal` has fired. */
export const aborted = (signal: AbortSignal) =>
  new Promise<void>((resolve) =>
    signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve()),
  );

/** A seeded generator (mulberry32), so a failing run can be replayed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `contenders` holders per key, all at once, over one lock per key (TTL `ttlMs`). Each takes the lock, reads
 * whether the effect is done, and if not, pauses and writes with its fence (the resource decides again inside
 * the write: a holder whose read went stale during its pause finds the effect done there). The first holder of each key is
 * frozen past its lease: it writes only once its lease's signal has fired and a successor has written (so
 * every key sees at least one stale write). The others pause 0–¼ TTL, or with `stallRate` past the lease (1–2
 * TTLs). Returns every outcome; a write that fails other than with StaleFenceError fails the run.
 */
export async function contend(
  lock: Lock,
  resource: Resource,
  opts: { keys: readonly string[]; contenders: number; ttlMs: number; stallRate: number; rng: () => number },
): Promise<Tally> {
  const tally: Tally = { applied: 0, refused: 0, skipped: 0, keys: new Map() };
  const deadline = Date.now() + 60_000;
  const one = async (key: string, first: { taken: boolean }, writer: string): Promise<Outcome> => {
    for (;;) {
      if (Date.now() > deadline) throw new Error(`${writer}: no outcome within 60 s`);
      if (await resource.done(key)) return 'skipped';
      const lease = await lock.tryAcquire(`lk:${key}`, { ttlMs: opts.ttlMs });
      if (!lease) {
        await delay(2 + opts.rng() * 20);
        continue;
      }
      try {
        if (await resource.done(key)) return 'skipped';
        if (!first.taken) {
          first.taken = true;
          await aborted(lease.signal);
          while (!(await resource.done(key))) await delay(5);
        } else {
          const stall = opts.rng() < opts.stallRate;
          await delay(stall ? opts.ttlMs * (1 + opts.rng()) : (opts.rng() * opts.ttlMs) / 4);
        }
        try {
          return (await resource.write(key, writer, lease.fence)) === 'applied' ? 'applied' : 'skipped';
        } catch (err) {
          if (err instanceof StaleFenceError && err.fence === lease.fence) return 'refused';
          throw err;
        }
      } finally {
        await lease.release().catch(() => undefined);
      }
    }
  };
  await Promise.all(
    opts.keys.map(async (key) => {
      const first = { taken: false };
      const entry = { appliedBy: [] as string[], refused: 0 };
      tally.keys.set(key, entry);
      await Promise.all(
        Array.from({ length: opts.contenders }, async (_, i) => {
          const writer = `${key}#${i}`;
          const outcome = await one(key, first, writer);
          tally[outcome]++;
          if (outcome === 'applied') entry.appliedBy.push(writer);
          if (outcome === 'refused') entry.refused++;
        }),
      );
    }),
  );
  return tally;
}
