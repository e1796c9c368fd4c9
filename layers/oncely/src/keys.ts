/**
 * Idempotency keys: the event sources that carry one and where, canonical JSON (the same value always gives the
 * same text), and the rule that a key value JSON would change (NaN, Infinity, undefined fields, Dates, Maps,
 * cycles) is refused, so that two events never share a record by accident. And the digest a record's key holds,
 * and the checks of a key or payload spec (withOnce checks them when a handler is made; events.ts re-exports them).
 */
import * as crypto from 'node:crypto';
import { isJmespathSpec, jmespathShapeProblems } from './jmespath.js';

export type EventSource =
  | 'sqs'
  | 'sns'
  | 'eventbridge'
  | 's3'
  | 'dynamodb'
  | 'kinesis'
  | 'http'
  | 'github'
  | 'stripe'
  | 'standard-webhooks';

export const EVENT_SOURCES: readonly EventSource[] = [
  'sqs',
  'sns',
  'eventbridge',
  's3',
  'dynamodb',
  'kinesis',
  'http',
  'github',
  'stripe',
  'standard-webhooks',
];

/** Where each source keeps its key, for error messages. */
export const KEY_LOCATIONS: Readonly<Record<EventSource | 'custom', string>> = {
  sqs: 'the SQS messageId',
  sns: 'the SNS MessageId',
  eventbridge: 'the EventBridge event id',
  s3: 'the S3 bucket, key and sequencer',
  dynamodb: 'the DynamoDB stream eventID',
  kinesis: 'the Kinesis eventID',
  http: 'an Idempotency-Key header',
  github: 'an X-GitHub-Delivery header',
  stripe: 'a Stripe event id in the body',
  'standard-webhooks': 'a webhook-id (or svix-id) header',
  custom: 'the key option (function or JMESPath expression)',
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Canonical JSON: object keys sorted, so the same value always gives the same text (a payload hash must not
 * depend on key order). Values JSON cannot hold (undefined, functions) are left out as JSON.stringify does.
 */
export function canonicalJson(value: unknown): string {
  // A string (an SQS body, a Kinesis record's data) or another primitive has one JSON form: no replacer needed.
  if (typeof value !== 'object' || value === null) return JSON.stringify(value);
  return JSON.stringify(value, (_k, v: unknown) => {
    if (!isObj(v) || v instanceof Date) return v;
    const sorted: Obj = {};
    for (const k of Object.keys(v).sort()) sorted[k] = v[k];
    return sorted;
  });
}

/** A value's type as messages name it: `NaN`, `Infinity`, `null`, `array`, `Date`, `Map`, `bigint`, … */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'number') return Number.isFinite(v) ? 'number' : String(v);
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') {
    const proto = Object.getPrototypeOf(v) as { constructor?: { name?: string } } | null;
    return proto === null || proto === Object.prototype ? 'object' : proto.constructor?.name || 'object';
  }
  return typeof v;
}

/**
 * Why a key function's (or expression's) object or array cannot be a key without colliding with another one,
 * or undefined when it can: JSON would turn `[undefined]` into `[null]`, `{ a: undefined }` into `{}`, NaN and
 * ±Infinity into `null`, a Map or a class instance into `{}`. Names the place and the type, never the value.
 */
function unsafeKeyPart(v: unknown, path: string, inArray: boolean, seen: Set<object>): string | undefined {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(v) ? undefined : `${path} is ${v}`;
    case 'object': {
      if (v === null) return inArray ? `${path} is null` : undefined;
      if (seen.has(v)) return `${path} is circular`;
      seen.add(v);
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          const p = unsafeKeyPart(v[i], `${path}[${i}]`, true, seen);
          if (p) return p;
        }
        return undefined;
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return `${path} is a ${typeName(v)}`;
      for (const k of Object.keys(v)) {
        const p = unsafeKeyPart((v as Obj)[k], `${path}.${k}`, false, seen);
        if (p) return p;
      }
      return undefined;
    }
    default:
      return `${path} is ${typeName(v) === 'undefined' ? 'undefined' : `a ${typeName(v)}`}`;
  }
}

