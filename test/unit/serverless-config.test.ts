// serverless.yml as osls resolves it, per stage: `serverless print --format json` in a child process, with
// fake AWS credentials and SSM pointed at the local stand-in (test/support/fake-aws.ts), so it runs offline
// and shows which parameters a stage reads at deploy time. Every parameter reads back as `ssm:<name>` (a
// StringList `<name>#1,<name>#2` for names ending in `-ids`).
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_WEBHOOK_SECRETS } from '../../dev/start.js';
import {
  DEPLOYED,
  functionNames,
  LAMBDA_RUNTIME,
  layerDir,
  NODE_MAJOR,
  PACKAGE_NODE_MAJOR,
  TARGET,
} from '../../scripts/build.js';
import { type FakeAws, type FakeParameter, fakeAwsEnv, startFakeAws } from '../support/fake-aws.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const serverlessBin = join(root, 'node_modules/serverless/bin/serverless.js');

interface PrintedConfig {
  provider: {
    runtime: string;
    stage: string;
    environment: Record<string, string>;
    layers: unknown[];
    vpc?: { subnetIds: string[]; securityGroupIds: string[] } | null;
  };
  package: { individually: boolean };
  layers: Record<string, { path: string; description?: string; compatibleRuntimes: string[] }>;
  functions: Record<
    string,
    {
      handler: string;
      environment?: Record<string, string>;
      events?: { schedule?: { enabled: boolean; rate: string[]; name: string } }[];
    }
  >;
  plugins: string[];
  custom: {
    esbuild: {
      target: string;
      minify: boolean;
      format: string;
      outputFileExtension: string;
      external: string[];
      exclude: string[];
      alias: Record<string, string>;
      outputWorkFolder: string;
    };
    'serverless-offline': { httpPort: number | string; lambdaPort: number | string; useInProcess: boolean };
  };
}

/** Any parameter reads back as `ssm:<name>`, a StringList `<name>#1,<name>#2` for names ending in `-ids`. */
function parameter(name: string): FakeParameter {
  return name.endsWith('-ids')
    ? { type: 'StringList', value: `${name}#1,${name}#2` }
    : { type: 'SecureString', value: `ssm:${name}` };
}

async function print(stage: string, aws: FakeAws, env: Record<string, string> = {}): Promise<PrintedConfig> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [serverlessBin, 'print', '--stage', stage, '--format', 'json'],
    {
      cwd: root,
      // Only what osls needs: no real credentials, profiles or UPSTASH_* from the developer's shell.
      env: { ...fakeAwsEnv(aws.url, process.env.HOME ?? root), ...env },
      // osls takes seconds to start, and many more on a busy machine: a bound for a hang, not a speed test.
      timeout: 240_000,
    },
  );
  return JSON.parse(stdout) as PrintedConfig;
}

const stands: Partial<Record<'local' | 'prod' | 'vpc', FakeAws>> = {};
/** The names of the SSM parameters a stage read (deploy time). */
const ssmRequests = (stage: 'local' | 'prod' | 'vpc') =>
  stands[stage]!.requests.filter((r) => r.startsWith('ssm:GetParameter:')).map((r) => r.slice(17));
let local: PrintedConfig;
let prod: PrintedConfig;
let vpc: PrintedConfig;
/** local with nothing set in the environment. */
let localDefaults: PrintedConfig;

beforeAll(async () => {
  for (const stage of ['local', 'prod', 'vpc'] as const)
    stands[stage] = await startFakeAws({ parameters: parameter });
  // Sequential pairs: four osls processes at once are too many for two cores.
  [local, localDefaults] = await Promise.all([
    print('local', stands.local!, {
      UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:8079',
      UPSTASH_REDIS_REST_TOKEN: 'local-token',
      ONCELY_HTTP_PORT: '4123',
      ONCELY_LAMBDA_PORT: '4124',
      ONCELY_ESBUILD_DIR: '.esbuild/test-4123',
    }),
    print('local', stands.local!),
  ]);
  [prod, vpc] = await Promise.all([print('prod', stands.prod!), print('vpc', stands.vpc!)]);
}, 600_000);

afterAll(async () => {
  await Promise.all(Object.values(stands).map((aws) => aws.close()));
});

