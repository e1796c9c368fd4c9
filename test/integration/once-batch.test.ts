/**
 * SQS FIFO batches through withOnceBatch on real servers, on every transport (REST through the gateway, a
 * standalone redis-server and a 3-master cluster over TCP): records run one at a time in order, the batch stops
 * at the first failure, that record and every one after it are reported in batchItemFailures, and the records
 * that were claimed but never ran are released on the server (so their redelivery runs them), in the two round
 * trips of any batch. The unit version (test/unit/once-batch.test.ts) runs the same rules on the fake store.
 */
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OnceBatchOptions, withOnceBatch } from '../../layers/oncely/src/index.js';
import { OnceEngine } from '../../layers/oncely/src/once/engine.js';
import { CountingStore, deferred, lambdaContext, unique } from '../support/once.js';
import { startTransport, TRANSPORTS, type TransportFixture } from '../support/transports.js';

/** A record of the FIFO queue `q.fifo`, in message group `g`. */
const fifo = (id: string, body = id): SQSRecord =>
  ({
    messageId: id,
    receiptHandle: `rh-${id}`,
    body,
    attributes: { ApproximateReceiveCount: '1', MessageGroupId: 'g' },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123:q.fifo',
    awsRegion: 'us-east-1',
  }) as SQSRecord;
const batch = (...records: SQSRecord[]): SQSEvent => ({ Records: records });
const reported = (r: SQSBatchResponse) => r.batchItemFailures.map((f) => f.itemIdentifier);

describe.each(TRANSPORTS)('FIFO batches over %s', (transport) => {
  let fx: TransportFixture;
  let store: CountingStore;
  beforeAll(async () => {
    fx = await startTransport(transport);
    store = new CountingStore(fx.store({ timeoutMs: 5000 }));
  });
  afterAll(async () => {
    await fx?.stop();
  });

  /** Options over the shared store in a namespace of the test's own; `keys(id)`: a message's record keys. */
  function setup(extra: Partial<OnceBatchOptions> = {}) {
    const options: OnceBatchOptions = {
      store,
      namespace: unique(`fifo-${transport}`),
      logLevel: 'silent',
      concurrency: 5, // FIFO ignores it: one at a time
      ...extra,
    };
    // keysOf needs the record's scope only (withOnce's options: concurrency is the batch's own)
    const engine = new OnceEngine({ store, namespace: options.namespace, prefix: options.prefix });
    return { options, keys: (id: string) => engine.keysOf(id) };
  }
  /** What the server holds for message `id`: the record's status ('C', 'P', or null when absent) and counter. */
  const stateOf = async (keys: [string, string]) => ({
    status: await fx.admin.hget(keys[0], 's'),
    counter: (await fx.admin.get(keys[1])) !== null,
  });

  it('runs in order, stops at the first failure, reports it and every record after it; those never run are released', async () => {
    const { options, keys } = setup();
    const ids = ['1', '2', '3', '4', '5'].map((i) => unique(`m${i}`));
    const ran: string[] = [];
    const h = withOnceBatch(async (r) => {
      ran.push(r.messageId);
      if (r.body === 'fail') throw new Error('no');
      return r.messageId;
    }, options);
    const before = store.roundTrips;
    const result = await h(batch(...ids.map((id, i) => fifo(id, i === 2 ? 'fail' : id))), lambdaContext());
    expect(ran).toEqual(ids.slice(0, 3));
    expect(reported(result)).toEqual(ids.slice(2));
    expect(store.roundTrips - before).toBe(2); // claim all, settle all
    // On the server: the two that ran are completed; the failed one and the two never run were claimed
    // (their counters moved) and released (no record), so a redelivery can run them.
    expect(await stateOf(keys(ids[0]!))).toEqual({ status: 'C', counter: true });
    expect(await stateOf(keys(ids[1]!))).toEqual({ status: 'C', counter: true });
    for (const id of ids.slice(2)) expect(await stateOf(keys(id))).toEqual({ status: null, counter: true });
    // SQS redelivers the reported records, in order: each runs once now, and the completed ones are not re-run.
    ran.length = 0;
    expect(reported(await h(batch(...ids.map((id) => fifo(id))), lambdaContext()))).toEqual([]);
    expect(ran).toEqual(ids.slice(2));
    for (const id of ids) expect((await stateOf(keys(id))).status).toBe('C');
  });

  it('a record in progress elsewhere stops the batch there: reported with everything after it, and left to its owner', async () => {
    const { options, keys } = setup();
    const ids = ['1', '2', '3', '4'].map((i) => unique(`busy${i}`));
    // Another consumer (a store of its own) is running message 2.
    const gate = deferred();
    const started = deferred();
    const elsewhere = withOnceBatch(
      async () => {
        started.resolve();
        return gate.promise;
      },
      { ...options, store: fx.store({ timeoutMs: 5000 }) },
    );
    const running = elsewhere(batch(fifo(ids[1]!)), lambdaContext());
    await started.promise; // its record is claimed
    expect(await fx.admin.hget(keys(ids[1]!)[0], 's')).toBe('P');
    const theirs = await fx.admin.hgetall(keys(ids[1]!)[0]);

    const ran: string[] = [];
    const h = withOnceBatch(async (r) => {
      ran.push(r.messageId);
    }, options);
    const result = await h(batch(...ids.map((id) => fifo(id))), lambdaContext());
    expect(ran).toEqual([ids[0]]);
    expect(reported(result)).toEqual(ids.slice(1));
    expect((await stateOf(keys(ids[0]!))).status).toBe('C');
    expect(await fx.admin.hgetall(keys(ids[1]!)[0])).toEqual(theirs); // not released: not ours
    for (const id of ids.slice(2)) expect(await stateOf(keys(id))).toEqual({ status: null, counter: true });

    gate.resolve();
    expect(reported(await running)).toEqual([]);
    ran.length = 0;
    expect(reported(await h(batch(...ids.slice(1).map((id) => fifo(id))), lambdaContext()))).toEqual([]);
    expect(ran).toEqual(ids.slice(2)); // message 2 completed elsewhere: acknowledged, not run
  });

  it('a completed duplicate in the batch is acknowledged and the batch goes on past it', async () => {
    const { options, keys } = setup();
    const ids = ['1', '2', '3'].map((i) => unique(`dup${i}`));
    const ran: string[] = [];
    const h = withOnceBatch(async (r) => {
      ran.push(r.messageId);
      return r.messageId;
    }, options);
    expect(reported(await h(batch(fifo(ids[1]!)), lambdaContext()))).toEqual([]);
    ran.length = 0;
    expect(reported(await h(batch(...ids.map((id) => fifo(id))), lambdaContext()))).toEqual([]);
    expect(ran).toEqual([ids[0], ids[2]]);
    for (const id of ids) expect((await stateOf(keys(id))).status).toBe('C');
  });
});
