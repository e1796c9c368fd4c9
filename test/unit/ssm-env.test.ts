// Secrets at run time: loadSecrets / fromEnvAsync against the stand-in SSM endpoint through the real
// @aws-sdk/client-ssm (JSON protocol, decryption, errors as the SDK raises them), and with an injected reader
// for the batching and the cache.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  fromEnv,
  fromEnvAsync,
  loadSecrets,
  type ParameterReader,
} from '../../layers/oncely/src/index.js';
import { type FakeAws, startFakeAws } from '../support/fake-aws.js';

const TOKEN = 'test-token-3f9c1a'; // a secret: must never appear in an error
const GITHUB = 'test-github-secret-77ab';
let aws: FakeAws;
const saved: Record<string, string | undefined> = {};
const AWS_ENV = ['AWS_ENDPOINT_URL_SSM', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'];

beforeAll(async () => {
  aws = await startFakeAws({
    parameters: {
      '/t/upstash-url': { value: 'http://127.0.0.1:1' },
      '/t/upstash-token': { value: TOKEN },
      '/t/github': { value: GITHUB },
      '/t/plain': { value: 'not secret', type: 'String' },
    },
    denied: ['/t/denied'],
  });
  // The default reader's SSMClient takes region, credentials and endpoint from the environment, as on Lambda.
  for (const k of AWS_ENV) saved[k] = process.env[k];
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_SSM: aws.url,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'AKIAFAKEFAKEFAKEFAKE',
    AWS_SECRET_ACCESS_KEY: 'fake-secret-access-key',
  });
});

afterAll(async () => {
  for (const k of AWS_ENV) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  await aws.close();
});

async function configError(p: Promise<unknown>): Promise<ConfigError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

describe('loadSecrets through @aws-sdk/client-ssm', () => {
  it('replaces each <NAME>_SSM_PARAMETER by <NAME> with the decrypted value, in one GetParameters call', async () => {
    const env = {
      UPSTASH_REDIS_REST_URL_SSM_PARAMETER: '/t/upstash-url',
      UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER: ' /t/upstash-token ',
      GITHUB_WEBHOOK_SECRET_SSM_PARAMETER: '/t/github',
      STRIPE_WEBHOOK_SECRET: 'plain-value',
      STRIPE_WEBHOOK_SECRET_SSM_PARAMETER: '', // empty: unset
      OTHER: 'kept',
    };
    const before = aws.requests.length;
    const out = await loadSecrets(env);
    expect(out).toEqual({
      UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:1',
      UPSTASH_REDIS_REST_TOKEN: TOKEN,
      GITHUB_WEBHOOK_SECRET: GITHUB,
      STRIPE_WEBHOOK_SECRET: 'plain-value',
      STRIPE_WEBHOOK_SECRET_SSM_PARAMETER: '',
      OTHER: 'kept',
    });
    expect(env.UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER).toBe(' /t/upstash-token '); // the input is not changed
    expect(aws.requests.slice(before)).toEqual([
      'ssm:GetParameters:/t/upstash-url,/t/upstash-token,/t/github',
    ]);

    // Once per container: the same names again are answered from the cache.
    await loadSecrets({
      UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER: '/t/upstash-token',
      X_SSM_PARAMETER: '/t/plain',
    });
    expect(aws.requests.slice(before)).toEqual([
      'ssm:GetParameters:/t/upstash-url,/t/upstash-token,/t/github',
      'ssm:GetParameters:/t/plain',
    ]);
  });

  it('fromEnvAsync builds the store from the values; fromEnv says it cannot read SSM', async () => {
    const env = {
      UPSTASH_REDIS_REST_URL_SSM_PARAMETER: '/t/upstash-url',
      UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER: '/t/upstash-token',
    };
    const store = await fromEnvAsync(env);
    expect(store.kind).toBe('upstash');
    await store.close();
    expect(() => fromEnv(env)).toThrow(
      /UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER names an SSM parameter, which fromEnv\(\) cannot read: use await fromEnvAsync\(\)/,
    );
  });

  it('a missing parameter is one ConfigError naming it and its variable, never a value', async () => {
    const err = await configError(
      loadSecrets({
        UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER: '/t/upstash-token',
        GITHUB_WEBHOOK_SECRET_SSM_PARAMETER: '/t/github',
        STRIPE_WEBHOOK_SECRET_SSM_PARAMETER: '/t/nope',
        STANDARD_WEBHOOK_SECRET_SSM_PARAMETER: '/t/also-nope',
      }),
    );
    expect(err.problems).toEqual([
      'SSM parameter /t/nope (named by STRIPE_WEBHOOK_SECRET_SSM_PARAMETER) does not exist or is not readable here',
      'SSM parameter /t/also-nope (named by STANDARD_WEBHOOK_SECRET_SSM_PARAMETER) does not exist or is not readable here',
    ]);
    expect(err.message).not.toContain(TOKEN);
    expect(err.message).not.toContain(GITHUB);
  });

  it('a denied read is one ConfigError naming the parameters and what to grant, with the AWS error as cause', async () => {
    const err = await configError(
      loadSecrets({
        UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER: '/t/denied',
        ONCELY_REDIS_URL_SSM_PARAMETER: '/t/denied-too',
      }),
    );
    expect(err.problems).toEqual([
      'reading SSM parameter(s) /t/denied, /t/denied-too denied (AccessDeniedException): grant ssm:GetParameters on them, and kms:Decrypt on their key',
    ]);
    expect((err.cause as Error).name).toBe('AccessDeniedException');
  });

  it('<NAME> and <NAME>_SSM_PARAMETER both set, or a parameter name with spaces, is a ConfigError before any read', async () => {
    const before = aws.requests.length;
    const err = await configError(
      loadSecrets({
        UPSTASH_REDIS_REST_TOKEN: TOKEN,
        UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER: '/t/upstash-token',
        ONCELY_REDIS_PASSWORD_SSM_PARAMETER: '/t/a b',
      }),
    );
    expect(err.problems).toEqual([
      'set UPSTASH_REDIS_REST_TOKEN or UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER, not both',
      'ONCELY_REDIS_PASSWORD_SSM_PARAMETER must be an SSM parameter name, got "/t/a b"',
    ]);
    expect(err.message).not.toContain(TOKEN);
    expect(aws.requests.length).toBe(before);
  });

  it('with no <NAME>_SSM_PARAMETER it reads nothing and returns a copy of the environment', async () => {
    const before = aws.requests.length;
    const env = { UPSTASH_REDIS_REST_TOKEN: TOKEN };
    const out = await loadSecrets(env);
    expect(out).toEqual(env);
    expect(out).not.toBe(env);
    expect(aws.requests.length).toBe(before);
  });
});

