/**
 * The cost of a fenced write (oncely/effects) against the same write unfenced, in the same run, rounds
 * interleaved like every other suite, one write at a time:
 * - Redis (TCP standalone, the bench's redis-server): fencedSet (EFFECT_SET) vs a script that only SETs, through
 *   the same store (same transport, same EVALSHA path: the difference is the fence).
 * - PostgreSQL 15 (127.0.0.1:5432, a database of the suite's own): fencedUpsert vs the same INSERT … ON CONFLICT
 *   DO UPDATE without the fence column and its WHERE; withFence (BEGIN, fence raise, the write, COMMIT) vs the
 *   same write in BEGIN … COMMIT.
 * - DynamoDB on dynalite (in this process): fencedPut vs a plain PutCommand. dynalite is an emulator: the ratio
 *   says what the condition costs it, not what it costs DynamoDB.
 * Every fenced write carries a fence above the last, so none is refused. Targets: ≤ 1.10× on Redis and on the
 * one-statement PostgreSQL write (issue 25).
 */
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import dynalite from 'dynalite';
import pg from 'pg';
import { fencedPut } from '../layers/oncely/src/effects/dynamodb.js';
import { createFenceTable, fencedUpsert, withFence } from '../layers/oncely/src/effects/pg.js';
import { fencedSet } from '../layers/oncely/src/effects/redis.js';
import { redisStore } from '../layers/oncely/src/ioredis.js';
import type { Script } from '../layers/oncely/src/scripts.js';
import { type Contender, type SequentialResult, sequential } from './harness.js';
import type { Stack } from './servers.js';
import { type Evaluated, fmtMs, fmtRatio, ratioOfRounds, ratioSpread, type Target } from './stats.js';
import type { Sizes } from './suite-locks.js';

type Skipped = { skipped: string };

export interface EffectsSuiteResult {
  /** `<resource>-fenced` and `<resource>-plain` for each resource in PAIRS. */
  sequential: SequentialResult[];
}

/** Each resource's pair: the fenced write and the same write unfenced, and its target (if any). */
export const PAIRS = [
  { id: 'redis', label: 'Redis: fencedSet vs a SET script', target: 1.1 },
  { id: 'pg-upsert', label: 'PostgreSQL: fencedUpsert vs the same upsert', target: 1.1 },
  { id: 'pg-tx', label: 'PostgreSQL: withFence vs the same write in BEGIN … COMMIT', target: undefined },
  { id: 'dynamodb', label: 'DynamoDB (dynalite): fencedPut vs PutCommand', target: undefined },
] as const;

/** The unfenced Redis write: a SET through the same store and path as EFFECT_SET. */
const PLAIN_SET: Script = {
  name: 'bench-plain-set',
  keys: 1,
  lua: `return redis.call('SET', KEYS[1], ARGV[1])`,
  sha1: 'd8f2fad9f8e86a53d2a6ebd960b33c4972cacc37',
};

let fence = Date.now();
const next = () => ++fence;

