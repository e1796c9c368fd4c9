/**
 * `npm run demo`: at-least-once delivery in, exactly-once execution out, counted.
 *
 *   webhook   200 signed deliveries of 50 distinct delivery ids (GitHub, Stripe, Standard Webhooks), all at
 *             once, plus 20 with forged signatures; a 409 (the first delivery still running) or a 503 (the
 *             store did not answer in time) is retried the way a provider would, until it gets the first
 *             delivery's answer
 *   worker    one POST /dispatch of 100 distinct items with 50 repeated among them, sent twice at once (a client
 *             retry): 300 asynchronous invokes of worker for 100 items
 *   tick      5 schedule ticks, each delivered to 3 replicas at once
 *   queue     an SQS batch of 10 orders with 3 sent twice, then SQS redelivering what it reported as failed
 *
 * Then it reads how many times each id's work actually ran (functions/shared/effects.ts), prints a table and
 * exits non-zero unless every id ran exactly once, and nothing forged ran at all.
 *
 * Runs against a running `npm start` (found on the default ports, or the ports and gateway in
 * ONCELY_HTTP_PORT / ONCELY_LAMBDA_PORT / UPSTASH_REDIS_REST_URL / UPSTASH_REDIS_REST_TOKEN, as `npm start`
 * prints them), or starts its own stack on free ports and stops it afterwards.
 */
import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { countEffects } from '../functions/shared/effects.js';
import { signGithub, signStandardWebhook, signStripe } from '../functions/webhook/signatures.js';
import { fromEnv, type Store } from '../layers/oncely/src/index.js';
import { DEFAULT_PORTS, LOCAL_TOKEN, LOCAL_WEBHOOK_SECRETS, type Stack, startStack } from './start.js';

const DELIVERIES = 200;
const DELIVERY_IDS = 50;
const FORGED = 20;
const ITEMS = 100;
const REPEATED_ITEMS = 50;
const TICKS = 5;
const REPLICAS = 3;
/** A provider retries a 409 later; the demo does not wait for the Retry-After (the lease's end) to pass. */
const RETRY_409_AFTER_MS = 250;
/**
 * A 503 means the store did not answer in time and withOnce failed closed: nothing ran, or what may have been
 * claimed is given back. Providers retry a 5xx with backoff (GitHub, Stripe, Svix all do), and so does the demo:
 * from 250 ms, doubling up to 2 s. On a loaded machine this is what keeps every id running exactly once.
 */
const RETRY_503_FIRST_MS = 250;
const RETRY_503_MAX_MS = 2_000;
/** How long one delivery may keep being retried (409s and 503s together) before the demo calls it a problem. */
const DELIVERY_RETRY_BUDGET_MS = 90_000;
const SETTLE_TIMEOUT_MS = 30_000;

export interface Target {
  httpUrl: string;
  lambdaEndpoint: string;
  gatewayUrl: string;
  gatewayToken: string;
  webhookSecrets: { github: string; stripe: string; standard: string };
}

export interface Row {
  fn: string;
  /** Deliveries sent: HTTP requests, invokes, SQS records (409 retries not included). */
  deliveries: number;
  distinct: number;
  /** How many times the work ran, over every id (from the effect counters). */
  executions: number;
  /** Deliveries answered without running the work: replayed, waited for, skipped or acknowledged. */
  duplicates: number;
  /** 409 answers (first delivery still running), each retried until it got the first answer. */
  inProgress: number;
  /** Rejected before any work: 401 bad signature. */
  rejected: number;
  /** 503 answers (the store did not answer in time; withOnce failed closed), each retried as a provider does. */
  unavailable?: number;
  /** What went wrong (empty when the row is right). */
  problems: string[];
}

interface Env {
  target: Target;
  store: Store;
  lambda: LambdaClient;
  run: string;
}

const secrets = () => ({
  github: process.env.GITHUB_WEBHOOK_SECRET || LOCAL_WEBHOOK_SECRETS.github,
  stripe: process.env.STRIPE_WEBHOOK_SECRET || LOCAL_WEBHOOK_SECRETS.stripe,
  standard: process.env.STANDARD_WEBHOOK_SECRET || LOCAL_WEBHOOK_SECRETS.standard,
});

