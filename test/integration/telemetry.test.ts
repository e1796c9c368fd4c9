// Metrics and logs that join the function's own, over real servers on every transport and through both
// adapters: one valid CloudWatch EMF document per invocation (per batch for SQS), metrics added to a
// Powertools Metrics instance, decisions through an injected logger (Powertools Logger or any object with the
// four methods) carrying its context, and the default lines with Powertools' Lambda fields.
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type OnceOptions, withOnceBatch } from '../../layers/oncely/src/index.js';
import { COUNTERS, LATENCY } from '../../layers/oncely/src/once/metrics.js';
import { digest } from '../../layers/oncely/src/once/record.js';
import { ADAPTERS, deferred, sqsRecord, unique, wrap } from '../support/once.js';
import { startTransport, TRANSPORTS, type TransportFixture } from '../support/transports.js';

type Ev = { id: string; n?: number; secret?: string };

/** A Lambda context with its own request id. */
function context(requestId = unique('req')): Context {
  return {
    functionName: 'orders-fn',
    awsRequestId: requestId,
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:orders-fn',
    memoryLimitInMB: '256',
    functionVersion: '$LATEST',
    getRemainingTimeInMillis: () => 60_000,
  } as Context;
}

const record = (id: string) => sqsRecord(id, `body-secret-${id}`);

const UNITS = new Set([
  'Seconds',
  'Microseconds',
  'Milliseconds',
  'Bytes',
  'Kilobytes',
  'Megabytes',
  'Gigabytes',
  'Terabytes',
  'Bits',
  'Kilobits',
  'Megabits',
  'Gigabits',
  'Terabits',
  'Percent',
  'Count',
  'Bytes/Second',
  'Kilobytes/Second',
  'Megabytes/Second',
  'Gigabytes/Second',
  'Terabytes/Second',
  'Bits/Second',
  'Kilobits/Second',
  'Megabits/Second',
  'Gigabits/Second',
  'Terabits/Second',
  'Count/Second',
  'None',
]);

/**
 * Every rule of the EMF specification a document can break: the `_aws` block with a whole-ms Timestamp and
 * CloudWatchMetrics directives (Namespace, Dimensions as arrays of ≤ 30 names each present at the top level
 * as a string, Metrics of ≤ 100 with a Name present at the top level as a number or ≤ 100 numbers, and a
 * valid Unit). Returns the problems found.
 */
function emfProblems(doc: unknown): string[] {
  const p: string[] = [];
  if (typeof doc !== 'object' || doc === null) return ['not an object'];
  const d = doc as Record<string, unknown>;
  const aws = d._aws as Record<string, unknown> | undefined;
  if (typeof aws !== 'object' || aws === null) return ['no _aws block'];
  if (!Number.isInteger(aws.Timestamp) || (aws.Timestamp as number) <= 0) p.push('Timestamp');
  const directives = aws.CloudWatchMetrics;
  if (!Array.isArray(directives) || directives.length === 0) return [...p, 'no CloudWatchMetrics'];
  for (const dir of directives as Record<string, unknown>[]) {
    const ns = dir.Namespace;
    if (typeof ns !== 'string' || ns.length < 1 || ns.length > 255) p.push('Namespace');
    if (!Array.isArray(dir.Dimensions)) p.push('Dimensions');
    for (const set of (dir.Dimensions as unknown[]) ?? []) {
      if (!Array.isArray(set) || set.length > 30) p.push('a dimension set');
      for (const name of set as unknown[])
        if (typeof name !== 'string' || typeof d[name] !== 'string') p.push(`dimension ${String(name)}`);
    }
    const metrics = dir.Metrics as Record<string, unknown>[];
    if (!Array.isArray(metrics) || metrics.length > 100) p.push('Metrics (≤ 100)');
    for (const m of metrics ?? []) {
      const name = m.Name as string;
      if (typeof name !== 'string' || name.length === 0) p.push('a metric Name');
      if (m.Unit !== undefined && !UNITS.has(m.Unit as string)) p.push(`unit of ${name}`);
      const v = d[name];
      const ok =
        typeof v === 'number' ||
        (Array.isArray(v) && v.length >= 1 && v.length <= 100 && v.every((x) => typeof x === 'number'));
      if (!ok) p.push(`value of ${name}`);
    }
  }
  return p;
}

/** Metric values of one document, by name. */
const valuesOf = (doc: Record<string, unknown>) =>
  Object.fromEntries(COUNTERS.map((c) => [c, doc[c]])) as Record<string, number>;

const zero = Object.fromEntries(COUNTERS.map((c) => [c, 0])) as Record<string, number>;

