/**
 * The end-to-end harness: the whole local stack (redis-server, the REST gateway, `serverless offline --stage
 * local`) on free ports, started once per test file, with webhook secrets made up for the run (so a function
 * that ignored its configured secret would fail). Tests talk to it as a caller would: HTTP, and the Lambda
 * API through `@aws-sdk/client-lambda`.
 */
import { randomBytes } from 'node:crypto';
import { InvocationType, InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { type Stack, startStack } from '../../dev/start.js';
import { countEffects } from '../../functions/shared/effects.js';
import { fromEnv, type Store } from '../../layers/oncely/src/index.js';

export interface Invocation {
  statusCode: number | undefined;
  /** The function's error type when it threw (`FunctionError` is set), else undefined. */
  functionError: string | undefined;
  /** The parsed payload (the result, or the error object), or undefined for Event invokes. */
  payload: unknown;
}

export interface E2E {
  readonly stack: Stack;
  readonly lambda: LambdaClient;
  /** A Store on the same gateway the functions use (REST), for looking at what they did. */
  readonly store: Store;
  /** `fetch` against serverless-offline's HTTP port. */
  http(path: string, init?: RequestInit): Promise<Response>;
  /** Invokes `oncely-local-<name>` (or a full name containing a dash) with a JSON payload. */
  invoke(name: string, payload: unknown, type?: InvocationType): Promise<Invocation>;
  /** How many times each id's work ran in function `fn`. */
  effects(fn: string, ids: readonly string[]): Promise<Map<string, number>>;
  /** Polls `effects` until `done(counts)` holds or `timeoutMs` passes; returns the last counts. */
  waitForEffects(
    fn: string,
    ids: readonly string[],
    done: (counts: Map<string, number>) => boolean,
    timeoutMs?: number,
  ): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

/** A fresh id prefix per test, so counters from other tests or runs never mix in. */
export function runId(): string {
  return `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

export async function startE2E(): Promise<E2E> {
  const stack = await startStack({
    gatewayPort: 0,
    httpPort: 0,
    lambdaPort: 0,
    token: `e2e-${randomBytes(12).toString('hex')}`,
    webhookSecrets: {
      github: `gh-${randomBytes(16).toString('hex')}`,
      stripe: `whsec_${randomBytes(16).toString('hex')}`,
      standard: `whsec_${randomBytes(24).toString('base64')}`,
    },
  });
  const lambda = new LambdaClient({
    endpoint: stack.lambdaEndpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1, // a test sees exactly what it sent
  });
  const store = fromEnv({
    UPSTASH_REDIS_REST_URL: stack.gateway.url,
    UPSTASH_REDIS_REST_TOKEN: stack.gateway.token,
  });

  const effects = (fn: string, ids: readonly string[]) => countEffects(store, fn, ids);
  return {
    stack,
    lambda,
    store,
    http: (path, init) => fetch(`${stack.httpUrl}${path}`, init),
    async invoke(name, payload, type = InvocationType.RequestResponse) {
      const out = await lambda.send(
        new InvokeCommand({
          FunctionName: name.includes('-') ? name : `oncely-local-${name}`,
          InvocationType: type,
          Payload: JSON.stringify(payload),
        }),
      );
      const text = out.Payload ? Buffer.from(out.Payload).toString('utf8') : '';
      return {
        statusCode: out.StatusCode,
        functionError: out.FunctionError,
        payload: text ? JSON.parse(text) : undefined,
      };
    },
    effects,
    async waitForEffects(fn, ids, done, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      let counts = await effects(fn, ids);
      while (!done(counts) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        counts = await effects(fn, ids);
      }
      return counts;
    },
    async stop() {
      lambda.destroy();
      await store.close();
      await stack.stop();
    },
  };
}