/** Checks every execution count: each wanted id ran exactly once, each unwanted id never. */
function countProblems(counts: Map<string, number>, wanted: string[], unwanted: string[] = []): string[] {
  const problems: string[] = [];
  const wrong = wanted.filter((id) => counts.get(id) !== 1);
  if (wrong.length > 0) {
    problems.push(
      `${wrong.length} id(s) did not run exactly once: ${wrong.slice(0, 3).map((id) => `${id}=${counts.get(id)}`)}`,
    );
  }
  const ran = unwanted.filter((id) => (counts.get(id) ?? 0) > 0);
  if (ran.length > 0) problems.push(`${ran.length} rejected id(s) ran anyway`);
  return problems;
}

const sum = (counts: Map<string, number>) => [...counts.values()].reduce((a, b) => a + b, 0);

// --------------------------------------------------------------------------------------------------- webhook

type Provider = 'github' | 'stripe' | 'standard';

function signedDelivery(provider: Provider, id: string, s: Target['webhookSecrets'], forged: boolean) {
  const secret = forged ? `forged-${randomBytes(8).toString('hex')}` : s[provider];
  switch (provider) {
    case 'github': {
      const body = JSON.stringify({ action: 'opened', issue: { number: id.length } });
      return {
        body,
        headers: { ...signGithub(body, secret), 'x-github-delivery': id, 'x-github-event': 'issues' },
      };
    }
    case 'stripe': {
      const body = JSON.stringify({ id, object: 'event', type: 'payment_intent.succeeded' });
      return { body, headers: signStripe(body, secret) };
    }
    case 'standard': {
      const body = JSON.stringify({ type: 'invoice.paid', data: { invoice: id } });
      return {
        body,
        headers: signStandardWebhook(
          body,
          forged ? `whsec_${randomBytes(24).toString('base64')}` : secret,
          id,
        ),
      };
    }
  }
}

async function webhookRow({ target, store, run }: Env): Promise<Row> {
  const providers: Provider[] = ['github', 'stripe', 'standard'];
  const ids = Array.from({ length: DELIVERY_IDS }, (_, i) => {
    const provider = providers[i % providers.length]!;
    return { provider, id: provider === 'stripe' ? `evt_${run}_${i}` : `${run}-${i}` };
  });
  const forged = Array.from({ length: FORGED }, (_, i) => {
    const provider = providers[i % providers.length]!;
    return { provider, id: provider === 'stripe' ? `evt_${run}_forged_${i}` : `${run}-forged-${i}` };
  });
  // Every delivery of one id carries the same signed request, as a provider's redeliveries do.
  const requests = new Map(
    ids.map((d) => [d.id, signedDelivery(d.provider, d.id, target.webhookSecrets, false)]),
  );

  let inProgress = 0;
  let unavailable = 0;
  let duplicates = 0;
  const problems: string[] = [];
  const firstAnswers = new Map<string, string>();
  const deliver = async (d: { provider: Provider; id: string }) => {
    const { body, headers } = requests.get(d.id)!;
    const giveUpAt = Date.now() + DELIVERY_RETRY_BUDGET_MS;
    let backoffMs = RETRY_503_FIRST_MS;
    let last = '';
    while (Date.now() < giveUpAt) {
      const res = await fetch(`${target.httpUrl}/webhooks/${d.provider}`, { method: 'POST', body, headers });
      const text = await res.text();
      if (res.status === 409) {
        inProgress += 1;
        last = 'still in progress';
        await sleep(RETRY_409_AFTER_MS);
        continue;
      }
      if (res.status === 503) {
        unavailable += 1;
        last = `HTTP 503 ${text.slice(0, 120)}`;
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, RETRY_503_MAX_MS);
        continue;
      }
      if (res.status !== 200) {
        problems.push(`${d.provider} ${d.id}: HTTP ${res.status} ${text.slice(0, 120)}`);
        return;
      }
      if (res.headers.get('idempotent-replayed') === 'true') duplicates += 1;
      const first = firstAnswers.get(d.id);
      if (first === undefined) firstAnswers.set(d.id, text);
      else if (first !== text) problems.push(`${d.id}: a duplicate got a different answer than the first`);
      return;
    }
    problems.push(`${d.id}: retried for ${DELIVERY_RETRY_BUDGET_MS} ms, last answer: ${last}`);
  };

  let rejected = 0;
  const forge = async (d: { provider: Provider; id: string }) => {
    const { body, headers } = signedDelivery(d.provider, d.id, target.webhookSecrets, true);
    const res = await fetch(`${target.httpUrl}/webhooks/${d.provider}`, { method: 'POST', body, headers });
    await res.arrayBuffer();
    if (res.status === 401) rejected += 1;
    else problems.push(`forged ${d.id}: HTTP ${res.status}, expected 401`);
  };

  // The copies of one id go out back to back (a provider's redeliveries come close together), all 220
  // requests in flight at once.
  const copies = DELIVERIES / DELIVERY_IDS;
  const deliveries = Array.from({ length: DELIVERIES }, (_, i) => ids[Math.floor(i / copies)]!);
  await Promise.all([...deliveries.map(deliver), ...forged.map(forge)]);

  if (problems.length === 0 && duplicates !== DELIVERIES - DELIVERY_IDS) {
    problems.push(`${duplicates} replayed answers, expected ${DELIVERIES - DELIVERY_IDS}`);
  }
  const key = (d: { provider: Provider; id: string }) => `${d.provider}:${d.id}`;
  const counts = await countEffects(store, 'webhook', [...ids, ...forged].map(key));
  problems.push(...countProblems(counts, ids.map(key), forged.map(key)));
  return {
    fn: 'webhook',
    deliveries: DELIVERIES + FORGED,
    distinct: ids.length,
    executions: sum(counts),
    duplicates,
    inProgress,
    rejected,
    unavailable,
    problems,
  };
}