export async function effectsSuite(
  stack: Stack,
  sizes: Sizes,
  log: (s: string) => void,
): Promise<EffectsSuiteResult> {
  const store = redisStore({ host: stack.redis.host, port: stack.redis.port });
  const dbName = `oncely_bench_${process.pid}`;
  const admin = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const pool = new pg.Pool({ host: '127.0.0.1', port: 5432, user: 'postgres', database: dbName, max: 2 });
  const dyn = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve) => dyn.listen(0, '127.0.0.1', () => resolve()));
  const raw = new DynamoDBClient({
    endpoint: `http://127.0.0.1:${(dyn.address() as { port: number }).port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const doc = DynamoDBDocumentClient.from(raw);
  try {
    await createFenceTable(pool);
    await pool.query('CREATE TABLE orders (id text PRIMARY KEY, status text NOT NULL, fence bigint)');
    await raw.send(
      new CreateTableCommand({
        TableName: 'orders',
        AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
    const upsert =
      'INSERT INTO orders (id, status) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status';
    const c = (id: string, label: string, client: string, op: Contender['op']): Contender => ({
      id,
      label,
      client,
      op,
    });
    const contenders: Contender[] = [
      c('redis-fenced', 'fencedSet', 'redisStore (ioredis)', async (key, i) => {
        await fencedSet(store, { key, value: `v${i}`, fence: next() });
      }),
      c('redis-plain', 'SET script', 'redisStore (ioredis)', async (key, i) => {
        await store.run(PLAIN_SET, [key], [`v${i}`]);
      }),
      c('pg-upsert-fenced', 'fencedUpsert', 'pg Pool', async (key, i) => {
        await fencedUpsert(pool, {
          table: 'orders',
          key: { id: key },
          values: { status: `s${i}` },
          fence: next(),
        });
      }),
      c('pg-upsert-plain', 'upsert', 'pg Pool', async (key, i) => {
        await pool.query(upsert, [key, `s${i}`]);
      }),
      c('pg-tx-fenced', 'withFence', 'pg Pool', async (key, i) => {
        await withFence(pool, { resource: key, fence: next() }, (tx) => tx.query(upsert, [key, `s${i}`]));
      }),
      c('pg-tx-plain', 'BEGIN … COMMIT', 'pg Pool', async (key, i) => {
        const tx = await pool.connect();
        try {
          await tx.query('BEGIN');
          await tx.query(upsert, [key, `s${i}`]);
          await tx.query('COMMIT');
        } finally {
          tx.release();
        }
      }),
      c('dynamodb-fenced', 'fencedPut', 'DynamoDBDocumentClient', async (key, i) => {
        await fencedPut(doc, { TableName: 'orders', Item: { id: key, status: `s${i}` }, fence: next() });
      }),
      c('dynamodb-plain', 'PutCommand', 'DynamoDBDocumentClient', async (key, i) => {
        await doc.send(new PutCommand({ TableName: 'orders', Item: { id: key, status: `s${i}` } }));
      }),
    ];
    log('  sequential writes, each resource fenced and unfenced');
    return { sequential: await sequential(contenders, { ...sizes, tag: 'bench:effects' }) };
  } finally {
    await store.close();
    raw.destroy();
    await new Promise<void>((resolve) => dyn.close(() => resolve()));
    pool.on('error', () => undefined);
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }
}

// ------------------------------------------------------------------------------------------------ report

const find = (s: EffectsSuiteResult | undefined, id: string) => s?.sequential.find((r) => r.id === id);
const p50s = (r: SequentialResult | undefined) => r?.rounds.map((x) => x.p50) ?? [];
const live = (raw: EffectsSuiteResult | Skipped | undefined) =>
  raw && !('skipped' in raw) ? raw : undefined;

/** Per pair: the fenced and unfenced p50 (ms, all samples), and the median of the per-round p50 ratios. */
export function effectsRows(raw: EffectsSuiteResult | Skipped | undefined) {
  const s = live(raw);
  return PAIRS.map((p) => {
    const [f, u] = [find(s, `${p.id}-fenced`), find(s, `${p.id}-plain`)];
    return {
      ...p,
      fenced: f?.summary.p50 ?? Number.NaN,
      plain: u?.summary.p50 ?? Number.NaN,
      ratio: f && u ? ratioOfRounds(p50s(f), p50s(u)) : Number.NaN,
      spread: f && u ? ratioSpread(p50s(f), p50s(u)) : ([Number.NaN, Number.NaN] as [number, number]),
    };
  });
}

export function effectsTargets(raw: EffectsSuiteResult | Skipped | undefined): Target[] {
  const note = live(raw)
    ? undefined
    : raw && 'skipped' in raw
      ? raw.skipped
      : 'no figures (report older than the suite)';
  return effectsRows(raw)
    .filter((r) => r.target !== undefined)
    .map((r) => ({
      id: `effects.${r.id}.p50`,
      label: `fenced write p50 / unfenced, ${r.label}`,
      actual: r.ratio,
      op: '<=' as const,
      limit: r.target as number,
      unit: 'ratio' as const,
      spread: r.spread,
      note,
    }));
}

/** The section of docs/benchmarks.md. */
export function effectsSection(raw: EffectsSuiteResult | Skipped | undefined): string {
  const out = ['## Fenced writes (oncely/effects) vs the same write unfenced', ''];
  if (!live(raw))
    return [...out, `Not run: ${raw && 'skipped' in raw ? raw.skipped : 'no figures'}`].join('\n');
  out.push(
    '| resource | fenced p50 ms | unfenced p50 ms | ratio (per-round median) | rounds |',
    '| :--- | ---: | ---: | ---: | ---: |',
    ...effectsRows(raw).map(
      (r) =>
        `| ${r.label} | ${fmtMs(r.fenced)} | ${fmtMs(r.plain)} | ${fmtRatio(r.ratio)} | ${fmtRatio(r.spread[0])} – ${fmtRatio(r.spread[1])} |`,
    ),
    '',
    'One write at a time; every fenced write carries a newer fence (none refused). withFence is a transaction',
    'with one more statement than its baseline (the fence raise), so it costs a round trip more; fencedUpsert',
    'puts the check in the write itself. dynalite is an in-process emulator: its row says what the condition',
    'costs it, not DynamoDB. Contention figures (effects applied, writes refused) are in docs/effects.md.',
  );
  return out.join('\n');
}

/** The paragraph of a row left FAIL (bench/notes.ts): what the fenced write does that the plain one does not. */
export function effectsFailNote(raw: EffectsSuiteResult | Skipped | undefined, r: Evaluated): string {
  const row = effectsRows(raw).find((x) => r.id === `effects.${x.id}.p50`);
  const v = `${fmtRatio(r.actual ?? Number.NaN, 3)}`;
  const figures =
    row && Number.isFinite(row.fenced)
      ? ` This run: p50 ${fmtMs(row.fenced)} ms fenced vs ${fmtMs(row.plain)} ms unfenced.`
      : '';
  const what = r.id.startsWith('effects.redis')
    ? 'The fenced script reads the fence key and writes it after the value (three commands where the plain ' +
      'script sends one), and its reply is a pair; the client validates the input and names the fence key.'
    : 'The fenced statement writes the fence column and compares it in the ON CONFLICT branch; each call ' +
      'builds and parses its statement text, as the plain one does.';
  return (
    `**${r.label}: ${v}.**${figures} ${what} One write at a time, on a machine whose cores the database ` +
    'and the client share: a few µs show as a larger ratio than on an idle one.'
  );
}

/** One console line per pair. */
export function effectsSummary(raw: EffectsSuiteResult | Skipped | undefined): string[] {
  if (!live(raw)) return [];
  return effectsRows(raw).map(
    (r) => `effects: ${r.label}: p50 ${fmtMs(r.fenced)} vs ${fmtMs(r.plain)} ms (${fmtRatio(r.ratio)})`,
  );
}
