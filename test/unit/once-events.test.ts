import { beforeAll, describe, expect, it, vi } from 'vitest';
import {
  detectSource,
  header,
  httpBody,
  identify,
  isHttpEvent,
  loadJmespath,
  sourceKey,
} from '../../layers/oncely/src/events.js';
import { ValidationError, withOnce } from '../../layers/oncely/src/index.js';
import { canonicalJson } from '../../layers/oncely/src/keys.js';
import { OnceFakeStore } from '../support/once-fake-store.js';

const sqsRecord = (messageId: string, body = '{"orderId":"o-1"}') => ({
  messageId,
  receiptHandle: 'rh',
  body,
  attributes: { ApproximateReceiveCount: '1' },
  messageAttributes: {},
  md5OfBody: 'x',
  eventSource: 'aws:sqs',
  eventSourceARN: 'arn:aws:sqs:us-east-1:123:q',
  awsRegion: 'us-east-1',
});

const events = {
  sqs: { Records: [sqsRecord('m-1')] },
  sns: {
    Records: [
      {
        EventSource: 'aws:sns',
        EventVersion: '1.0',
        Sns: { MessageId: 'sns-1', Subject: 's', Message: 'hello', Timestamp: '2024-01-01T00:00:00Z' },
      },
    ],
  },
  eventbridge: {
    version: '0',
    id: 'eb-1',
    'detail-type': 'Order Placed',
    source: 'shop',
    account: '1',
    time: '2024-01-01T00:00:00Z',
    region: 'us-east-1',
    resources: [],
    detail: { orderId: 'o-1' },
  },
  s3: {
    Records: [
      {
        eventSource: 'aws:s3',
        s3: {
          bucket: { name: 'b' },
          object: { key: 'dir/file.txt', size: 3, eTag: 'e', sequencer: '0055AED6DCD90281E5' },
        },
      },
    ],
  },
  dynamodb: {
    Records: [
      {
        eventID: 'ddb-1',
        eventSource: 'aws:dynamodb',
        dynamodb: { Keys: { id: { S: '1' } }, NewImage: { id: { S: '1' } }, SequenceNumber: '111' },
      },
    ],
  },
  kinesis: {
    Records: [
      {
        eventID: 'shardId-000000000000:4954',
        eventSource: 'aws:kinesis',
        kinesis: { sequenceNumber: '4954', partitionKey: 'p', data: 'aGVsbG8=' },
      },
    ],
  },
};

const httpV1 = (headers: Record<string, string>, body = '{"a":1}') => ({
  resource: '/orders',
  path: '/orders',
  httpMethod: 'POST',
  headers,
  multiValueHeaders: {},
  queryStringParameters: null,
  requestContext: { requestId: 'r1', httpMethod: 'POST' },
  body,
  isBase64Encoded: false,
});
const httpV2 = (headers: Record<string, string>, body = '{"a":1}') => ({
  version: '2.0',
  rawPath: '/orders',
  rawQueryString: 'x=1',
  headers,
  requestContext: { http: { method: 'POST', path: '/orders' }, requestId: 'r2' },
  body,
  isBase64Encoded: false,
});

