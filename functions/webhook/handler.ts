/**
 * webhook: `POST /webhooks/{provider}` for GitHub, Stripe and Standard Webhooks (Svix and others).
 *
 * Providers deliver at least once: they retry on timeouts and 5xx, and a redelivery can arrive while the first
 * delivery is still being processed. So:
 *   1. verify the signature over the raw body (401 when it does not match, before anything else);
 *   2. parse the body (400 when it is not JSON);
 *   3. run the work once per delivery id with withOnce: a duplicate after completion gets the first answer
 *      again (200, `Idempotent-Replayed: true`); a duplicate while the first is running gets 409 with
 *      Retry-After, so the provider retries later and then gets the first answer.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { type EventSource, fromEnv, loadSecrets, withOnce } from 'oncely';
import { recordEffect } from '../shared/effects.js';
import {
  type Headers,
  type Verification,
  verifyGithub,
  verifyStandardWebhook,
  verifyStripe,
} from './signatures.js';

type Response = APIGatewayProxyStructuredResultV2;

// Module scope, once per container: the environment with every `<NAME>_SSM_PARAMETER` parameter read from SSM (the
// store's token and the signing secrets: on AWS the template names the parameters, never their values).
const env = await loadSecrets();
const store = fromEnv(env); // no connection is made until the first call

/** Stands in for the real work (calling your backend); long enough that redeliveries overlap with it. */
const WORK_MS = 200;

interface Provider {
  /** Where withOnce finds the delivery id: `X-GitHub-Delivery`, the Stripe event id, `webhook-id`. */
  readonly source: EventSource;
  readonly verify: (body: Buffer, headers: Headers) => Verification;
}

/** A secret read at cold start: a misconfigured function fails loudly, not per request. */
function secret(name: string): string {
  const value = env[name];
  if (!value) throw new Error(`${name} is not set (nor ${name}_SSM_PARAMETER, an SSM parameter holding it)`);
  return value;
}

const secrets = {
  github: secret('GITHUB_WEBHOOK_SECRET'),
  stripe: secret('STRIPE_WEBHOOK_SECRET'),
  standard: secret('STANDARD_WEBHOOK_SECRET'),
};

const PROVIDERS: Readonly<Record<string, Provider>> = {
  github: { source: 'github', verify: (body, headers) => verifyGithub(body, headers, secrets.github) },
  stripe: { source: 'stripe', verify: (body, headers) => verifyStripe(body, headers, secrets.stripe) },
  standard: {
    source: 'standard-webhooks',
    verify: (body, headers) => verifyStandardWebhook(body, headers, secrets.standard),
  },
};

const json = (statusCode: number, body: unknown): Response => ({
  statusCode,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

/** The work for one delivery, once per delivery id: one wrapped handler per provider (its own key source). */
const processDelivery = Object.fromEntries(
  Object.entries(PROVIDERS).map(([name, provider]) => [
    name,
    withOnce<APIGatewayProxyEventV2, Response>(
      async (event, _context, { key, fence, signal }) => {
        const delivery = JSON.parse(bodyOf(event).toString('utf8')) as { type?: string; action?: string };
        await recordEffect(store, 'webhook', `${name}:${key}`);
        await sleep(WORK_MS, undefined, { signal });
        return json(200, {
          provider: name,
          delivery: key,
          type: delivery.type ?? event.headers['x-github-event'] ?? delivery.action ?? null,
          fence,
          processedAt: new Date().toISOString(),
        });
      },
      {
        store,
        // Records of each provider apart (and of each stage: the function name carries it).
        namespace: `${process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'webhook'}:${name}`,
        key: provider.source,
        // Providers give up on an answer after ~10 s (GitHub) and retry later; the lease is extended while
        // the work runs, so this only bounds how long a crashed invocation blocks a redelivery (Retry-After).
        ttlMs: 10_000,
      },
    ),
  ]),
);

function bodyOf(event: APIGatewayProxyEventV2): Buffer {
  return Buffer.from(event.body ?? '', event.isBase64Encoded ? 'base64' : 'utf8');
}

/** HTTP API v2 headers arrive in lower case; other sources may not. */
function lowerCaseHeaders(headers: APIGatewayProxyEventV2['headers'] | undefined): Headers {
  return Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
}

export const handler = async (event: APIGatewayProxyEventV2, context: Context): Promise<Response> => {
  const name = event.pathParameters?.provider ?? '';
  const provider = PROVIDERS[name];
  const run = processDelivery[name];
  if (!provider || !run) return json(404, { error: `unknown provider "${name}"` });

  const body = bodyOf(event);
  const verified = provider.verify(body, lowerCaseHeaders(event.headers));
  if (!verified.ok) return json(401, { error: 'invalid signature', reason: verified.reason });

  try {
    JSON.parse(body.toString('utf8'));
  } catch {
    return json(400, { error: 'body is not JSON' });
  }
  return run(event, context);
};
