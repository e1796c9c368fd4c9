/**
 * One process of a burst (test/integration/burst.test.ts, bench/rest-pool.ts): `calls` concurrent `withOnce`
 * deliveries of SQS messages over `keys` message ids (each id `calls / keys` times), fired at once when the
 * parent writes a line to stdin. A delivery that gets an error (InProgressError while another delivery of its
 * id runs, or a store error) is delivered again after `retryMs` (jittered), as SQS would after its visibility
 * timeout, up to `tries` times. Prints one JSON line, `BurstReport`, and exits.
 *
 *   node --import tsx test/support/burst-worker.ts '<BurstSpec as JSON>'
 *
 * Prints `ready` once the store exists, so the parent can start every process's burst in the same moment.
 */
import { createInterface } from 'node:readline';
import type { Context, SQSRecord } from 'aws-lambda';
import { type Store, StoreError, upstashStore, withOnce } from '../../layers/oncely/src/index.js';
import { clusterStore, redisStore } from '../../layers/oncely/src/ioredis.js';

export interface BurstSpec {
  store:
    | { kind: 'rest'; url: string; token: string; maxConnections?: number }
    | { kind: 'redis'; host: string; port: number }
    | { kind: 'cluster'; nodes: { host: string; port: number }[] };
  /** Deliveries fired at once. */
  calls: number;
  /** Distinct message ids among them (the same ids in every process of a burst). */
  keys: number;
  /** The withOnce namespace: one per burst, so bursts do not see each other's records. */
  namespace: string;
  /** How long the handler takes. */
  handlerMs: number;
  /** Most deliveries of one message. */
  tries: number;
  /** Delay before a delivery is retried, ±50 % jitter. */
  retryMs: number;
  /** @default the store's default (2000) */
  timeoutMs?: number;
  /** No delivery is retried after this long from the start of the burst (it counts as unanswered). */
  budgetMs: number;
}

export interface BurstReport {
  pid: number;
  /** Deliveries that got the handler's result in the end. */
  answered: number;
  /** Deliveries still failing after `tries`. */
  unanswered: number;
  /** Handler runs in this process, per message id. */
  runs: Record<string, number>;
  /** Every failed try, by error name and message (digits folded to N): what went wrong, how often. */
  errors: Record<string, number>;
  /** Failed tries with a StoreError, and how many of those said `ambiguous: true`. */
  storeErrors: number;
  ambiguous: number;
  /** Deliveries whose result was not the one the other deliveries of their id got (per process). */
  mismatched: number;
  /** The result each message id got here, as JSON (compared across processes by the parent). */
  results: Record<string, string>;
  /** Time of each first try, ms: p50, p99; and the whole burst until its last answer. */
  p50Ms: number;
  p99Ms: number;
  durationMs: number;
  /** Tries made, the first ones included. */
  tries: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as BurstSpec;

function storeOf(s: BurstSpec['store'], timeoutMs: number | undefined): Store {
  if (s.kind === 'rest')
    return upstashStore({ url: s.url, token: s.token, timeoutMs, maxConnections: s.maxConnections });
  if (s.kind === 'redis') return redisStore({ host: s.host, port: s.port, timeoutMs });
  return clusterStore({ nodes: s.nodes, timeoutMs });
}

const store = storeOf(spec.store, spec.timeoutMs);
const runs: Record<string, number> = {};
const errors: Record<string, number> = {};
let storeErrors = 0;
let ambiguous = 0;
let tries = 0;

const handler = withOnce(
  async (event: SQSRecord) => {
    runs[event.messageId] = (runs[event.messageId] ?? 0) + 1;
    await new Promise((r) => setTimeout(r, spec.handlerMs));
    return { id: event.messageId, ranIn: process.pid };
  },
  { store, namespace: spec.namespace, logger: () => {} },
);

const context = (): Context =>
  ({
    functionName: 'burst',
    awsRequestId: `req-${process.pid}`,
    getRemainingTimeInMillis: () => 60_000,
  }) as Context;

const record = (id: string): SQSRecord =>
  ({
    messageId: id,
    receiptHandle: `rh-${id}`,
    body: id,
    attributes: { ApproximateReceiveCount: '1' },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123:burst',
    awsRegion: 'us-east-1',
  }) as unknown as SQSRecord;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One message delivered until it is answered or out of tries: its result, and how long its first try took. */
async function deliver(id: string): Promise<{ result?: unknown; firstMs: number }> {
  let firstMs = Number.NaN;
  for (let attempt = 1; attempt <= spec.tries && performance.now() < budgetEnds; attempt++) {
    const started = performance.now();
    tries++;
    try {
      const result = await handler(record(id), context());
      if (attempt === 1) firstMs = performance.now() - started;
      return { result, firstMs };
    } catch (err) {
      if (attempt === 1) firstMs = performance.now() - started;
      const e = err as Error;
      const what = `${e.name}: ${e.message.replace(/\d+/g, 'N')}`;
      errors[what] = (errors[what] ?? 0) + 1;
      if (err instanceof StoreError) {
        storeErrors++;
        if (err.ambiguous) ambiguous++;
      }
      await sleep(spec.retryMs * (0.5 + Math.random()));
    }
  }
  return { firstMs };
}

const quantile = (xs: number[], q: number) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

process.stdout.write('ready\n');
const go = createInterface({ input: process.stdin });
await new Promise<void>((resolve) => go.once('line', () => resolve()));
go.close();

const started = performance.now();
const budgetEnds = started + spec.budgetMs;
const ids = Array.from({ length: spec.calls }, (_, i) => `m-${i % spec.keys}`);
const outcomes = await Promise.all(ids.map(deliver));
const durationMs = performance.now() - started;

const firstResult = new Map<string, string>();
let mismatched = 0;
outcomes.forEach((o, i) => {
  if (o.result === undefined) return;
  const id = ids[i]!;
  const text = JSON.stringify(o.result);
  const seen = firstResult.get(id);
  if (seen === undefined) firstResult.set(id, text);
  else if (seen !== text) mismatched++;
});
const answered = outcomes.filter((o) => o.result !== undefined).length;
const report: BurstReport = {
  pid: process.pid,
  answered,
  unanswered: spec.calls - answered,
  runs,
  errors,
  storeErrors,
  ambiguous,
  mismatched,
  results: Object.fromEntries(firstResult),
  p50Ms: quantile(
    outcomes.map((o) => o.firstMs),
    0.5,
  ),
  p99Ms: quantile(
    outcomes.map((o) => o.firstMs),
    0.99,
  ),
  durationMs,
  tries,
};
await store.close();
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(0);