describe('keys per event source', () => {
  it.each([
    ['sqs', events.sqs, 'm-1'],
    ['sns', events.sns, 'sns-1'],
    ['eventbridge', events.eventbridge, 'eb-1'],
    ['s3', events.s3, 'b/dir/file.txt/0055AED6DCD90281E5'],
    ['dynamodb', events.dynamodb, 'ddb-1'],
    ['kinesis', events.kinesis, 'shardId-000000000000:4954'],
  ] as const)('%s: detected, and keyed', (source, event, key) => {
    expect(detectSource(event)).toBe(source);
    expect(identify(event, undefined).key).toBe(key);
    expect(identify(event, undefined, source).key).toBe(key);
  });

  it('a single record (as a batch handler sees it) is keyed like its event', () => {
    expect(identify(sqsRecord('m-9'), undefined).key).toBe('m-9');
    expect(identify(events.kinesis.Records[0], undefined).key).toBe('shardId-000000000000:4954');
  });

  it('several records give the list of their keys', () => {
    expect(identify({ Records: [sqsRecord('a'), sqsRecord('b')] }, undefined).key).toBe('a,b');
  });

  it('HTTP: Idempotency-Key in any case, in v1, v2, function URLs and multi-value headers', () => {
    expect(identify(httpV1({ 'Idempotency-Key': 'k1' }), undefined)).toMatchObject({
      source: 'http',
      key: 'k1',
    });
    expect(identify(httpV2({ 'idempotency-key': 'k2' }), undefined)).toMatchObject({
      source: 'http',
      key: 'k2',
    });
    const multi = { ...httpV1({}), multiValueHeaders: { 'IDEMPOTENCY-KEY': ['k3', 'other'] } };
    expect(identify(multi, undefined).key).toBe('k3');
    expect(isHttpEvent(httpV2({}))).toBe(true);
    expect(isHttpEvent(events.eventbridge)).toBe(false);
  });

  it('webhooks: GitHub delivery, Standard Webhooks / Svix id, Stripe event id', () => {
    expect(identify(httpV2({ 'x-github-delivery': 'gh-1' }), undefined)).toMatchObject({
      source: 'github',
      key: 'gh-1',
    });
    expect(identify(httpV2({ 'webhook-id': 'msg_1' }), undefined)).toMatchObject({
      source: 'standard-webhooks',
      key: 'msg_1',
    });
    expect(identify(httpV2({ 'svix-id': 'msg_2' }), undefined).key).toBe('msg_2');
    const stripe = httpV2({ 'stripe-signature': 't=1,v1=x' }, '{"id":"evt_123","object":"event"}');
    expect(identify(stripe, undefined)).toMatchObject({ source: 'stripe', key: 'evt_123' });
    const b64 = { ...stripe, body: Buffer.from(stripe.body).toString('base64'), isBase64Encoded: true };
    expect(identify(b64, undefined).key).toBe('evt_123');
    expect(sourceKey('stripe', { id: 'evt_9', object: 'event' })).toBe('evt_9');
  });

  it('the Idempotency-Key wins over a webhook header when both are present', () => {
    expect(identify(httpV2({ 'x-github-delivery': 'gh', 'idempotency-key': 'ik' }), undefined).key).toBe(
      'ik',
    );
  });

  it('no key where the source keeps it: undefined, never an empty or made-up key', () => {
    expect(identify(httpV2({}), undefined)).toMatchObject({ source: 'http', key: undefined });
    expect(identify(httpV2({ 'idempotency-key': '' }), undefined).key).toBeUndefined();
    expect(identify({ foo: 1 }, undefined)).toMatchObject({ source: 'custom', key: undefined });
    expect(
      identify({ Records: [sqsRecord('a'), { eventSource: 'aws:sqs' }] }, undefined).key,
    ).toBeUndefined();
    expect(identify(events.sqs, undefined, 'sns').key).toBeUndefined();
  });

  it('a function or a JMESPath expression (with powertools_json) chooses the key', async () => {
    await loadJmespath();
    const record = sqsRecord('m-1', '{"orderId":"o-7","lines":[1,2]}');
    expect(identify(record, undefined, { jmespath: 'powertools_json(body).orderId' }).key).toBe('o-7');
    expect(identify(record, undefined, (r) => `${r.messageId}!`).key).toBe('m-1!');
    expect(identify({ a: 1, b: [2] }, undefined, { jmespath: '[a, b]' }).key).toBe('[1,[2]]');
    expect(identify({ n: 5 }, undefined, { jmespath: 'n' }).key).toBe('5');
    expect(identify({ n: null }, undefined, { jmespath: 'n' }).key).toBeUndefined();
  });

  it('a JMESPath expression that does not parse is rejected by the first invocation, before the store', async () => {
    for (const jmespath of ['a[?', 'nosuchfn(a)']) {
      const store = new OnceFakeStore();
      const h = withOnce(async () => 1, { store, key: { jmespath }, logLevel: 'silent' });
      for (let n = 0; n < 2; n++) {
        const err = await h({ a: 1 }, undefined as never).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ValidationError);
        expect((err as ValidationError).message).toMatch(/^withOnce options: key\.jmespath does not parse/);
      }
      expect(store.roundTrips).toBe(0);
    }
  });

  it('an empty expression or an unknown key spec is rejected when the handler is wrapped', () => {
    expect(() => withOnce(async () => 1, { store: new OnceFakeStore(), key: { jmespath: ' ' } })).toThrow(
      /key\.jmespath must be a non-empty string/,
    );
    expect(() =>
      withOnce(async () => 1, { store: new OnceFakeStore(), key: 'carrier-pigeon' as 'sqs' }),
    ).toThrow(/key must be 'auto'/);
  });

  it('the JMESPath package loads only for a { jmespath } spec; identify() needs it loaded', async () => {
    vi.resetModules();
    const fresh = await import('../../layers/oncely/src/events.js');
    expect(fresh.identify({ id: 'x' }, undefined, (e) => e.id).key).toBe('x');
    expect(() => fresh.identify({ id: 'x' }, undefined, { jmespath: 'id' })).toThrow(/loadJmespath/);
    await fresh.loadJmespath();
    expect(fresh.identify({ id: 'x' }, undefined, { jmespath: 'id' }).key).toBe('x');
  });
});