describe('loadSecrets with a reader of your own', () => {
  it('reads ten names per call, each name once, and caches only what it read', async () => {
    const calls: string[][] = [];
    const read: ParameterReader = async (names) => {
      calls.push([...names]);
      return Object.fromEntries(names.filter((n) => n !== '/p/missing').map((n) => [n, `value of ${n}`]));
    };
    const env = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`V${i}_SSM_PARAMETER`, `/p/${i}`]));
    env.SAME_SSM_PARAMETER = '/p/0'; // two variables, one parameter: read once
    const out = await loadSecrets(env, { read });
    expect(calls.map((c) => c.length)).toEqual([10, 2]);
    expect(out.V11).toBe('value of /p/11');
    expect(out.SAME).toBe('value of /p/0');

    await loadSecrets({ A_SSM_PARAMETER: '/p/3', B_SSM_PARAMETER: '/p/new' }, { read });
    expect(calls.slice(2)).toEqual([['/p/new']]);

    await configError(loadSecrets({ A_SSM_PARAMETER: '/p/missing' }, { read }));
    await configError(loadSecrets({ A_SSM_PARAMETER: '/p/missing' }, { read })); // a miss is asked again
    expect(calls.slice(3)).toEqual([['/p/missing'], ['/p/missing']]);
  });

  it('a failed read names the parameters and the error, not its message', async () => {
    const read: ParameterReader = async () => {
      const e = new Error(`connect ECONNREFUSED, token=${TOKEN}`);
      e.name = 'TimeoutError';
      throw e;
    };
    const err = await configError(loadSecrets({ A_SSM_PARAMETER: '/p/x' }, { read }));
    expect(err.problems).toEqual(['reading SSM parameter(s) /p/x failed (TimeoutError)']);
    expect(err.message).not.toContain(TOKEN);
  });
});
