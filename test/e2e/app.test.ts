// The app end to end: the local stack (serverless offline --stage local over the REST gateway and a real
// redis-server) started once for this file; functions invoked as their callers would — HTTP, and the Lambda
// API with RequestResponse and Event invokes. Executions are counted at the store (functions/shared/effects.ts).
import { InvocationType } from '@aws-sdk/client-lambda';
import type { SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatTable, runDemo } from '../../dev/demo.js';
import { signGithub, signStandardWebhook, signStripe } from '../../functions/webhook/signatures.js';
import { type E2E, runId, startE2E } from './harness.js';

let e2e: E2E;

beforeAll(async () => {
  e2e = await startE2E();
}, 90_000);

afterAll(async () => {
  await e2e?.stop();
});

const post = (path: string, body: string, headers: Record<string, string> = {}) =>
  e2e.http(path, { method: 'POST', body, headers });

function githubDelivery(id: string, secret = e2e.stack.webhookSecrets.github) {
  const body = JSON.stringify({ action: 'opened', issue: { id } });
  return {
    body,
    headers: { ...signGithub(body, secret), 'x-github-delivery': id, 'x-github-event': 'issues' },
  };
}

function stripeDelivery(id: string, secret = e2e.stack.webhookSecrets.stripe, timestampSeconds?: number) {
  const body = JSON.stringify({ id, object: 'event', type: 'charge.succeeded' });
  return { body, headers: signStripe(body, secret, timestampSeconds) };
}

function standardDelivery(id: string, secret = e2e.stack.webhookSecrets.standard) {
  const body = JSON.stringify({ type: 'invoice.paid', data: { id } });
  return { body, headers: signStandardWebhook(body, secret, id) };
}

