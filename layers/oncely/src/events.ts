/**
 * Idempotency keys per event source: which field of an event names "this delivery", and which part of it is the
 * payload that a reuse of the key must match.
 *
 *   source              key                                         payload checked on reuse
 *   sqs                 messageId                                   body
 *   sns                 Sns.MessageId                               Subject + Message
 *   eventbridge         id                                          source + detail-type + detail
 *   s3                  bucket/key/sequencer                        the object (key, size, eTag, version)
 *   dynamodb            eventID                                     the stream record (keys and images)
 *   kinesis             eventID (shard id : sequenceNumber)         data
 *   http                Idempotency-Key header                      method + path + query + body
 *   github              X-GitHub-Delivery header                    method + path + query + body
 *   stripe              the event id in the body (evt_…)            method + path + query + body
 *   standard-webhooks   webhook-id header (svix-id for Svix)        method + path + query + body
 *
 * `auto` recognises the source from the event's shape. HTTP events (API Gateway REST v1, HTTP API v2, function
 * URLs, ALB) are tried in order: Idempotency-Key, X-GitHub-Delivery, webhook-id / svix-id, then a Stripe event id
 * when a Stripe-Signature header is present. An event with `Records` (SQS, SNS, S3, DynamoDB, Kinesis) is keyed by
 * its records: one record gives that record's key, several give the list of their keys (for SQS batches use
 * withOnceBatch, which keys every record on its own).
 *
 * Anything else: a function, or a JMESPath expression (`@aws-lambda-powertools/jmespath`, with its
 * `powertools_json()`, `powertools_base64()` and `powertools_base64_gzip()` functions). The JMESPath package is
 * loaded by dynamic import, only once a `{ jmespath }` spec is used (`loadJmespath()`): a bundle that never keys
 * on an expression neither carries nor parses it.
 */
import type { Context } from 'aws-lambda';
import { invalid } from './errors.js';
import { isJmespathSpec, jmespath, requireJmespath } from './jmespath.js';
import { canonicalJson, type EventSource, keyText } from './keys.js';

export { expressionProblems, loadJmespath, usesJmespath } from './jmespath.js';
// Where identify()'s callers look for them.
export {
  EVENT_SOURCES,
  type EventSource,
  KEY_LOCATIONS,
  keySpecProblems,
  payloadSpecProblems,
} from './keys.js';

/** A value a key function or expression may give: strings as they are, anything else as canonical JSON. */
export type KeyValue = string | number | boolean | object | null | undefined;

/**
 * How to find an event's idempotency key: `'auto'` (recognise the source), a source name, `'event'` (the whole
 * event as canonical JSON, Powertools' default), a function of the event, or `{ jmespath }`.
 */
export type KeySpec<E = unknown> =
  | 'auto'
  | 'event'
  | EventSource
  | { jmespath: string }
  | ((event: E, context: Context | undefined) => KeyValue);

/**
 * Which part of the event a reuse of its key must match. `'auto'`: the source's payload (table above); nothing
 * when the source is not one oncely recognises and the key is the user's (a function, an expression, or
 * `'event'`), as in Powertools: name what to check to check it. `'event'`: the whole event; `false`: no check.
 */
export type PayloadSpec<E = unknown> =
  | 'auto'
  | 'event'
  | false
  | { jmespath: string }
  | ((event: E) => unknown);