// ------------------------------------------------------------------------------------------ dispatch/worker

async function waitForCounts(
  store: Store,
  fn: string,
  ids: string[],
  expected: number,
): Promise<Map<string, number>> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  let counts = await countEffects(store, fn, ids);
  while (sum(counts) < expected && Date.now() < deadline) {
    await sleep(200);
    counts = await countEffects(store, fn, ids);
  }
  await sleep(1000); // late duplicates still in flight would show up now
  return countEffects(store, fn, ids);
}

async function workerRow({ target, store, run }: Env): Promise<Row> {
  const ids = Array.from({ length: ITEMS }, (_, i) => `${run}-item-${i}`);
  const items = [
    ...ids.map((id) => ({ id, sku: `sku-${id.length}`, quantity: 1 })),
    ...ids.slice(0, REPEATED_ITEMS).map((id) => ({ id, sku: `sku-${id.length}`, quantity: 1 })),
  ];
  const body = JSON.stringify({ items });
  const problems: string[] = [];
  const sent = await Promise.all(
    [1, 2].map(async () => {
      const res = await fetch(`${target.httpUrl}/dispatch`, { method: 'POST', body });
      const answer = (await res.json()) as { dispatched?: number };
      if (res.status !== 202) problems.push(`dispatch: HTTP ${res.status} ${JSON.stringify(answer)}`);
      return answer.dispatched ?? 0;
    }),
  );
  const invokes = sent.reduce((a, b) => a + b, 0);
  const counts = await waitForCounts(store, 'worker', ids, ids.length);
  problems.push(...countProblems(counts, ids));
  const executions = sum(counts);
  return {
    fn: 'worker',
    deliveries: invokes,
    distinct: ids.length,
    executions,
    duplicates: invokes - executions,
    inProgress: 0,
    rejected: 0,
    problems,
  };
}

// ---------------------------------------------------------------------------------------------------- tick