describe('webhook (HTTP)', () => {
  it('runs each delivery once under concurrent duplicates: 200 with the first answer, or 409 + Retry-After', async () => {
    const run = runId();
    const deliveries = [
      ...Array.from({ length: 4 }, (_, i) => ({ provider: 'github', id: `${run}-gh-${i}` })),
      ...Array.from({ length: 4 }, (_, i) => ({ provider: 'stripe', id: `evt_${run}_${i}` })),
      ...Array.from({ length: 4 }, (_, i) => ({ provider: 'standard', id: `msg_${run}_${i}` })),
    ];
    const request = (d: { provider: string; id: string }) =>
      d.provider === 'github'
        ? githubDelivery(d.id)
        : d.provider === 'stripe'
          ? stripeDelivery(d.id)
          : standardDelivery(d.id);
    const copies = 6;
    const answers = await Promise.all(
      deliveries.flatMap((d) =>
        Array.from({ length: copies }, async () => {
          const { body, headers } = request(d);
          const res = await post(`/webhooks/${d.provider}`, body, headers);
          return {
            ...d,
            status: res.status,
            retryAfter: res.headers.get('retry-after'),
            text: await res.text(),
          };
        }),
      ),
    );

    const counts = await e2e.effects(
      'webhook',
      deliveries.map((d) => `${d.provider}:${d.id}`),
    );
    expect([...counts.values()]).toEqual(deliveries.map(() => 1));
    expect(answers.every((a) => a.status === 200 || a.status === 409)).toBe(true);
    expect(answers.filter((a) => a.status === 409).length).toBeGreaterThan(0); // the copies did overlap
    for (const a of answers.filter((x) => x.status === 409)) {
      expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(a.text)).toMatchObject({ error: 'InProgressError' });
    }
    // Once the first is done, every redelivery gets its answer, marked as a replay.
    for (const d of deliveries) {
      const first = answers.find((a) => a.id === d.id && a.status === 200)!;
      expect(JSON.parse(first.text)).toMatchObject({ provider: d.provider, delivery: d.id });
      const { body, headers } = request(d);
      const again = await post(`/webhooks/${d.provider}`, body, headers);
      expect(again.status).toBe(200);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(await again.text()).toBe(first.text);
      for (const other of answers.filter((a) => a.id === d.id && a.status === 200))
        expect(other.text).toBe(first.text);
    }
  });

  it('rejects bad signatures with 401 and malformed deliveries with 400, and runs none of them', async () => {
    const run = runId();
    const gh = githubDelivery(`${run}-a`);
    const cases: [string, string, Record<string, string>, number][] = [
      ['github', gh.body, githubDelivery(`${run}-a`, 'wrong secret').headers, 401],
      ['github', `${gh.body} `, gh.headers, 401], // body changed after signing
      ['github', gh.body, { 'x-github-delivery': `${run}-a` }, 401], // unsigned
      [
        'stripe',
        stripeDelivery(`evt_${run}_b`).body,
        stripeDelivery(`evt_${run}_b`, 'whsec_wrong').headers,
        401,
      ],
      [
        'standard',
        standardDelivery(`msg_${run}_d`).body,
        standardDelivery(`msg_${run}_d`, 'whsec_AAAAAAAAAAAAAAAAAAAAAAAA').headers,
        401,
      ],
    ];
    // A captured delivery replayed 10 minutes later: outside Stripe's 5-minute tolerance.
    const replayed = stripeDelivery(`evt_${run}_c`, undefined, Math.floor(Date.now() / 1000) - 600);
    cases.push(['stripe', replayed.body, replayed.headers, 401]);
    // Signed correctly, but not a delivery: not JSON; no delivery id (GitHub header, Stripe event id).
    const notJson = 'not json';
    cases.push([
      'github',
      notJson,
      { ...signGithub(notJson, e2e.stack.webhookSecrets.github), 'x-github-delivery': `${run}-e` },
      400,
    ]);
    const noHeader = JSON.stringify({ action: 'opened' });
    cases.push(['github', noHeader, signGithub(noHeader, e2e.stack.webhookSecrets.github), 400]);
    const noId = JSON.stringify({ object: 'event', type: 'charge.succeeded' });
    cases.push(['stripe', noId, signStripe(noId, e2e.stack.webhookSecrets.stripe), 400]);

    for (const [provider, body, headers, status] of cases) {
      const res = await post(`/webhooks/${provider}`, body, headers);
      expect({ provider, status: res.status }).toEqual({ provider, status });
      const text = await res.text();
      for (const secret of Object.values(e2e.stack.webhookSecrets)) expect(text).not.toContain(secret);
    }
    expect((await post('/webhooks/gitlab', gh.body, gh.headers)).status).toBe(404);

    const counts = await e2e.effects('webhook', [
      `github:${run}-a`,
      `stripe:evt_${run}_b`,
      `stripe:evt_${run}_c`,
      `standard:msg_${run}_d`,
      `github:${run}-e`,
    ]);
    expect([...counts.values()]).toEqual([0, 0, 0, 0, 0]);
  });

  it('answers the same through the Lambda API (an API Gateway v2 event, RequestResponse)', async () => {
    const { body, headers } = githubDelivery(`${runId()}-lambda`);
    const event = {
      version: '2.0',
      routeKey: 'POST /webhooks/{provider}',
      rawPath: '/webhooks/github',
      rawQueryString: '',
      headers: { ...headers, 'content-type': 'application/json' },
      pathParameters: { provider: 'github' },
      requestContext: { http: { method: 'POST', path: '/webhooks/github' } },
      body,
      isBase64Encoded: false,
    };
    const first = await e2e.invoke('webhook', event);
    const second = await e2e.invoke('webhook', event);
    expect(first.functionError).toBeUndefined();
    expect(first.payload).toMatchObject({ statusCode: 200 });
    expect(second.payload).toMatchObject({ statusCode: 200, headers: { 'idempotent-replayed': 'true' } });
    expect((second.payload as { body: string }).body).toBe((first.payload as { body: string }).body);
  });
});