export interface Identity {
  /** The source the key came from (`custom` for a function or expression). */
  readonly source: EventSource | 'custom';
  /** The idempotency key, or undefined when the event has none. */
  readonly key: string | undefined;
  /** Why the key function's or expression's value was refused (key is then undefined). */
  readonly problem?: string;
  /** What a reuse of the key must match (undefined when unchecked). */
  readonly payload: unknown;
  /** Whether to check the payload at all. */
  readonly checkPayload: boolean;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

// ------------------------------------------------------------------------------------------------ HTTP events

/** True for API Gateway REST (v1) and HTTP API (v2) proxy events, function URL events and ALB events. */
export function isHttpEvent(event: unknown): boolean {
  if (!isObj(event)) return false;
  const rc = event.requestContext;
  if (typeof event.httpMethod === 'string' && (isObj(rc) || isObj(event.headers))) return true;
  return isObj(rc) && isObj(rc.http) && typeof rc.http.method === 'string';
}

/** A request header, case-insensitively (v1 `headers` keep the sender's case; multi-value headers too). */
export function header(event: unknown, name: string): string | undefined {
  if (!isObj(event)) return undefined;
  const wanted = name.toLowerCase();
  for (const field of ['headers', 'multiValueHeaders'] as const) {
    const h = event[field];
    if (!isObj(h)) continue;
    for (const [k, v] of Object.entries(h)) {
      if (k.toLowerCase() !== wanted) continue;
      const value = Array.isArray(v) ? v[0] : v;
      if (str(value)) return value as string;
    }
  }
  return undefined;
}

/** The request body as text (base64 bodies decoded), or undefined. */
export function httpBody(event: unknown): string | undefined {
  if (!isObj(event) || typeof event.body !== 'string') return undefined;
  return event.isBase64Encoded === true ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
}

function jsonBody(event: unknown): unknown {
  const body = httpBody(event);
  if (body === undefined) return undefined;
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

/** What an HTTP request's key must match: method, path, query and body (parsed when it is JSON). */
function httpPayload(event: Obj): unknown {
  const rc = isObj(event.requestContext) ? event.requestContext : {};
  const http = isObj(rc.http) ? rc.http : {};
  const body = httpBody(event);
  let parsed: unknown = body;
  if (body !== undefined) {
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = body;
    }
  }
  return {
    method: event.httpMethod ?? http.method,
    path: event.rawPath ?? event.path ?? http.path,
    query: event.rawQueryString ?? event.queryStringParameters ?? null,
    body: parsed ?? null,
  };
}

function stripeEventId(event: unknown): string | undefined {
  const body = isHttpEvent(event) ? jsonBody(event) : event;
  if (!isObj(body)) return undefined;
  return body.object === 'event' || str(body.id)?.startsWith('evt_') ? str(body.id) : undefined;
}

const HTTP_KEYS: readonly [EventSource, (event: unknown) => string | undefined][] = [
  ['http', (e) => header(e, 'idempotency-key')],
  ['github', (e) => header(e, 'x-github-delivery')],
  ['standard-webhooks', (e) => header(e, 'webhook-id') ?? header(e, 'svix-id')],
  ['stripe', (e) => (header(e, 'stripe-signature') ? stripeEventId(e) : undefined)],
];

// -------------------------------------------------------------------------------------------- record sources

const RECORD_SOURCES: Readonly<Record<string, EventSource>> = {
  'aws:sqs': 'sqs',
  'aws:sns': 'sns',
  'aws:s3': 's3',
  'aws:dynamodb': 'dynamodb',
  'aws:kinesis': 'kinesis',
};

function recordSource(record: unknown): EventSource | undefined {
  if (!isObj(record)) return undefined;
  const tag = str(record.eventSource) ?? str(record.EventSource);
  return tag ? RECORD_SOURCES[tag] : undefined;
}

function recordKey(source: EventSource, r: Obj): string | undefined {
  switch (source) {
    case 'sqs':
      return str(r.messageId);
    case 'sns':
      return isObj(r.Sns) ? str(r.Sns.MessageId) : undefined;
    case 's3': {
      const s3 = isObj(r.s3) ? r.s3 : {};
      const bucket = isObj(s3.bucket) ? str(s3.bucket.name) : undefined;
      const object = isObj(s3.object) ? s3.object : {};
      const key = str(object.key);
      const sequencer = str(object.sequencer);
      return bucket && key && sequencer ? `${bucket}/${key}/${sequencer}` : undefined;
    }
    case 'dynamodb':
      return str(r.eventID);
    case 'kinesis': {
      const seq = isObj(r.kinesis) ? str(r.kinesis.sequenceNumber) : undefined;
      return str(r.eventID) ?? seq;
    }
    default:
      return undefined;
  }
}

function recordPayload(source: EventSource, r: Obj): unknown {
  switch (source) {
    case 'sqs':
      return r.body;
    case 'sns':
      return isObj(r.Sns) ? { subject: r.Sns.Subject ?? null, message: r.Sns.Message } : undefined;
    case 's3': {
      const s3 = isObj(r.s3) ? r.s3 : {};
      return { bucket: isObj(s3.bucket) ? s3.bucket.name : undefined, object: s3.object };
    }
    case 'dynamodb':
      return isObj(r.dynamodb)
        ? {
            keys: r.dynamodb.Keys,
            newImage: r.dynamodb.NewImage ?? null,
            oldImage: r.dynamodb.OldImage ?? null,
          }
        : undefined;
    case 'kinesis':
      return isObj(r.kinesis) ? r.kinesis.data : undefined;
    default:
      return undefined;
  }
}

// ----------------------------------------------------------------------------------------------- detection

/** The source an event (or a single record of one) comes from, or undefined. */
export function detectSource(event: unknown): EventSource | undefined {
  if (!isObj(event)) return undefined;
  if (isHttpEvent(event)) {
    for (const [source, find] of HTTP_KEYS) if (find(event) !== undefined) return source;
    return 'http';
  }
  if (Array.isArray(event.Records) && event.Records.length > 0) return recordSource(event.Records[0]);
  const single = recordSource(event);
  if (single) return single;
  if (typeof event['detail-type'] === 'string' && typeof event.source === 'string' && str(event.id)) {
    return 'eventbridge';
  }
  if (stripeEventId(event)) return 'stripe';
  return undefined;
}

/** The key `source` names in `event` (an event, or one record of an event with Records). */
export function sourceKey(source: EventSource, event: unknown): string | undefined {
  if (!isObj(event)) return undefined;
  switch (source) {
    case 'eventbridge':
      return typeof event['detail-type'] === 'string' ? str(event.id) : undefined;
    case 'http':
    case 'github':
    case 'standard-webhooks':
      return HTTP_KEYS.find(([s]) => s === source)?.[1](event);
    case 'stripe':
      return stripeEventId(event);
    default: {
      const records = Array.isArray(event.Records) ? event.Records : [event];
      const keys = records.map((r) => (isObj(r) ? recordKey(source, r) : undefined));
      if (keys.length === 0 || keys.some((k) => k === undefined)) return undefined;
      return keys.join(',');
    }
  }
}

/** The part of `event` a reuse of its key must match, per source. */
export function sourcePayload(source: EventSource, event: unknown): unknown {
  if (!isObj(event)) return event;
  switch (source) {
    case 'eventbridge':
      return { source: event.source, detailType: event['detail-type'], detail: event.detail ?? null };
    case 'http':
    case 'github':
    case 'standard-webhooks':
      return httpPayload(event);
    case 'stripe':
      return isHttpEvent(event) ? httpPayload(event) : event;
    default: {
      if (!Array.isArray(event.Records)) return recordPayload(source, event);
      const payloads = event.Records.map((r) => (isObj(r) ? recordPayload(source, r) : undefined));
      return payloads.length === 1 ? payloads[0] : payloads;
    }
  }
}

/** Why `key: 'auto'` found no key in an event it does not recognise, and what to do. */
const UNRECOGNISED =
  'no idempotency key: the event is not one oncely recognises (SQS, SNS, EventBridge, S3, DynamoDB, Kinesis, ' +
  'an HTTP request with an Idempotency-Key header or a webhook delivery id). Pass key: ' +
  "'event' to key on the whole event (Powertools' default), a function of the event, or { jmespath }";

/**
 * The identity of one invocation: its key and the payload a reuse of the key must match.
 * A function or expression that throws is a ValidationError naming it (the event does not fit the expression).
 * A `{ jmespath }` spec needs `await loadJmespath()` first.
 */
export function identify<E>(
  event: E,
  context: Context | undefined,
  keySpec: KeySpec<E> = 'auto',
  payloadSpec: PayloadSpec<E> = 'auto',
): Identity {
  if (isJmespathSpec(keySpec) || isJmespathSpec(payloadSpec)) requireJmespath();
  // The event's source is looked for only where it decides something: `key: 'auto'`, or `payload: 'auto'`
  // with a key of the user's.
  let detected: EventSource | undefined;
  let source: EventSource | 'custom';
  let key: string | undefined;
  let problem: string | undefined;
  if (keySpec === 'auto') {
    detected = detectSource(event);
    source = detected ?? 'custom';
    key = detected ? sourceKey(detected, event) : undefined;
    if (!detected) problem = UNRECOGNISED;
  } else if (keySpec === 'event') {
    source = 'custom';
    key = event === undefined || event === null ? undefined : canonicalJson(event);
  } else if (typeof keySpec === 'string') {
    source = keySpec;
    key = sourceKey(keySpec, event);
  } else {
    source = 'custom';
    const what = `the key ${typeof keySpec === 'function' ? 'function' : 'expression'}`;
    let value: unknown;
    try {
      value = typeof keySpec === 'function' ? keySpec(event, context) : jmespath(keySpec.jmespath, event);
    } catch (err) {
      throw invalid([`${what} threw`], undefined, err);
    }
    ({ key, problem } = keyText(value, what));
  }

  if (payloadSpec === false) return identity(source, key, problem, undefined, false);
  let payload: unknown;
  if (payloadSpec === 'event') payload = event;
  else if (payloadSpec === 'auto') {
    const from = source !== 'custom' ? source : keySpec === 'auto' ? detected : detectSource(event);
    // A key of the user's on an event oncely does not recognise: nothing is checked unless named (Powertools'
    // payloadValidationJmesPath), so a redelivery whose other fields differ gets the stored result.
    if (!from) return identity(source, key, problem, undefined, false);
    payload = sourcePayload(from, event);
  } else {
    try {
      payload =
        typeof payloadSpec === 'function' ? payloadSpec(event) : jmespath(payloadSpec.jmespath, event);
    } catch (err) {
      throw invalid(
        [`the payload ${typeof payloadSpec === 'function' ? 'function' : 'expression'} threw`],
        undefined,
        err,
      );
    }
  }
  return identity(source, key, problem, payload, true);
}

/** An Identity, `problem` only when there is one. */
function identity(
  source: EventSource | 'custom',
  key: string | undefined,
  problem: string | undefined,
  payload: unknown,
  checkPayload: boolean,
): Identity {
  return problem === undefined
    ? { source, key, payload, checkPayload }
    : { source, key, problem, payload, checkPayload };
}
