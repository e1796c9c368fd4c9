// Fenced effects (docs/effects.md), one per trigger of the design card: the handler passes its claim's fence to
// the write, and the resource refuses a write whose fence is older than the last one it took.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEventV2, ScheduledEvent } from 'aws-lambda';
import { fromEnv, oncePerTick, withOnce, withOnceBatch } from 'oncely';
import { fencedUpdate } from 'oncely/effects/dynamodb';
import { fencedUpsert, withFence } from 'oncely/effects/pg';
import pg from 'pg';

const store = fromEnv();
const db = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const doc = DynamoDBDocumentClient.from(new DynamoDBClient({}));

// Webhook: a GitHub delivery marks its order paid. The row keeps its highest fence (column `fence`), and one
// statement checks it and writes: a run that lost its claim and wakes up late is refused (StaleFenceError,
// so withOnce releases nothing of the newer run's and the late invocation fails), the newer run's write stays.
export const webhook = withOnce(
  async (event: APIGatewayProxyEventV2, _context, { fence, signal }) => {
    const { orderId } = JSON.parse(event.body ?? '{}') as { orderId: string };
    signal.throwIfAborted(); // cheap, but not enough alone: a pause after it still writes late
    await fencedUpsert(db, { table: 'orders', key: { id: orderId }, values: { status: 'paid' }, fence });
    return { statusCode: 200, body: 'ok' };
  },
  { store },
);

// SQS: each message adds to a balance once. The item keeps its fence in `fence`; the update's own condition
// (this message not applied yet) and the fence's are one request.
export const queue = withOnceBatch(
  async (record, _context, { fence }) => {
    const { account, cents } = JSON.parse(record.body) as { account: string; cents: number };
    await fencedUpdate(doc, {
      TableName: 'balances',
      Key: { account },
      UpdateExpression: 'ADD balance :c, applied :m',
      ConditionExpression: 'NOT contains(applied, :id)',
      ExpressionAttributeValues: { ':c': cents, ':m': new Set([record.messageId]), ':id': record.messageId },
      fence,
    });
  },
  { store },
);

// Scheduled: one nightly report row per tick, across replicas and regions. withFence raises the resource's
// fence in a side table (createFenceTable) and runs the writes in that transaction: the decision (is the row
// there?) is taken inside it, so a late run that wakes after the new one has written is refused before it reads.
export const nightly = oncePerTick(
  async (_event: ScheduledEvent, _context, { fence, tick }) => {
    await withFence(db, { resource: `report:${tick}`, fence }, async (tx) => {
      const done = await tx.query('SELECT 1 FROM reports WHERE tick = $1', [tick]);
      if (done.rowCount === 0) await tx.query('INSERT INTO reports (tick) VALUES ($1)', [tick]);
    });
  },
  { store },
);