describe('worker and dispatch', () => {
  it('worker runs an item once under concurrent Event and RequestResponse invokes', async () => {
    const id = `${runId()}-item`;
    const item = { id, sku: 'sku-1', quantity: 2 };
    const events = await Promise.all(
      Array.from({ length: 5 }, () => e2e.invoke('worker', item, InvocationType.Event)),
    );
    const replies = await Promise.all(Array.from({ length: 3 }, () => e2e.invoke('worker', item)));
    expect(events.map((e) => e.statusCode)).toEqual([202, 202, 202, 202, 202]);
    for (const r of replies) {
      expect(r.functionError).toBeUndefined();
      expect(r.payload).toEqual(replies[0]!.payload); // the one execution's result, however it got there
    }
    expect(replies[0]!.payload).toMatchObject({ id });
    const counts = await e2e.waitForEffects('worker', [id], (c) => c.get(id)! >= 1);
    await new Promise((r) => setTimeout(r, 500)); // async duplicates still running would count now
    expect((await e2e.effects('worker', [id])).get(id)).toBe(1);
    expect(counts.get(id)).toBe(1);
  });

  it('dispatch fans a batch out to worker (async invokes, duplicates included); each item runs once', async () => {
    const run = runId();
    const ids = Array.from({ length: 30 }, (_, i) => `${run}-${i}`);
    const items = [...ids, ...ids.slice(0, 15)].map((id) => ({ id, quantity: 1 }));
    const body = JSON.stringify({ items });
    // The same batch twice at once: a client retrying after a timeout.
    const responses = await Promise.all([post('/dispatch', body), post('/dispatch', body)]);
    for (const res of responses) {
      expect(res.status).toBe(202);
      expect(await res.json()).toEqual({ dispatched: 45 });
    }
    await e2e.waitForEffects('worker', ids, (c) => ids.every((id) => c.get(id)! >= 1));
    await new Promise((r) => setTimeout(r, 1000));
    const counts = await e2e.effects('worker', ids);
    expect(ids.filter((id) => counts.get(id) !== 1)).toEqual([]);
  });

  it('dispatch rejects a malformed batch with 400 and invokes nothing', async () => {
    const id = `${runId()}-never`;
    for (const body of [
      'nope',
      '{}',
      JSON.stringify({ items: [] }),
      JSON.stringify({ items: [{ id }, { id: 7 }] }),
    ]) {
      const res = await post('/dispatch', body);
      expect(res.status).toBe(400);
    }
    await new Promise((r) => setTimeout(r, 300));
    expect((await e2e.effects('worker', [id])).get(id)).toBe(0);
  });
});

describe('tick (oncePerTick)', () => {
  const scheduled = (rule: string, time: string, region: string, id: string) => ({
    version: '0',
    id,
    'detail-type': 'Scheduled Event',
    source: 'aws.events',
    account: '123456789012',
    time,
    region,
    resources: [`arn:aws:events:${region}:123456789012:rule/${rule}`],
    detail: {},
  });

  it('a tick delivered to three replicas at once runs once; a stale tick not at all', async () => {
    const rule = `e2e-${runId()}`;
    const tick = new Date(Math.floor(Date.now() / 60_000) * 60_000).toISOString();
    const replies = await Promise.all(
      ['us-east-1', 'eu-west-1', 'ap-southeast-2'].map((region, i) =>
        e2e.invoke('tick', scheduled(rule, tick, region, `${rule}-${i}`)),
      ),
    );
    for (const r of replies) expect(r.functionError).toBeUndefined();
    // One replica ran it; the others skipped it (undefined) or got its stored result.
    for (const r of replies) {
      if (r.payload != null) expect(r.payload).toMatchObject({ task: `${rule}@${tick}`, tick, runs: 1 });
    }
    const task = `${rule}@${tick}`;
    expect((await e2e.effects('tick', [task])).get(task)).toBe(1);

    const stale = new Date(Date.parse(tick) - 10 * 60_000).toISOString();
    const late = await e2e.invoke('tick', scheduled(rule, stale, 'us-east-1', `${rule}-late`));
    expect(late.functionError).toBeUndefined();
    const staleTask = `${rule}@${stale}`;
    expect((await e2e.effects('tick', [staleTask])).get(staleTask)).toBe(0);
  });
});

