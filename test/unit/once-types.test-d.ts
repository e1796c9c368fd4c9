import type {
  APIGatewayProxyEvent,
  APIGatewayProxyEventV2,
  APIGatewayProxyHandler,
  APIGatewayProxyHandlerV2,
  APIGatewayProxyResult,
  APIGatewayProxyResultV2,
  Context,
  EventBridgeEvent,
  EventBridgeHandler,
  Handler,
  SQSBatchResponse,
  SQSEvent,
  SQSHandler,
} from 'aws-lambda';
import { describe, expectTypeOf, it } from 'vitest';
import {
  type OnceOptions,
  type OnceRun,
  type ResultNotStored,
  withOnce,
} from '../../layers/oncely/src/index.js';
import { FakeStore } from '../support/fake-store.js';

// Type tests, checked by tsc alone (npm test's typecheck step covers test/): the wrapped handler's type says
// what a duplicate can get. A `.test-d.ts` file is outside vitest's include (test/**/*.test.ts), so these
// assertions are not counted as runtime passes; a wrong type fails the typecheck step instead.
describe('withOnce return types', () => {
  const store = new FakeStore();
  const handler = async (e: { id: string }) => e.id.length;

  it('a direct invoke: the result, or the ResultNotStored marker a duplicate gets when it was not stored', () => {
    expectTypeOf(withOnce(handler, { store, key: (e) => e.id })).toEqualTypeOf<
      (event: { id: string }, context: Context) => Promise<number | ResultNotStored>
    >();
    expectTypeOf(
      withOnce(handler, { store, key: (e) => e.id, duplicate: 'wait' }),
    ).returns.resolves.toEqualTypeOf<number | ResultNotStored>();
  });

  it("unstorable: 'throw' (re-run instead) never returns the marker", () => {
    expectTypeOf(
      withOnce(handler, { store, key: (e) => e.id, unstorable: 'throw' }),
    ).returns.resolves.toEqualTypeOf<number>();
  });

  it("'skip' may resolve to undefined", () => {
    expectTypeOf(
      withOnce(handler, { store, key: (e) => e.id, duplicate: 'skip', unstorable: 'throw' }),
    ).returns.resolves.toEqualTypeOf<number | undefined>();
    expectTypeOf(
      withOnce(handler, { store, key: (e) => e.id, duplicate: 'skip' }),
    ).returns.resolves.toEqualTypeOf<number | undefined | ResultNotStored>();
  });

  it('an inline handler gets its context and once typed, and R inferred from its result', () => {
    const wrapped = withOnce(
      async (event: { id: string }, context, once) => {
        expectTypeOf(context).toEqualTypeOf<Context>();
        expectTypeOf(once).toEqualTypeOf<OnceRun>();
        return { fence: once.fence, id: event.id };
      },
      { store, unstorable: 'throw' },
    );
    expectTypeOf(wrapped).toEqualTypeOf<
      (event: { id: string }, context: Context) => Promise<{ fence: number; id: string }>
    >();
  });

  it('type arguments keep their order: event, result, duplicate, unstorable, http', () => {
    expectTypeOf(
      withOnce<{ id: string }, number, 'skip', 'throw', false>(handler, { store }),
    ).returns.resolves.toEqualTypeOf<number | undefined>();
  });

  it('options typed as a whole (not literals) say everything a duplicate can get', () => {
    const options: OnceOptions<{ id: string }> = { store, key: (e) => e.id };
    expectTypeOf(withOnce(handler, options)).returns.resolves.toEqualTypeOf<
      number | undefined | ResultNotStored
    >();
  });
});

// The usual migration move: an existing handler typed with aws-lambda's Handler types, passed as it is.
describe('existing Handler<E, R>-typed functions', () => {
  const store = new FakeStore();

  it('API Gateway REST (v1): compiles, keeps APIGatewayProxyResult (a not-stored duplicate is a 202 answer)', () => {
    const existing: APIGatewayProxyHandler = async (event) => ({ statusCode: 200, body: event.path });
    const wrapped = withOnce(existing, { store });
    expectTypeOf(wrapped).toEqualTypeOf<
      (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>
    >();
    expectTypeOf(wrapped).toExtend<
      (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>
    >();
    // http: false turns the 202 answer into the marker, and the type says so
    expectTypeOf(withOnce(existing, { store, http: false })).returns.resolves.toEqualTypeOf<
      APIGatewayProxyResult | ResultNotStored
    >();
  });

  it('API Gateway HTTP API (v2): compiles and keeps APIGatewayProxyResultV2', () => {
    const existing: APIGatewayProxyHandlerV2 = async (event) => ({ statusCode: 200, body: event.rawPath });
    expectTypeOf(withOnce(existing, { store })).toEqualTypeOf<
      (event: APIGatewayProxyEventV2, context: Context) => Promise<APIGatewayProxyResultV2>
    >();
  });

  it('SQS: compiles; a not-stored duplicate is acknowledged with the marker', () => {
    const existing: SQSHandler = async () => ({ batchItemFailures: [] });
    expectTypeOf(withOnce(existing, { store })).toEqualTypeOf<
      // biome-ignore lint/suspicious/noConfusingVoidType: SQSHandler's own result type is SQSBatchResponse | void
      (event: SQSEvent, context: Context) => Promise<SQSBatchResponse | void | ResultNotStored>
    >();
  });

  it('EventBridge: compiles and keeps its result type', () => {
    type Detail = { orderId: string };
    const existing: EventBridgeHandler<'OrderPlaced', Detail, { charged: boolean }> = async (event) => ({
      charged: event.detail.orderId.length > 0,
    });
    const wrapped = withOnce(existing, { store });
    expectTypeOf(wrapped).parameter(0).toEqualTypeOf<EventBridgeEvent<'OrderPlaced', Detail>>();
    expectTypeOf(wrapped).returns.resolves.toEqualTypeOf<{ charged: boolean } | ResultNotStored>();
  });

  it('a plain Handler<E, R>: compiles and keeps R', () => {
    const existing: Handler<{ id: string }, number> = async (event) => event.id.length;
    expectTypeOf(withOnce(existing, { store, key: (e) => e.id })).toEqualTypeOf<
      (event: { id: string }, context: Context) => Promise<number | ResultNotStored>
    >();
    expectTypeOf(
      withOnce(existing, { store, key: (e) => e.id, unstorable: 'throw' }),
    ).returns.resolves.toEqualTypeOf<number>();
  });
});
