import middy from '@middy/core';
import type { Context, ScheduledEvent, SQSRecord } from 'aws-lambda';
import {
  type Decision,
  type OnceHandler,
  type OnceOptions,
  withOnce,
} from '../../layers/oncely/src/index.js';
import { type OnceContext, onceMiddleware } from '../../layers/oncely/src/middy.js';
import type { Script } from '../../layers/oncely/src/scripts.js';
import type { CallResult, ScriptArg, ScriptCall, Store } from '../../layers/oncely/src/transport/types.js';
import { OnceFakeStore } from './once-fake-store.js';

/** The two adapters over the one state machine: every adapter test runs through both. */
export type Adapter = 'wrapper' | 'middleware';
export const ADAPTERS: readonly { type: Adapter }[] = [{ type: 'wrapper' }, { type: 'middleware' }];

/** A Lambda handler built with `type`: withOnce(handler), or middy(handler).use(onceMiddleware()). */
export function wrap<E, R>(
  type: Adapter,
  handler: OnceHandler<E, R>,
  options: OnceOptions<E>,
): (event: E, context: Context) => Promise<R> {
  // Tests call both adapters with every policy; a 'skip' test expects undefined, which R then includes.
  if (type === 'wrapper') return withOnce(handler, options) as (event: E, context: Context) => Promise<R>;
  const m = middy<E, R, Error, OnceContext>(async (event: E, context: Context) =>
    handler(event, context, (context as OnceContext).oncely),
  ).use(onceMiddleware<E, R>(options));
  return (event, context) => m(event, context as OnceContext);
}

/** A Lambda context whose remaining time runs down on Date.now (fake timers move it). */
export function lambdaContext(remainingMs = 60_000): Context {
  const deadline = Date.now() + remainingMs;
  return {
    functionName: 'test-fn',
    awsRequestId: 'req',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  } as Context;
}

/** A promise with its resolve and reject. */
export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Wraps a Store and counts its requests: `run` and `runMany` each make one round trip. */
export class CountingStore implements Store {
  roundTrips = 0;
  readonly scripts: string[] = [];
  constructor(readonly inner: Store) {}
  get kind() {
    return this.inner.kind;
  }
  get name() {
    return this.inner.name;
  }
  run(script: Script, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> {
    this.roundTrips++;
    this.scripts.push(script.name);
    return this.inner.run(script, keys, args);
  }
  runMany(calls: readonly ScriptCall[]): Promise<CallResult[]> {
    this.roundTrips++;
    this.scripts.push(`[${calls.map((c) => c.script.name).join(',')}]`);
    return this.inner.runMany(calls);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Collects log lines as parsed JSON. */
export function logSink() {
  const lines: string[] = [];
  return {
    lines,
    logger: (line: string) => {
      lines.push(line);
    },
    parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    decisions: () => lines.map((l) => (JSON.parse(l) as { decision: string }).decision),
  };
}

/**
 * The set-up most run-once unit tests share: a fake store on `now`, its log lines (logSink) and decisions
 * collected, namespace 'fn'; `options` go over these.
 */
export function fakeOnce<E>(options: Partial<OnceOptions<E>>, now: () => number = () => Date.now()) {
  const store = new OnceFakeStore(now);
  const log = logSink();
  const decisions: Decision[] = [];
  const all: OnceOptions<E> = {
    store,
    namespace: 'fn',
    logger: log.logger,
    onDecision: (d) => decisions.push(d),
    ...options,
  };
  return { store, log, decisions, options: all };
}

/**
 * A handler that counts its runs and holds each until `gate` settles, wrapped by `type`: the first invocation
 * keeps its record claimed while a test sends duplicates. `answer` lets a run return at once instead (given
 * the event and the run's number from 1; undefined: wait on the gate).
 */
export function gated<E, R = string>(
  type: Adapter,
  options: OnceOptions<E>,
  answer: (event: E, run: number) => R | undefined = () => undefined,
) {
  const gate = deferred<R>();
  let runs = 0;
  const h = wrap<E, R>(type, async (event) => answer(event, ++runs) ?? gate.promise, options);
  return { h, gate, runs: () => runs };
}

let seq = 0;
/** A name no other test (nor another process's run) uses. */
export const unique = (label: string) => `${label}-${process.pid}-${++seq}`;

/** An SQS record with the message id `id`. */
export const sqsRecord = (id: string, body = id): SQSRecord =>
  ({
    messageId: id,
    receiptHandle: `rh-${id}`,
    body,
    attributes: { ApproximateReceiveCount: '1' },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123:q',
    awsRegion: 'us-east-1',
  }) as SQSRecord;

/** An EventBridge schedule tick at `at`, as delivered in `region` for the rule `rule`. */
export const scheduledTick = (at: number, rule: string, region = 'us-east-1'): ScheduledEvent => ({
  version: '0',
  id: `id-${region}-${at}-${Math.random()}`, // every delivery has its own id: keying on it would not dedupe
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '123456789012',
  time: new Date(at).toISOString(),
  region,
  resources: [`arn:aws:events:${region}:123456789012:rule/${rule}`],
  detail: {},
});
