// `npm run build` + `serverless package --stage prod`, offline: the layer zip and one zip per function, checked
// entry by entry. serverless package of a service with layers asks CloudFormation whether the stack exists
// (DescribeStacks) and SSM for the stage's parameters; one tiny local endpoint answers both. It runs in a
// scratch copy of the service, because serverless writes .serverless/ and .esbuild/ next to serverless.yml.
//
// Then the built layer itself runs against a real redis-server: REST with the ioredis chunk deleted (the REST
// path never loads ioredis), TCP with it.
import { execFile } from 'node:child_process';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { inflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway } from '../../dev/gateway.js';
import { startRedis } from '../../dev/redis-server.js';
import { LOCK_SCRIPTS, ONCE_SCRIPTS } from '../../layers/oncely/src/index.js';
import { buildFunctions, buildLayer, functionNames, layerPackagePath } from '../../scripts/build.js';

/** Size budgets of the deployment artifacts (zip bytes). */
const BUDGET = {
  /** The whole layer: oncely, @upstash/redis and ioredis, minified, with source maps. */
  layerZipBytes: 320 * 1024,
  /**
   * What a cold start parses on the REST path: the layer's entry and the @upstash/redis chunk, unzipped. The
   * ioredis chunk (~200 KiB) alone would break it.
   */
  restPathBytes: 200 * 1024,
  /** One function: its own code only. */
  functionZipBytes: 16 * 1024,
};

/** Strings only the layer's code contains: the first line of each of its Lua scripts, and ioredis. */
const LAYER_MARKERS = [
  ...[...LOCK_SCRIPTS, ...ONCE_SCRIPTS].map((s) => s.lua.split('\n')[0]!),
  'ClusterAllFailedError', // ioredis
];

const root = fileURLToPath(new URL('../..', import.meta.url));

interface ZipEntry {
  name: string;
  data: Buffer;
}

/** Reads every entry of a zip file (stored or deflated), from its central directory. */
function readZip(file: string): ZipEntry[] {
  const zip = readFileSync(file);
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error(`${file}: not a zip`);
  const count = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    const method = zip.readUInt16LE(p + 10);
    const compressed = zip.readUInt32LE(p + 20);
    const nameLength = zip.readUInt16LE(p + 28);
    const extraLength = zip.readUInt16LE(p + 30);
    const commentLength = zip.readUInt16LE(p + 32);
    const local = zip.readUInt32LE(p + 42);
    const name = zip.toString('utf8', p + 46, p + 46 + nameLength);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const raw = zip.subarray(start, start + compressed);
    entries.push({ name, data: method === 8 ? inflateRawSync(raw) : raw });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** SSM GetParameter -> `ssm:<name>`; CloudFormation DescribeStacks -> "Stack with id ... does not exist". */
function startFakeAws(requests: string[]): Promise<Server> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      if (target.endsWith('.GetParameter')) {
        const { Name } = JSON.parse(body) as { Name: string };
        requests.push(`ssm:${Name}`);
        res.setHeader('content-type', 'application/x-amz-json-1.1');
        res.end(JSON.stringify({ Parameter: { Name, Type: 'SecureString', Value: `ssm:${Name}` } }));
        return;
      }
      const params = new URLSearchParams(body);
      requests.push(`cloudformation:${params.get('Action')}`);
      res.statusCode = 400;
      res.setHeader('content-type', 'text/xml');
      res.end(
        `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id ${params.get('StackName')} does not exist</Message></Error><RequestId>fake</RequestId></ErrorResponse>`,
      );
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const names = functionNames();
const scratch = mkdtempSync(join(tmpdir(), 'oncely-package-'));
const awsRequests: string[] = [];
let fakeAws: Server | undefined;
let zips: Record<string, ZipEntry[]> = {};
let zipBytes: Record<string, number> = {};
let builtFunctions: Record<string, string> = {};

beforeAll(async () => {
  for (const path of ['serverless.yml', 'package.json', 'tsconfig.json', 'functions', 'layers']) {
    cpSync(join(root, path), join(scratch, path), { recursive: true });
  }
  symlinkSync(join(root, 'node_modules'), join(scratch, 'node_modules'), 'dir');
  await buildLayer(join(scratch, 'dist/layer'));
  const functionFiles = await buildFunctions(join(scratch, 'dist/functions'));
  builtFunctions = Object.fromEntries(
    functionFiles
      .filter((f) => f.path.endsWith('.mjs'))
      .map((f) => [f.path.split('/')[0]!, readFileSync(join(scratch, 'dist/functions', f.path), 'utf8')]),
  );

  fakeAws = await startFakeAws(awsRequests);
  const endpoint = `http://127.0.0.1:${(fakeAws.address() as AddressInfo).port}`;
  await promisify(execFile)(
    process.execPath,
    [join(root, 'node_modules/serverless/bin/serverless.js'), 'package', '--stage', 'prod'],
    {
      cwd: scratch,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: scratch,
        AWS_ACCESS_KEY_ID: 'x',
        AWS_SECRET_ACCESS_KEY: 'x',
        AWS_REGION: 'us-east-1',
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_ENDPOINT_URL_SSM: endpoint,
        AWS_ENDPOINT_URL_CLOUDFORMATION: endpoint,
      },
      timeout: 120_000,
    },
  );
  const out = join(scratch, '.serverless');
  for (const file of readdirSync(out).filter((f) => f.endsWith('.zip'))) {
    zips[file] = readZip(join(out, file));
    zipBytes[file] = readFileSync(join(out, file)).length;
  }
}, 180_000);