async function tickRow({ store, lambda, run }: Env): Promise<Row> {
  const minute = Math.floor(Date.now() / 60_000) * 60_000;
  const ticks = Array.from({ length: TICKS }, (_, i) => new Date(minute - i * 60_000).toISOString());
  const regions = ['us-east-1', 'eu-west-1', 'ap-southeast-2'];
  const problems: string[] = [];
  await Promise.all(
    ticks.flatMap((time) =>
      regions.slice(0, REPLICAS).map(async (region) => {
        const event = {
          version: '0',
          id: randomBytes(16).toString('hex'), // each replica's event has its own id
          'detail-type': 'Scheduled Event',
          source: 'aws.events',
          account: '123456789012',
          time,
          region,
          resources: [`arn:aws:events:${region}:123456789012:rule/demo-${run}-tick`],
          detail: {},
        };
        const out = await lambda.send(
          new InvokeCommand({ FunctionName: 'oncely-local-tick', Payload: JSON.stringify(event) }),
        );
        if (out.FunctionError) problems.push(`tick ${time} (${region}): ${out.FunctionError}`);
      }),
    ),
  );
  const tasks = ticks.map((time) => `demo-${run}-tick@${time}`);
  const counts = await countEffects(store, 'tick', tasks);
  problems.push(...countProblems(counts, tasks));
  const executions = sum(counts);
  return {
    fn: 'tick',
    deliveries: ticks.length * REPLICAS,
    distinct: ticks.length,
    executions,
    duplicates: ticks.length * REPLICAS - executions,
    inProgress: 0,
    rejected: 0,
    problems,
  };
}

// --------------------------------------------------------------------------------------------------- queue

async function queueRow({ store, lambda, run }: Env): Promise<Row> {
  const orders = Array.from({ length: 7 }, (_, i) => `${run}-order-${i}`);
  const record = (order: string, n: number) => ({
    messageId: `${run}-msg-${n}`,
    receiptHandle: `receipt-${n}`,
    body: JSON.stringify({ id: order, amount: 100 + order.length }),
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: String(Date.now()),
      SenderId: 'demo',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:oncely-local-work',
    awsRegion: 'us-east-1',
  });
  // 7 orders, 3 of them sent twice by the producer (each copy its own message): a batch of 10.
  const batch = [...orders, ...orders.slice(0, 3)].map((order, n) => record(order, n));
  const problems: string[] = [];
  let records = 0;
  let pending = batch;
  // SQS redelivers what the function reported in batchItemFailures, until nothing is left.
  for (let round = 0; pending.length > 0 && round < 10; round++) {
    records += pending.length;
    const out = await lambda.send(
      new InvokeCommand({
        FunctionName: 'oncely-local-queue',
        Payload: JSON.stringify({ Records: pending }),
      }),
    );
    if (out.FunctionError) {
      problems.push(
        `queue: ${out.FunctionError} ${Buffer.from(out.Payload ?? [])
          .toString()
          .slice(0, 120)}`,
      );
      break;
    }
    const { batchItemFailures } = JSON.parse(Buffer.from(out.Payload!).toString()) as {
      batchItemFailures: { itemIdentifier: string }[];
    };
    const failed = new Set(batchItemFailures.map((f) => f.itemIdentifier));
    pending = pending.filter((r) => failed.has(r.messageId));
    if (pending.length > 0) await sleep(300);
  }
  if (pending.length > 0) problems.push(`queue: ${pending.length} record(s) never acknowledged`);
  const counts = await countEffects(store, 'queue', orders);
  problems.push(...countProblems(counts, orders));
  const executions = sum(counts);
  return {
    fn: 'queue',
    deliveries: records,
    distinct: orders.length,
    executions,
    duplicates: records - executions,
    inProgress: records - batch.length,
    rejected: 0,
    problems,
  };
}

// ---------------------------------------------------------------------------------------------------- main