describe('queue (withOnceBatch)', () => {
  it('reports batchItemFailures for the poison record and in-flight duplicates; redelivery is acknowledged', async () => {
    const run = runId();
    const orders = Array.from({ length: 5 }, (_, i) => `${run}-order-${i}`);
    const record = (order: string, n: number, extra: object = {}): SQSRecord => ({
      messageId: `${run}-m${n}`,
      receiptHandle: `r${n}`,
      body: JSON.stringify({ id: order, amount: 10, ...extra }),
      attributes: {
        ApproximateReceiveCount: '1',
        SentTimestamp: '0',
        SenderId: 'e2e',
        ApproximateFirstReceiveTimestamp: '0',
      },
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:oncely-local-work',
      awsRegion: 'us-east-1',
    });
    const poison = `${run}-poison`;
    // 5 orders, the first 2 sent twice by the producer (their own messageIds), and one that always fails.
    const batch = [
      ...orders.map((o, i) => record(o, i)),
      record(orders[0]!, 5),
      record(orders[1]!, 6),
      record(poison, 7, { fail: true }),
    ];
    const first = await e2e.invoke('queue', { Records: batch });
    expect(first.functionError).toBeUndefined();
    const failed = (first.payload as { batchItemFailures: { itemIdentifier: string }[] }).batchItemFailures;
    expect(failed.map((f) => f.itemIdentifier).sort()).toEqual(
      [`${run}-m5`, `${run}-m6`, `${run}-m7`].sort(),
    );

    // SQS redelivers the reported records: the duplicates are now done (acknowledged), the poison fails again.
    const redelivered = batch.filter((r) => failed.some((f) => f.itemIdentifier === r.messageId));
    const second = await e2e.invoke('queue', { Records: redelivered });
    expect((second.payload as { batchItemFailures: { itemIdentifier: string }[] }).batchItemFailures).toEqual(
      [{ itemIdentifier: `${run}-m7` }],
    );
    const counts = await e2e.effects('queue', [...orders, poison]);
    expect([...counts.values()]).toEqual([1, 1, 1, 1, 1, 0]);
  });
});

describe('the Lambda API', () => {
  it('an unknown function surfaces as ResourceNotFoundException naming it', async () => {
    await expect(e2e.invoke('oncely-local-nope', {})).rejects.toMatchObject({
      name: 'ResourceNotFoundException',
      message: expect.stringContaining('oncely-local-nope'),
      $metadata: { httpStatusCode: 404 },
    });
  });
});

describe('npm run demo', () => {
  it('against this stack: every id runs exactly once, nothing forged runs', async () => {
    const rows = await runDemo({
      httpUrl: e2e.stack.httpUrl,
      lambdaEndpoint: e2e.stack.lambdaEndpoint,
      gatewayUrl: e2e.stack.gateway.url,
      gatewayToken: e2e.stack.gateway.token,
      webhookSecrets: e2e.stack.webhookSecrets,
    });
    const table = formatTable(rows);
    // 503s (the store did not answer in time on a loaded machine) are retried as a provider would: counted, not failed.
    console.log(
      `${table}\n503 answers retried: ${rows.map((r) => `${r.fn} ${r.unavailable ?? 0}`).join(', ')}`,
    );
    expect(
      rows.flatMap((r) => r.problems),
      table,
    ).toEqual([]);
    expect(rows.map((r) => [r.fn, r.distinct, r.executions])).toEqual([
      ['webhook', 50, 50],
      ['worker', 100, 100],
      ['tick', 5, 5],
      ['queue', 7, 7],
    ]);
    expect(rows.find((r) => r.fn === 'webhook')).toMatchObject({
      deliveries: 220,
      rejected: 20,
      duplicates: 150,
    });
    expect(rows.find((r) => r.fn === 'worker')).toMatchObject({ deliveries: 300, duplicates: 200 });
  }, 240_000);
});