afterAll(() => {
  fakeAws?.close();
  rmSync(scratch, { recursive: true, force: true });
  zips = {};
  zipBytes = {};
});

describe('serverless package --stage prod', () => {
  it('asked CloudFormation whether the stack exists, and SSM for the stage parameters', () => {
    expect(awsRequests).toContain('cloudformation:DescribeStacks');
    expect(awsRequests).toContain('ssm:/oncely/prod/upstash-url');
  });

  it('produces the layer zip and one zip per function, nothing else', () => {
    expect(Object.keys(zips).sort()).toEqual(['oncely.zip', ...names.map((n) => `${n}.zip`)].sort());
  });

  it('the layer unpacks to /opt/nodejs/node_modules/oncely: minified ESM, source maps, no sources', () => {
    const layer = zips['oncely.zip']!;
    for (const entry of layer) expect(entry.name.startsWith(`${layerPackagePath}/`)).toBe(true);
    const manifest = JSON.parse(
      layer.find((e) => e.name === `${layerPackagePath}/package.json`)!.data.toString(),
    ) as { name: string; type: string; exports: Record<string, string> };
    expect(manifest).toMatchObject({ name: 'oncely', type: 'module', exports: { '.': './index.mjs' } });
    const index = layer.find((e) => e.name === `${layerPackagePath}/index.mjs`)!.data.toString();
    expect(index).toContain('//# sourceMappingURL=index.mjs.map');
    // Minified: no comments left, and whole modules on one line (Lua in template literals keeps its newlines).
    expect(index).not.toMatch(/\/\*\*|^\s*\/\/(?!# sourceMappingURL)/m);
    expect(Math.max(...index.split('\n').map((line) => line.length))).toBeGreaterThan(10_000);
    for (const entry of layer.filter((e) => e.name.endsWith('.mjs'))) {
      expect(layer.some((e) => e.name === `${entry.name}.map`)).toBe(true);
    }
    for (const entry of layer.filter((e) => e.name.endsWith('.map'))) {
      expect(JSON.parse(entry.data.toString()).sourcesContent).toBeUndefined();
    }
    // The Lua scripts are in the layer: the same markers that must never appear in a function.
    const all = layer.map((e) => e.data.toString()).join('\n');
    for (const marker of LAYER_MARKERS) expect(all.includes(marker), `layer lacks ${marker}`).toBe(true);
  });

  it('the function zips hold only their own bundle, with oncely left to the layer', () => {
    for (const name of names) {
      const entries = zips[`${name}.zip`]!;
      expect(entries.map((e) => e.name).sort()).toEqual([
        `functions/${name}/handler.mjs`,
        `functions/${name}/handler.mjs.map`,
      ]);
      const code = entries.find((e) => e.name.endsWith('.mjs'))!.data.toString();
      for (const marker of LAYER_MARKERS)
        expect(code, `${name} bundles layer code (${marker})`).not.toContain(marker);
      // The AWS SDK comes with the Lambda runtime: imported, never bundled.
      if (name === 'dispatch') expect(code).toMatch(/from\s*"@aws-sdk\/client-lambda"/);
    }
  });

  it('npm run build bundles each function the same way: no layer code, oncely imported from the layer', () => {
    expect(Object.keys(builtFunctions).sort()).toEqual(names);
    for (const [name, code] of Object.entries(builtFunctions)) {
      for (const marker of LAYER_MARKERS)
        expect(code, `${name} bundles layer code (${marker})`).not.toContain(marker);
      if (
        /layers\/oncely\/src|from 'oncely'/.test(
          readFileSync(join(root, 'functions', name, 'handler.ts'), 'utf8'),
        )
      ) {
        expect(code).toMatch(/from\s*"oncely"/);
      }
    }
  });

  it(`stays within the size budgets (layer ${BUDGET.layerZipBytes / 1024} KiB, function ${BUDGET.functionZipBytes / 1024} KiB, REST path ${BUDGET.restPathBytes / 1024} KiB)`, () => {
    expect(zipBytes['oncely.zip']).toBeLessThanOrEqual(BUDGET.layerZipBytes);
    for (const name of names) expect(zipBytes[`${name}.zip`]).toBeLessThanOrEqual(BUDGET.functionZipBytes);
    const layer = zips['oncely.zip']!;
    const restPath = layer.filter((e) => /\/(index|chunks\/(upstash|chunk)-[^/]*)\.mjs$/.test(e.name));
    const restBytes = restPath.reduce((sum, e) => sum + e.data.length, 0);
    expect(restBytes).toBeLessThanOrEqual(BUDGET.restPathBytes);
  });
});

describe('the built layer', () => {
  it('runs a lock over REST without the ioredis chunk, and over TCP with it', async () => {
    const dir = join(scratch, 'dist/layer', layerPackagePath);
    const chunks = readdirSync(join(dir, 'chunks'));
    const ioredisChunk = chunks.find((f) => /^ioredis-.*\.mjs$/.test(f))!;
    expect(ioredisChunk).toBeDefined();
    const copy = join(scratch, 'rest-only');
    mkdirSync(copy);
    cpSync(dir, copy, { recursive: true });
    unlinkSync(join(copy, 'chunks', ioredisChunk));

    const redis = await startRedis();
    const gateway = await startGateway({
      redis: { host: redis.host, port: redis.port },
      token: 'package-test',
    });
    try {
      const restOnly = (await import(pathToFileURL(join(copy, 'index.mjs')).href)) as typeof import('oncely');
      const rest = restOnly.fromEnv({
        UPSTASH_REDIS_REST_URL: gateway.url,
        UPSTASH_REDIS_REST_TOKEN: 'package-test',
      });
      const lease = await restOnly.createLock(rest).tryAcquire('built-layer', { ttlMs: 5_000 });
      expect(lease?.fence).toBe(1);
      // The same copy cannot do TCP: the chunk it would load is gone. So REST above never needed it.
      const tcpOnCopy = restOnly.fromEnv({ ONCELY_REDIS_URL: redis.url });
      await expect(
        restOnly.createLock(tcpOnCopy).tryAcquire('built-layer-2', { ttlMs: 5_000 }),
      ).rejects.toThrow(/ioredis-/);

      const full = (await import(pathToFileURL(join(dir, 'index.mjs')).href)) as typeof import('oncely');
      const tcp = full.fromEnv({ ONCELY_REDIS_URL: redis.url });
      expect(await full.createLock(tcp).tryAcquire('built-layer', { ttlMs: 5_000 })).toBeNull(); // held over REST
      expect(await lease!.release()).toBe('released');
      expect((await full.createLock(tcp).tryAcquire('built-layer', { ttlMs: 5_000 }))?.fence).toBe(2);
      await tcp.close();
    } finally {
      await gateway.close();
      await redis.stop();
    }
  });
});