describe.each(TRANSPORTS)('telemetry over %s', (transport) => {
  let fx: TransportFixture;
  const namespace = `tel-${transport}`;
  const base = (extra: Partial<OnceOptions<Ev>> = {}): OnceOptions<Ev> => ({
    store: fx.store({ timeoutMs: 2000 }),
    namespace,
    key: { jmespath: 'id' },
    payload: { jmespath: 'n' },
    logLevel: 'silent',
    ...extra,
  });

  beforeAll(async () => {
    fx = await startTransport(transport);
  });
  afterAll(async () => {
    await fx?.stop();
  });
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it.each(ADAPTERS)(
    'EMF through the $type: one valid document per invocation, counted by what happened',
    async ({ type }) => {
      const docs: Record<string, unknown>[] = [];
      const gate = deferred();
      const started = deferred();
      const h = wrap(
        type,
        async (e: Ev) => {
          if (e.n === 9) {
            started.resolve();
            await gate.promise;
          }
          return { done: e.id, secret: 'result-secret' };
        },
        base({ metrics: (line) => docs.push(JSON.parse(line)) }),
      );
      const key = unique('emf');
      await h({ id: key, n: 1, secret: 'payload-secret' }, context()); // claim + complete
      await h({ id: key, n: 1 }, context()); // duplicate returned
      await expect(h({ id: key, n: 2 }, context())).rejects.toThrow(/different payload/); // mismatch
      const slow = unique('emf-slow');
      const first = h({ id: slow, n: 9 }, context());
      await started.promise;
      expect(docs).toHaveLength(3); // the three above, each on its own
      await expect(h({ id: slow, n: 9 }, context())).rejects.toThrow(/in progress/); // rejected
      gate.resolve();
      await first;

      expect(docs).toHaveLength(5);
      for (const doc of docs) {
        expect(emfProblems(doc)).toEqual([]);
        const dir = (doc._aws as { CloudWatchMetrics: { Namespace: string; Dimensions: string[][] }[] })
          .CloudWatchMetrics[0]!;
        expect(dir.Namespace).toBe('oncely');
        expect(dir.Dimensions).toEqual([['Namespace', 'FunctionName']]);
        expect(doc).toMatchObject({ Namespace: namespace, FunctionName: 'orders-fn' });
        // no key, digest, payload or result anywhere in a document
        const text = JSON.stringify(doc);
        expect(text).not.toContain(key);
        expect(text).not.toContain(digest(key));
        expect(text).not.toMatch(/secret/);
        // every store round trip of the invocation timed, in ms
        const latency = doc[LATENCY];
        const values = Array.isArray(latency) ? latency : [latency];
        for (const v of values) expect(v).toBeGreaterThanOrEqual(0);
      }
      const byOrder = docs.map(valuesOf);
      expect(byOrder[0]).toEqual({ ...zero, Claims: 1, Completions: 1 });
      expect(docs[0]![LATENCY]).toHaveLength(2); // claim, complete
      expect(byOrder[1]).toEqual({ ...zero, DuplicatesReturned: 1 });
      expect(byOrder[2]).toEqual({ ...zero, PayloadMismatches: 1 });
      expect(byOrder[3]).toEqual({ ...zero, InProgressRejections: 1 });
      expect(byOrder[4]).toEqual({ ...zero, Claims: 1, Completions: 1 });
    },
  );

  it('EMF for an SQS batch: one document for the whole batch, never one per record', async () => {
    const docs: Record<string, unknown>[] = [];
    const b = withOnceBatch(async (r) => r.messageId, {
      store: fx.store(),
      namespace,
      logLevel: 'silent',
      metrics: (line) => docs.push(JSON.parse(line)),
    });
    const ids = Array.from({ length: 8 }, () => unique('batch'));
    await b({ Records: ids.slice(0, 3).map(record) }, context());
    await b({ Records: ids.map(record) }, context());
    expect(docs).toHaveLength(2);
    for (const doc of docs) expect(emfProblems(doc)).toEqual([]);
    expect(valuesOf(docs[0]!)).toEqual({ ...zero, Claims: 3, Completions: 3 });
    expect(valuesOf(docs[1]!)).toEqual({ ...zero, Claims: 5, Completions: 5, DuplicatesReturned: 3 });
    expect(docs[1]![LATENCY]).toHaveLength(2); // one claim round trip, one completion round trip
  });

  it('ONCELY_METRICS=emf writes the document on console.log; unset, nothing', async () => {
    const printed: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: string) => void printed.push(line));
    const off = wrap('wrapper', async () => 1, base());
    await off({ id: unique('off') }, context());
    expect(printed).toEqual([]);
    vi.stubEnv('ONCELY_METRICS', 'emf');
    const on = wrap('wrapper', async () => 1, base());
    await on({ id: unique('on') }, context());
    expect(printed).toHaveLength(1);
    const doc = JSON.parse(printed[0]!);
    expect(emfProblems(doc)).toEqual([]);
    expect(valuesOf(doc)).toEqual({ ...zero, Claims: 1, Completions: 1 });
    vi.stubEnv('ONCELY_METRICS', 'emff');
    expect(() => wrap('wrapper', async () => 1, base())).toThrow(/ONCELY_METRICS must be emf/);
  });

  it.each(ADAPTERS)(
    'a Powertools Metrics instance through the $type gets the metrics, published with its own',
    async ({ type }) => {
      const metrics = new Metrics({ namespace: 'shop', serviceName: 'orders' });
      const h = wrap(type, async () => 'ok', base({ metrics }));
      await h({ id: unique('pt') }, context());
      metrics.addMetric('OrdersPlaced', 'Count', 1); // the function's own
      const doc = metrics.serializeMetrics() as unknown as Record<string, unknown>;
      metrics.clearMetrics();
      expect(emfProblems(doc)).toEqual([]);
      const names = (
        doc._aws as { CloudWatchMetrics: { Metrics: { Name: string; Unit: string }[] }[] }
      ).CloudWatchMetrics[0]!.Metrics.map((m) => m.Name);
      expect(names).toEqual(expect.arrayContaining([...COUNTERS, LATENCY, 'OrdersPlaced']));
      expect(valuesOf(doc)).toEqual({ ...zero, Claims: 1, Completions: 1 });
      expect(doc[LATENCY]).toHaveLength(2);
      expect(doc.service).toBe('orders');
    },
  );

  it.each(ADAPTERS)(
    'a Powertools Logger through the $type: decisions go through it with its context, no payload or result',
    async ({ type }) => {
      vi.stubEnv('POWERTOOLS_DEV', 'true'); // the Logger prints on the global console, where we listen
      const printed: { method: string; line: Record<string, unknown> }[] = [];
      for (const method of ['debug', 'info', 'warn', 'error'] as const)
        vi.spyOn(console, method).mockImplementation((text: string) => {
          printed.push({ method, line: JSON.parse(text) });
        });
      const logger = new Logger({ serviceName: 'orders', persistentKeys: { team: 'payments' } });
      const ctx = context();
      logger.addContext(ctx);
      const h = wrap(type, async () => ({ secret: 'result-secret' }), base({ logger, logLevel: 'info' }));
      const key = unique('ptl');
      await h({ id: key, n: 1, secret: 'payload-secret' }, ctx);
      await expect(h({ id: key, n: 2 }, ctx)).rejects.toThrow(/different payload/);
      expect(printed.map((p) => [p.method, p.line.decision])).toEqual([
        ['info', 'claimed'],
        ['info', 'completed'],
        ['warn', 'mismatch'],
      ]);
      for (const { line } of printed) {
        expect(line).toMatchObject({
          message: `oncely: ${line.decision}`,
          service: 'orders',
          team: 'payments',
          function_request_id: ctx.awsRequestId,
          function_name: 'orders-fn',
          namespace,
          keyDigest: digest(key),
        });
        expect(line).not.toHaveProperty('key');
      }
      expect(JSON.stringify(printed)).not.toMatch(/secret/);
      expect(JSON.stringify(printed)).not.toContain(key);
    },
  );

  it.each(ADAPTERS)(
    'any logger object through the $type: (message, fields) at the decision level',
    async ({ type }) => {
      const calls: [string, string, Record<string, unknown>][] = [];
      const at =
        (level: string) =>
        (message: string, fields: Record<string, unknown>): void =>
          void calls.push([level, message, fields]);
      const logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
      const h = wrap(type, async () => 1, base({ logger, logLevel: 'debug' }));
      const key = unique('obj');
      await h({ id: key, n: 1 }, context());
      await h({ id: key, n: 1 }, context());
      expect(calls.map(([level, message]) => [level, message])).toEqual([
        ['info', 'oncely: claimed'],
        ['info', 'oncely: completed'],
        ['info', 'oncely: duplicate-returned'],
      ]);
      expect(calls[0]![2]).toEqual({
        decision: 'claimed',
        namespace,
        fence: expect.any(Number),
        ttlMs: expect.any(Number),
        keyDigest: digest(key),
      });
    },
  );

  it.each(ADAPTERS)(
    'default lines through the $type carry request id, function name, cold start and trace id',
    async ({ type }) => {
      const lines: Record<string, unknown>[] = [];
      vi.stubEnv(
        '_X_AMZN_TRACE_ID',
        'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1',
      );
      const h = wrap(
        type,
        async () => 1,
        base({ logger: (l) => lines.push(JSON.parse(l)), logLevel: 'info' }),
      );
      const ctx = context();
      await h({ id: unique('def') }, ctx);
      expect(lines).toHaveLength(2);
      for (const l of lines)
        expect(l).toMatchObject({
          level: 'INFO',
          timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
          function_request_id: ctx.awsRequestId,
          function_name: 'orders-fn',
          cold_start: false, // not the first invocation of this process
          xray_trace_id: '1-5759e988-bd862e3fe1be46a994272793',
        });
      vi.stubEnv('_X_AMZN_TRACE_ID', '');
      lines.length = 0;
      await h({ id: unique('def') }, context());
      expect(lines[0]).not.toHaveProperty('xray_trace_id');
    },
  );
});
