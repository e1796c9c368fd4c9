// serverless.yml as osls resolves it, per stage: `serverless print --format json` in a child process, with
// fake AWS credentials and SSM pointed at a local fake, so it runs offline and shows which parameters a
// stage reads.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const serverlessBin = join(root, 'node_modules/serverless/bin/serverless.js');
const layerModules = ['oncely', '@upstash/redis', 'ioredis'];

interface PrintedConfig {
  provider: { runtime: string; stage: string; environment: Record<string, string> };
  layers: Record<string, { path: string; description?: string; compatibleRuntimes: string[] }>;
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
    };
    'serverless-offline': { httpPort: number | string; lambdaPort: number | string };
  };
}

/** A fake SSM endpoint: answers GetParameter with `ssm:<name>` and records every name asked for. */
function startFakeSsm(requested: string[]): Promise<Server> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      const { Name } = JSON.parse(body) as { Name: string };
      requested.push(Name);
      res.setHeader('content-type', 'application/x-amz-json-1.1');
      res.end(JSON.stringify({ Parameter: { Name, Type: 'SecureString', Value: `ssm:${Name}` } }));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function print(stage: string, env: Record<string, string>): Promise<PrintedConfig> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [serverlessBin, 'print', '--stage', stage, '--format', 'json'],
    {
      cwd: root,
      // Only what osls needs: no real credentials, profiles or UPSTASH_* from the developer's shell.
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? root,
        AWS_ACCESS_KEY_ID: 'x',
        AWS_SECRET_ACCESS_KEY: 'x',
        AWS_REGION: 'us-east-1',
        AWS_EC2_METADATA_DISABLED: 'true',
        ...env,
      },
      timeout: 60_000,
    },
  );
  return JSON.parse(stdout) as PrintedConfig;
}

const servers: Server[] = [];
const ssmRequests = { local: [] as string[], prod: [] as string[] };
let local: PrintedConfig;
let prod: PrintedConfig;

beforeAll(async () => {
  const [localSsm, prodSsm] = await Promise.all([
    startFakeSsm(ssmRequests.local),
    startFakeSsm(ssmRequests.prod),
  ]);
  servers.push(localSsm, prodSsm);
  const endpoint = (server: Server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  [local, prod] = await Promise.all([
    print('local', {
      AWS_ENDPOINT_URL_SSM: endpoint(localSsm),
      UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:8079',
      UPSTASH_REDIS_REST_TOKEN: 'local-token',
      ONCELY_HTTP_PORT: '4123',
      ONCELY_LAMBDA_PORT: '4124',
    }),
    print('prod', { AWS_ENDPOINT_URL_SSM: endpoint(prodSsm) }),
  ]);
}, 90_000);

afterAll(() => {
  for (const server of servers) server.close();
});

describe('serverless.yml', () => {
  it('runs on nodejs24.x and builds for the same Node', () => {
    for (const config of [local, prod]) {
      expect(config.provider.runtime).toBe('nodejs24.x');
      expect(config.custom.esbuild.target).toBe('node24');
      expect(config.custom.esbuild.format).toBe('esm');
      expect(config.custom.esbuild.outputFileExtension).toBe('.mjs');
      expect(config.plugins).toEqual(['serverless-esbuild', 'serverless-offline']);
      expect(config.provider.environment.NODE_OPTIONS).toBe('--enable-source-maps');
    }
  });

  it('declares the oncely layer for the same runtime', () => {
    expect(prod.layers.oncely).toMatchObject({ path: 'layers/oncely', compatibleRuntimes: ['nodejs24.x'] });
    expect(prod.layers.oncely?.description).toBeTruthy();
    expect(existsSync(join(root, 'layers/oncely/package.json'))).toBe(true);
  });

  it('defaults to the local stage', () => {
    expect(local.provider.stage).toBe('local');
  });

  it('local bundles the layer source in through an alias (serverless-offline ignores layers)', () => {
    const { esbuild } = local.custom;
    expect(esbuild.external).toEqual([]);
    for (const name of layerModules) expect(esbuild.exclude).not.toContain(name);
    expect(esbuild.alias).toEqual({ oncely: './layers/oncely/src/index.ts' });
    expect(existsSync(join(root, 'layers/oncely/src/index.ts'))).toBe(true);
    expect(esbuild.minify).toBe(false);
  });

  it('other stages resolve oncely and its clients from the layer, not the function package', () => {
    const { esbuild } = prod.custom;
    expect([...esbuild.external].sort()).toEqual([...layerModules].sort());
    // serverless-esbuild npm-installs every external that is not also excluded into the function zip.
    for (const name of layerModules) expect(esbuild.exclude).toContain(name);
    expect(esbuild.alias ?? {}).toEqual({});
  });

  it('local takes the Upstash settings from the environment and never asks SSM', () => {
    expect(local.provider.environment).toMatchObject({
      UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:8079',
      UPSTASH_REDIS_REST_TOKEN: 'local-token',
    });
    expect(ssmRequests.local).toEqual([]);
  });

  it('other stages read the Upstash settings from SSM under the stage name', () => {
    expect(prod.provider.environment).toMatchObject({
      UPSTASH_REDIS_REST_URL: 'ssm:/oncely/prod/upstash-url',
      UPSTASH_REDIS_REST_TOKEN: 'ssm:/oncely/prod/upstash-token',
    });
    expect([...ssmRequests.prod].sort()).toEqual(['/oncely/prod/upstash-token', '/oncely/prod/upstash-url']);
  });

  it('serverless-offline ports come from ONCELY_HTTP_PORT / ONCELY_LAMBDA_PORT', () => {
    expect(Number(local.custom['serverless-offline'].httpPort)).toBe(4123);
    expect(Number(local.custom['serverless-offline'].lambdaPort)).toBe(4124);
    expect(Number(prod.custom['serverless-offline'].httpPort)).toBe(3000);
    expect(Number(prod.custom['serverless-offline'].lambdaPort)).toBe(3002);
  });
});