export function formatTable(rows: Row[]): string {
  const header = [
    'function',
    'deliveries',
    'distinct ids',
    'executions',
    'duplicates',
    'in progress',
    'rejected',
    'result',
  ];
  const lines = rows.map((r) => [
    r.fn,
    String(r.deliveries),
    String(r.distinct),
    String(r.executions),
    String(r.duplicates),
    String(r.inProgress),
    String(r.rejected),
    r.problems.length === 0 ? 'ok' : 'FAIL',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(header), fmt(widths.map((w) => '-'.repeat(w))), ...lines.map(fmt)].join('\n');
}

/** Runs every scenario against `target`; returns the rows (problems listed in each). */
export async function runDemo(target: Target): Promise<Row[]> {
  const store = fromEnv({
    UPSTASH_REDIS_REST_URL: target.gatewayUrl,
    UPSTASH_REDIS_REST_TOKEN: target.gatewayToken,
  });
  const lambda = new LambdaClient({
    endpoint: target.lambdaEndpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const env: Env = {
    target,
    store,
    lambda,
    run: `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`,
  };
  try {
    const webhook = await webhookRow(env);
    const worker = await workerRow(env);
    const tick = await tickRow(env);
    const queue = await queueRow(env);
    return [webhook, worker, tick, queue];
  } finally {
    lambda.destroy();
    await store.close();
  }
}

/** The stack `npm start` runs, if it answers: on the ports in the environment, or the default ones. */
async function findRunningStack(): Promise<Target | undefined> {
  const httpPort = process.env.ONCELY_HTTP_PORT || String(DEFAULT_PORTS.http);
  const lambdaPort = process.env.ONCELY_LAMBDA_PORT || String(DEFAULT_PORTS.lambda);
  const target: Target = {
    httpUrl: `http://127.0.0.1:${httpPort}`,
    lambdaEndpoint: `http://127.0.0.1:${lambdaPort}`,
    gatewayUrl: process.env.UPSTASH_REDIS_REST_URL || `http://127.0.0.1:${DEFAULT_PORTS.gateway}`,
    gatewayToken: process.env.UPSTASH_REDIS_REST_TOKEN || LOCAL_TOKEN,
    webhookSecrets: secrets(),
  };
  try {
    const ping = await fetch(target.gatewayUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${target.gatewayToken}` },
      body: '["PING"]',
      signal: AbortSignal.timeout(2000),
    });
    if (!ping.ok) return undefined;
    // dispatch answers an empty batch with 400 and its own error: that is our serverless-offline. Its first
    // invocation loads the function (and the AWS SDK), which takes a few seconds on a busy machine.
    const res = await fetch(`${target.httpUrl}/dispatch`, {
      method: 'POST',
      body: '{}',
      signal: AbortSignal.timeout(20_000),
    });
    const answer = (await res.json()) as { error?: string };
    return res.status === 400 && answer.error?.startsWith('items must be') ? target : undefined;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  let stack: Stack | undefined;
  let target = await findRunningStack();
  if (target) {
    console.log(`oncely demo against the running stack at ${target.httpUrl} (npm start)\n`);
  } else {
    console.log('oncely demo: no running `npm start` found, starting a stack on free ports ...');
    stack = await startStack({ gatewayPort: 0, httpPort: 0, lambdaPort: 0, webhookSecrets: secrets() });
    target = {
      httpUrl: stack.httpUrl,
      lambdaEndpoint: stack.lambdaEndpoint,
      gatewayUrl: stack.gateway.url,
      gatewayToken: stack.gateway.token,
      webhookSecrets: stack.webhookSecrets,
    };
    console.log(`stack ready at ${target.httpUrl}\n`);
  }
  const stopStack = () => stack?.stop().catch(() => undefined);
  process.once('SIGINT', () => void stopStack()?.then(() => process.exit(130)));
  try {
    const started = Date.now();
    const rows = await runDemo(target);
    console.log(formatTable(rows));
    const problems = rows.flatMap((r) => r.problems.map((p) => `${r.fn}: ${p}`));
    console.log('');
    for (const p of problems) console.log(`- ${p}`);
    for (const r of rows) {
      if (r.unavailable)
        console.log(`${r.fn}: ${r.unavailable} answer(s) of 503 (store unavailable) were retried`);
    }
    console.log(
      problems.length === 0
        ? `every id ran exactly once, nothing rejected ran (${((Date.now() - started) / 1000).toFixed(1)} s)`
        : `FAILED: ${problems.length} problem(s)`,
    );
    process.exitCode = problems.length === 0 ? 0 : 1;
  } finally {
    await stopStack();
  }
}

const entry = process.argv[1];
if (entry && realpathSync(entry) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error('demo failed:', err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