describe('payloads', () => {
  beforeAll(() => loadJmespath());

  it('per source: SQS body, not its delivery attributes (a redelivery must not look like a new payload)', () => {
    const first = identify(sqsRecord('m'), undefined);
    const redelivered = identify(
      { ...sqsRecord('m'), receiptHandle: 'other', attributes: { ApproximateReceiveCount: '2' } },
      undefined,
    );
    expect(first.payload).toBe('{"orderId":"o-1"}');
    expect(redelivered.payload).toEqual(first.payload);
  });

  it('HTTP: method, path, query and the body parsed when JSON (whitespace and key order do not matter)', () => {
    const a = identify(httpV2({ 'idempotency-key': 'k' }, '{"a":1,"b":2}'), undefined).payload;
    const b = identify(
      { ...httpV2({ 'idempotency-key': 'k', 'x-amzn-trace-id': 'other' }, '{ "b": 2, "a": 1 }') },
      undefined,
    ).payload;
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(a).toEqual({ method: 'POST', path: '/orders', query: 'x=1', body: { a: 1, b: 2 } });
    const otherPath = identify({ ...httpV2({ 'idempotency-key': 'k' }), rawPath: '/refunds' }, undefined);
    expect(canonicalJson(otherPath.payload)).not.toBe(canonicalJson(a));
  });

  it("'event', false, a function and JMESPath choose what is compared", () => {
    expect(identify(events.eventbridge, undefined, 'auto', 'event').payload).toBe(events.eventbridge);
    expect(identify(events.eventbridge, undefined, 'auto', false).checkPayload).toBe(false);
    expect(identify(events.eventbridge, undefined, 'auto', { jmespath: 'detail.orderId' }).payload).toBe(
      'o-1',
    );
    expect(identify(events.eventbridge, undefined, 'auto', (e) => e.region).payload).toBe('us-east-1');
    expect(identify(events.eventbridge, undefined).payload).toEqual({
      source: 'shop',
      detailType: 'Order Placed',
      detail: { orderId: 'o-1' },
    });
  });

  it('canonical JSON sorts keys at every depth and keeps arrays in order', () => {
    expect(canonicalJson({ b: { d: 1, c: [3, { f: 1, e: 2 }] }, a: 0 })).toBe(
      '{"a":0,"b":{"c":[3,{"e":2,"f":1}],"d":1}}',
    );
  });
});

describe('HTTP helpers', () => {
  it('header() is case-insensitive and body() decodes base64', () => {
    const e = {
      headers: { 'Content-Type': 'x' },
      body: Buffer.from('hi').toString('base64'),
      isBase64Encoded: true,
    };
    expect(header(e, 'content-type')).toBe('x');
    expect(header(e, 'missing')).toBeUndefined();
    expect(httpBody(e)).toBe('hi');
  });
});