describe('the Node version', () => {
  it('.ci/run tests on the Node major the functions deploy on', () => {
    const ci = readFileSync(join(root, '.ci/run'), 'utf8');
    const version = /^NODE24_VERSION=(\d+)\.\d+\.\d+$/m.exec(ci)?.[1];
    expect(version).toBe(String(NODE_MAJOR));
  });

  it("the package's lowest Node is its engines field; the repo's agrees and tests on it first", () => {
    expect(Number.isInteger(PACKAGE_NODE_MAJOR)).toBe(true);
    expect(PACKAGE_NODE_MAJOR).toBeLessThanOrEqual(NODE_MAJOR);
    const engines = (file: string) =>
      (JSON.parse(readFileSync(join(root, file), 'utf8')) as { engines: { node: string } }).engines.node;
    expect(engines('package.json')).toBe(engines('layers/oncely/package.json'));
    // The first run is named after, and checked to be on (test/unit/ci.test.ts), the package's lowest Node.
    expect(readFileSync(join(root, '.ci/run'), 'utf8')).toContain(
      `run_tests node${PACKAGE_NODE_MAJOR} ${PACKAGE_NODE_MAJOR}\n`,
    );
  });

  it('the bench measures the layer that ships and bundles for the Node the functions deploy on', () => {
    expect(DEPLOYED.target).toBe(TARGET);
    const bench = readFileSync(join(root, 'bench/bundles.ts'), 'utf8');
    // the layer from buildLayer, the "before" package built as the layer is, contenders as deployed
    for (const used of ['buildLayer(', 'layerBuildOptions(', '...DEPLOYED']) expect(bench).toContain(used);
    expect(bench).not.toMatch(/target: '|minify: true|splitting: true/);
  });
});

describe('serverless.yml', () => {
  it('runs on the Node of scripts/build.ts (nodejs24.x) and builds for the same Node', () => {
    for (const config of [local, prod, vpc]) {
      expect(config.provider.runtime).toBe(LAMBDA_RUNTIME);
      expect(config.custom.esbuild.target).toBe(TARGET);
      expect(config.custom.esbuild.format).toBe('esm');
      expect(config.custom.esbuild.outputFileExtension).toBe('.mjs');
      expect(config.plugins).toEqual([
        './scripts/serverless-require-build.cjs',
        'serverless-esbuild',
        'serverless-offline',
      ]);
      expect(config.provider.environment.NODE_OPTIONS).toBe('--enable-source-maps');
    }
  });

  it('declares the oncely layer where `npm run build` writes it, for the same runtime, on every function', () => {
    expect(prod.layers.oncely).toMatchObject({ path: 'dist/layer', compatibleRuntimes: [LAMBDA_RUNTIME] });
    expect(join(root, prod.layers.oncely!.path)).toBe(layerDir);
    expect(prod.layers.oncely?.description).toBeTruthy();
    expect(prod.provider.layers).toEqual([{ Ref: 'OncelyLambdaLayer' }]);
    expect(prod.package.individually).toBe(true);
  });

  it('declares a function for every functions/<name>/handler.ts, each with a sample event.json', () => {
    const declared = Object.entries(prod.functions).map(([name, fn]) => [name, fn.handler]);
    expect(declared.sort()).toEqual(
      functionNames().map((name) => [name, `functions/${name}/handler.handler`]),
    );
    expect(functionNames()).toEqual(['dispatch', 'queue', 'tick', 'webhook', 'worker']);
    for (const name of functionNames()) {
      expect(() =>
        JSON.parse(readFileSync(join(root, 'functions', name, 'event.json'), 'utf8')),
      ).not.toThrow();
    }
  });

  it('the schedule runs on AWS; locally tick is invoked by hand (offline schedule events name no rule)', () => {
    const schedule = (config: PrintedConfig) => config.functions.tick?.events?.[0]?.schedule;
    expect(schedule(prod)).toEqual({ enabled: true, rate: ['rate(1 minute)'], name: 'oncely-prod-tick' });
    expect(schedule(local)?.enabled).toBe(false);
  });

  it('webhook secrets: the documented local defaults, names of SSM parameters on other stages', () => {
    expect(localDefaults.functions.webhook?.environment).toEqual({
      GITHUB_WEBHOOK_SECRET: LOCAL_WEBHOOK_SECRETS.github,
      GITHUB_WEBHOOK_SECRET_SSM_PARAMETER: '',
      STRIPE_WEBHOOK_SECRET: LOCAL_WEBHOOK_SECRETS.stripe,
      STRIPE_WEBHOOK_SECRET_SSM_PARAMETER: '',
      STANDARD_WEBHOOK_SECRET: LOCAL_WEBHOOK_SECRETS.standard,
      STANDARD_WEBHOOK_SECRET_SSM_PARAMETER: '',
    });
    // Read at cold start by the function (loadSecrets), never resolved into the template.
    expect(prod.functions.webhook?.environment).toEqual({
      GITHUB_WEBHOOK_SECRET: '',
      GITHUB_WEBHOOK_SECRET_SSM_PARAMETER: '/oncely/prod/github-webhook-secret',
      STRIPE_WEBHOOK_SECRET: '',
      STRIPE_WEBHOOK_SECRET_SSM_PARAMETER: '/oncely/prod/stripe-webhook-secret',
      STANDARD_WEBHOOK_SECRET: '',
      STANDARD_WEBHOOK_SECRET_SSM_PARAMETER: '/oncely/prod/standard-webhook-secret',
    });
  });

  it('defaults to the local stage', () => {
    expect(local.provider.stage).toBe('local');
  });

  it('local bundles the layer source in through an alias (serverless-offline ignores layers)', () => {
    const { esbuild } = local.custom;
    expect(esbuild.external).toEqual([]);
    expect(esbuild.exclude).not.toContain('oncely');
    expect(esbuild.alias).toEqual({ oncely: './layers/oncely/src/index.ts' });
    expect(existsSync(join(root, 'layers/oncely/src/index.ts'))).toBe(true);
    expect(esbuild.minify).toBe(false);
  });

  it('other stages resolve oncely from the layer, not the function package', () => {
    for (const { esbuild } of [prod.custom, vpc.custom]) {
      expect(esbuild.external).toEqual(['oncely']);
      // serverless-esbuild npm-installs every external that is not also excluded into the function zip.
      expect([...esbuild.exclude].sort()).toEqual(['@aws-sdk/*', 'oncely']);
      expect(esbuild.alias ?? {}).toEqual({});
      expect(esbuild.minify).toBe(true);
    }
  });

  it('local takes the Upstash settings from the environment and never asks SSM', () => {
    expect(local.provider.environment).toMatchObject({
      UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:8079',
      UPSTASH_REDIS_REST_TOKEN: 'local-token',
      ONCELY_REDIS_CLUSTER_NODES: '',
    });
    expect(local.provider.vpc ?? null).toBeNull();
    expect(ssmRequests('local')).toEqual([]);
  });

  it('other stages name the Upstash SSM parameters under the stage name, outside any VPC, and resolve none', () => {
    expect(prod.provider.environment).toMatchObject({
      UPSTASH_REDIS_REST_URL: '',
      UPSTASH_REDIS_REST_URL_SSM_PARAMETER: '/oncely/prod/upstash-url',
      UPSTASH_REDIS_REST_TOKEN: '',
      UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER: '/oncely/prod/upstash-token',
      ONCELY_REDIS_CLUSTER_NODES: '',
      ONCELY_REDIS_TLS: '',
      ONCELY_REDIS_USERNAME: '',
      ONCELY_REDIS_PASSWORD: '',
      ONCELY_REDIS_PASSWORD_SSM_PARAMETER: '',
    });
    expect(prod.provider.vpc ?? null).toBeNull();
    expect(ssmRequests('prod')).toEqual([]);
  });

  it('the vpc stage runs in the VPC on Redis Cluster over TLS: settings from SSM at deploy time, the AUTH token at run time', () => {
    expect(vpc.provider.vpc).toEqual({
      subnetIds: ['/oncely/vpc/subnet-ids#1', '/oncely/vpc/subnet-ids#2'],
      securityGroupIds: ['/oncely/vpc/security-group-ids#1', '/oncely/vpc/security-group-ids#2'],
    });
    expect(vpc.provider.environment).toMatchObject({
      UPSTASH_REDIS_REST_URL: '',
      UPSTASH_REDIS_REST_URL_SSM_PARAMETER: '',
      UPSTASH_REDIS_REST_TOKEN: '',
      UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER: '',
      ONCELY_REDIS_CLUSTER_NODES: 'ssm:/oncely/vpc/redis-cluster-nodes',
      ONCELY_REDIS_TLS: 'true',
      ONCELY_REDIS_USERNAME: 'ssm:/oncely/vpc/redis-username',
      ONCELY_REDIS_PASSWORD: '',
      ONCELY_REDIS_PASSWORD_SSM_PARAMETER: '/oncely/vpc/redis-auth-token',
    });
    expect([...new Set(ssmRequests('vpc'))].sort()).toEqual([
      '/oncely/vpc/redis-cluster-nodes',
      '/oncely/vpc/redis-username',
      '/oncely/vpc/security-group-ids',
      '/oncely/vpc/subnet-ids',
    ]);
  });

  it('serverless-offline: ports from ONCELY_HTTP_PORT / ONCELY_LAMBDA_PORT, in-process, its own build folder', () => {
    expect(Number(local.custom['serverless-offline'].httpPort)).toBe(4123);
    expect(Number(local.custom['serverless-offline'].lambdaPort)).toBe(4124);
    expect(local.custom['serverless-offline'].useInProcess).toBe(true);
    expect(local.custom.esbuild.outputWorkFolder).toBe('.esbuild/test-4123');
    expect(Number(prod.custom['serverless-offline'].httpPort)).toBe(3000);
    expect(Number(prod.custom['serverless-offline'].lambdaPort)).toBe(3002);
    expect(prod.custom.esbuild.outputWorkFolder).toBe('.esbuild');
  });
});