/** What a usable key is, for messages. */
const KEY_RULE =
  'a key is a non-empty string, a finite number, a boolean, or a non-empty array or plain object of those ' +
  '(objects may hold null; arrays may not hold null or undefined)';

/**
 * A key value as text (see "Keys" in docs/once.md): strings as they are; finite numbers, booleans and bigints as
 * `String(value)`; plain objects and arrays as canonical JSON (sorted object keys). undefined, null, '', `[]`
 * and `{}` are no key. Anything JSON would change, and so could collide with another key, is refused with
 * `problem` naming its type: NaN, ±Infinity, a function or a symbol; an array holding undefined or null; an
 * object with an undefined field; a Date, Map, Set or class instance; a circular structure.
 */
export function keyText(value: unknown, what: string): { key?: string; problem?: string } {
  if (value === undefined || value === null || value === '') return {};
  switch (typeof value) {
    case 'string':
      return { key: value };
    case 'boolean':
    case 'bigint':
      return { key: String(value) };
    case 'number':
      return Number.isFinite(value)
        ? { key: String(value) } // -0 is "0", as 0
        : { problem: `${what} returned ${value}, which is not a usable key: ${KEY_RULE}` };
    case 'object': {
      const unsafe = unsafeKeyPart(value, '$', false, new Set());
      if (unsafe) {
        const type = typeName(value);
        const returned = `${/^[aeiou]/i.test(type) ? 'an' : 'a'} ${type}`;
        const detail = unsafe.startsWith('$ ') ? returned : `${returned} whose ${unsafe}`;
        return { problem: `${what} returned ${detail}, which is not a usable key: ${KEY_RULE}` };
      }
      const json = canonicalJson(value);
      return json === '[]' || json === '{}' ? {} : { key: json };
    }
    default:
      return { problem: `${what} returned a ${typeof value}, which is not a usable key: ${KEY_RULE}` };
  }
}

/** SHA-256 in one call (crypto.hash, Node ≥ 20.12: no Hash object per call), else through createHash. */
const sha256: (text: string) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('sha256', text, 'base64url')
    : (text) => crypto.createHash('sha256').update(text).digest('base64url');

let lastText: string | undefined;
let lastDigest = '';

/**
 * 22 base64url characters: 132 bits of SHA-256 (a record's key holds its idempotency key's digest). The last
 * text's digest is kept: an invocation asks for its key's digest for the record's key and again for each of
 * its decision lines.
 */
export function digest(text: string): string {
  if (text !== lastText) {
    lastDigest = sha256(text).slice(0, 22);
    lastText = text;
  }
  return lastDigest;
}

/**
 * Problems with a key spec (checked once, when a handler is wrapped). A `{ jmespath }` spec is only checked
 * for a non-empty string here: whether it parses needs the package, see expressionProblems().
 */
export function keySpecProblems(spec: unknown, field = 'key'): string[] {
  if (spec === undefined || spec === 'auto' || spec === 'event' || typeof spec === 'function') return [];
  if (typeof spec === 'string') {
    return EVENT_SOURCES.includes(spec as EventSource)
      ? []
      : [
          `${field} must be 'auto', 'event', one of ${EVENT_SOURCES.join(', ')}, a function or { jmespath }, got '${spec}'`,
        ];
  }
  if (isJmespathSpec(spec)) return jmespathShapeProblems(spec.jmespath, field);
  return [`${field} must be 'auto', 'event', an event source name, a function or { jmespath }`];
}

export function payloadSpecProblems(spec: unknown, field = 'payload'): string[] {
  if (spec === undefined || spec === 'auto' || spec === 'event' || spec === false) return [];
  if (typeof spec === 'function') return [];
  if (isJmespathSpec(spec)) return jmespathShapeProblems(spec.jmespath, field);
  return [`${field} must be 'auto', 'event', false, a function or { jmespath }`];
}
