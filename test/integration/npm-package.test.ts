// The npm package as a user gets it: `npm pack` (as `npm run pack` writes it; `npm publish --dry-run` accepts it),
// the tarball installed into a scratch project in a temporary folder outside the repo, with the newest versions
// of the peers in their ranges (ioredis, @middy/core: as `npm install` gives a user today; the repo's own install
// is the pinned ones; the rest from the npm cache: --prefer-offline),
// type-checked there with strict tsc (skipLibCheck off, so every .d.ts the package ships is checked too), compiled,
// and run against a real redis-server: withOnce, the middy adapter and createLock (from `oncely/locks`) over
// `oncely/ioredis`.
// Nothing in the scratch project may resolve into the repo: no symlink, no module, no type file.
//
// Then every documented way of bundling it (esbuild, ESM and CJS, ioredis bundled and external), each bundle run
// over REST and TCP, its errors' stacks mapped to files the package ships; and a REST-only app: the same package without ioredis (or middy) installed type-checks strictly, bundles with esbuild (as serverless-esbuild,
// SAM and CDK's NodejsFunction do) with no ioredis in the bundle, and runs against the REST gateway.
import { execFile } from 'node:child_process';
import {
  cpSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway } from '../../dev/gateway.js';
import { type RedisProcess, startRedis } from '../../dev/redis-server.js';
import { type PackedPackage, packPackage, REQUIRE_BANNER, root } from '../../scripts/build.js';

const run = promisify(execFile);
const repo = realpathSync(root);
const scratch = realpathSync(mkdtempSync(join(tmpdir(), 'oncely-npm-')));
const app = join(scratch, 'app');

/** The versions the repo itself installs: all of them are in the npm cache already. */
const versionOf = (name: string): string =>
  (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
    .version;

/** The package's peer ranges, from its manifest. */
const PEERS = (
  JSON.parse(readFileSync(join(root, 'layers/oncely/package.json'), 'utf8')) as {
    peerDependencies: Record<string, string>;
  }
).peerDependencies;

/** The newest published version of `name` in `range`: what `npm install` gives a user today (asks the registry). */
async function newest(name: string, range: string): Promise<string> {
  const { stdout } = await run('npm', ['view', `${name}@${range}`, 'version', '--json'], {
    env: { ...process.env, npm_config_update_notifier: 'false' },
    timeout: 60_000,
  });
  const versions = JSON.parse(stdout) as string | string[];
  return Array.isArray(versions) ? versions.at(-1)! : versions;
}

const inside = (dir: string) => (path: string) => path === dir || path.startsWith(`${dir}${sep}`);

/** Every symlink under `dir` and where it really points. */
function symlinks(dir: string): { link: string; target: string }[] {
  const out: { link: string; target: string }[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (lstatSync(path).isSymbolicLink()) out.push({ link: path, target: realpathSync(path) });
    else if (entry.isDirectory()) out.push(...symlinks(path));
  }
  return out;
}

/** Every file under `dir`. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)],
  );
}

/** The files Node loads for `file` before any dynamic import: its static imports, followed. */
function staticGraph(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  for (const m of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*"(\.\.?\/[^"]+)"/g)) {
    staticGraph(join(dirname(file), m[1]!), seen);
  }
  return seen;
}

/** The user's handler: strict TypeScript over the four entry points. */
const HANDLER = `import middy from '@middy/core';
import type { Context, Handler } from 'aws-lambda';
import { fromEnv, withOnce } from 'oncely';
import { redisStore } from 'oncely/ioredis';
import { createLock } from 'oncely/locks';
import { onceMiddleware, onceOf } from 'oncely/middy';

export const store = fromEnv();
export const lockStore = redisStore({ url: process.env.ONCELY_REDIS_URL ?? '' });
const lock = createLock(lockStore);

export interface Order {
  id: string;
  amount: number;
}
export interface Charged {
  id: string;
  amount: number;
  fence: number;
  run: number;
}

let runs = 0;
export const runCount = (): number => runs;

export const charge = withOnce(
  async (order: Order, _context: Context, { fence }): Promise<Charged> => {
    runs += 1;
    return { id: order.id, amount: order.amount, fence, run: runs };
  },
  { store, key: (order) => order.id },
);

// The README's middy pattern: a plain Lambda Handler, called with the Context Lambda passes.
export const chargeWithMiddy = middy<Order, Charged>()
  .use(onceMiddleware<Order, Charged>({ store, key: (order) => order.id }))
  .handler(async (order, context) => {
    runs += 1;
    return { id: order.id, amount: order.amount, fence: onceOf(context).fence, run: runs };
  });
export const asLambdaHandler: Handler<Order, unknown> = chargeWithMiddy;

export async function exclusive(key: string): Promise<number | 'busy'> {
  const lease = await lock.tryAcquire(key, { ttlMs: 5_000 });
  if (!lease) return 'busy';
  const other = await lock.tryAcquire(key, { ttlMs: 5_000 });
  if (other) throw new Error('two holders');
  const released = await lease.release();
  if (released !== 'released') throw new Error(released);
  return lease.fence;
}

/** Never called: each line must be a type error, so the types are real (an \`any\` would accept them all). */
export function typesAreChecked(): void {
  // @ts-expect-error ttlMs is a number of milliseconds
  void lock.tryAcquire('k', { ttlMs: '5s' });
  // @ts-expect-error duplicate is 'throw', 'wait' or 'skip'
  withOnce(async () => 1, { store, duplicate: 'ignore' });
  // @ts-expect-error the lease's fence is a number
  void lock.tryAcquire('k', { ttlMs: 1 }).then((lease) => lease?.fence.toUpperCase());
}
`;

const RUN = `import { fileURLToPath } from 'node:url';
import type { Context } from 'aws-lambda';
import { charge, chargeWithMiddy, exclusive, lockStore, runCount, store } from './handler.js';

const context = { functionName: 'scratch', awsRequestId: 'r', getRemainingTimeInMillis: () => 30_000 } as Context;
const specifiers = ['oncely', 'oncely/locks', 'oncely/middy', 'oncely/ioredis', 'ioredis', '@middy/core', '@aws-lambda-powertools/jmespath'];
const [root, locks] = [await import('oncely'), await import('oncely/locks')];
const report = {
  resolved: Object.fromEntries(specifiers.map((s) => [s, fileURLToPath(import.meta.resolve(s))])),
  charge: [await charge({ id: 'order-1', amount: 5 }, context), await charge({ id: 'order-1', amount: 5 }, context)],
  middy: [
    await chargeWithMiddy({ id: 'order-2', amount: 7 }, context),
    await chargeWithMiddy({ id: 'order-2', amount: 7 }, context),
  ],
  runs: runCount(),
  fences: [await exclusive('report'), await exclusive('report')],
  // oncely/locks hands out the root's own objects (shared chunks), so instanceof holds across the two.
  sameObjects: (['createLock', 'ValidationError', 'LockNotAcquiredError', 'StoreError', 'upstashStore', 'fromEnv'] as const).every(
    (name) => locks[name] === root[name],
  ),
};
await store.close();
await lockStore.close();
console.log(JSON.stringify(report));
`;

/**
 * What each bundle runs, over the store its environment names (REST or TCP): withOnce (a duplicate gets the first
 * result), a fenced lock, and an oncely error thrown from the package, whose stack the test maps to files.
 */
const BUNDLED = `import type { Context } from 'aws-lambda';
import { createLock, fromEnv, withOnce } from 'oncely';

export async function main(env: Record<string, string | undefined>) {
  const store = fromEnv(env);
  try {
    const once = withOnce(async (e: { id: string }) => ({ id: e.id, at: Math.random() }), {
      store,
      key: (e) => e.id,
      logLevel: 'silent',
    });
    const context = { getRemainingTimeInMillis: () => 30_000 } as Context;
    const id = \`bundle-\${Math.random()}\`;
    const [a, b] = [await once({ id }, context), await once({ id }, context)];
    const lock = createLock(store);
    const lease = await lock.tryAcquire(id, { ttlMs: 5_000 });
    const released = await lease?.release();
    let stack = '';
    try {
      await lock.tryAcquire(id, { ttlMs: -1 });
    } catch (err) {
      stack = (err as Error).stack ?? '';
    }
    return { same: JSON.stringify(a) === JSON.stringify(b), fence: lease?.fence ?? 0, released, stack };
  } catch (err) {
    const e = err as Error & { cause?: Error };
    return { error: \`\${e.name}: \${e.message}\`, cause: e.cause?.message ?? null };
  } finally {
    await store.close();
  }
}
`;

/** Runs a bundle's main() in a process of its own, source maps on (as NODE_OPTIONS=--enable-source-maps). */
const RUNNER = `import { pathToFileURL } from 'node:url';
const mod = await import(pathToFileURL(process.argv[2]).href);
const main = mod.main ?? mod.default?.main;
console.log(JSON.stringify(await main(JSON.parse(process.env.APP_ENV))));
process.exit(0);
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    lib: ['ES2023'],
    types: ['node'],
    strict: true,
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true,
    skipLibCheck: false,
    rootDir: 'src',
    outDir: 'build',
  },
  include: ['src'],
};

let packed: PackedPackage;
let redis: RedisProcess | undefined;
let installLog = '';
/** The peers installed in the scratch project: the newest in oncely's peer ranges. */
const peers: Record<string, string> = {};

beforeAll(async () => {
  packed = await packPackage(scratch);
  for (const name of ['ioredis', '@middy/core']) peers[name] = await newest(name, PEERS[name]!);
  // ioredis 6.1's .d.ts imports redis-errors, which has no types of its own: with skipLibCheck off, a user
  // installs @types/redis-errors (README, "Install"), as this project does.
  const redisErrorsTypes = await newest('@types/redis-errors', 'latest');
  mkdirSync(join(app, 'src'), { recursive: true });
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify(
      {
        name: 'oncely-scratch-app',
        private: true,
        type: 'module',
        dependencies: {
          oncely: `file:${packed.tarball}`,
          ioredis: peers.ioredis,
          '@middy/core': peers['@middy/core'],
        },
        devDependencies: {
          typescript: versionOf('typescript'),
          '@types/node': versionOf('@types/node'),
          '@types/redis-errors': redisErrorsTypes,
        },
      },
      null,
      2,
    ),
  );
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
  writeFileSync(join(app, 'src/handler.ts'), HANDLER);
  writeFileSync(join(app, 'src/run.ts'), RUN);
  writeFileSync(join(app, 'src/bundled.ts'), BUNDLED);
  writeFileSync(join(app, 'runner.mjs'), RUNNER);
  const { stdout, stderr } = await run(
    'npm',
    ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'],
    { cwd: app, env: { ...process.env, npm_config_update_notifier: 'false' }, timeout: 240_000 },
  );
  installLog = `${stdout}${stderr}`;
  redis = await startRedis();
}, 300_000);

afterAll(async () => {
  await redis?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe('npm pack', () => {
  it('packs the built entry points, their declarations, the sources their maps name, README, CHANGELOG, licence; no tests', () => {
    for (const entry of [
      'index',
      'locks',
      'middy',
      'ioredis',
      'cli',
      'effects/pg',
      'effects/dynamodb',
      'effects/redis',
    ]) {
      expect(packed.files).toContain(`dist/${entry}.js`);
      expect(packed.files).toContain(`dist/${entry}.d.ts`);
    }
    for (const file of ['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE', 'src/index.ts']) {
      expect(packed.files).toContain(file);
    }
    const top = /^(dist|src)\/|^(package\.json|README\.md|CHANGELOG\.md|LICENSE)$/;
    expect(packed.files.filter((f) => !top.test(f))).toEqual([]);
    expect(packed.files.filter((f) => /test|\.tsbuildinfo$/.test(f))).toEqual([]);
    console.log(
      `oncely tarball: ${packed.files.length} files, ${(packed.size / 1024).toFixed(1)} KiB packed, ${(packed.unpackedSize / 1024).toFixed(1)} KiB unpacked`,
    );
  });

  it('npm publish --dry-run accepts the tarball', { timeout: 120_000 }, async () => {
    const { stdout, stderr } = await run('npm', ['publish', '--dry-run', packed.tarball], {
      cwd: scratch,
      env: { ...process.env, npm_config_update_notifier: 'false' },
      timeout: 110_000,
    });
    const version = (
      JSON.parse(readFileSync(join(root, 'layers/oncely/package.json'), 'utf8')) as { version: string }
    ).version;
    expect(`${stdout}${stderr}`).toContain(`oncely@${version}`);
    expect(readFileSync(join(root, 'layers/oncely/CHANGELOG.md'), 'utf8')).toMatch(
      /^## (Unreleased|\d+\.\d+\.\d+)/m,
    );
  });

  it('its JavaScript is readable (not minified) and every source map names files the package ships', () => {
    const pkg = join(app, 'node_modules/oncely');
    const maps = filesUnder(join(pkg, 'dist')).filter((f) => f.endsWith('.js.map'));
    expect(maps.length).toBeGreaterThan(5);
    for (const map of maps) {
      const js = readFileSync(map.slice(0, -'.map'.length), 'utf8');
      expect(Math.max(...js.split('\n').map((line) => line.length)), map).toBeLessThan(1_000);
      for (const source of (JSON.parse(readFileSync(map, 'utf8')) as { sources: string[] }).sources) {
        const file = join(dirname(map), source);
        expect(inside(join(pkg, 'src'))(file), `${map}: ${source}`).toBe(true);
        expect(statSync(file).isFile(), `${map}: ${source}`).toBe(true);
      }
    }
  });

  it('oncely/locks loads no run-once, Redlock or leader code, and the root no run-once engine until a handler is made', () => {
    const dist = join(app, 'node_modules/oncely/dist');
    const bytesOf = (files: Set<string>) => [...files].reduce((sum, f) => sum + statSync(f).size, 0);
    const textOf = (files: Set<string>) => [...files].map((f) => readFileSync(f, 'utf8')).join('\n');
    const [root, locks] = [staticGraph(join(dist, 'index.js')), staticGraph(join(dist, 'locks.js'))];
    // A string of each feature's own code: a decision kind of withOnce, a Redlock message, the leader's class.
    const markers = ['duplicate-returned', 'after a split', 'Election'];
    for (const m of markers) expect(textOf(root)).toContain(m);
    for (const m of markers) expect(textOf(locks)).not.toContain(m);
    // The engine's own text: withOnce, withOnceBatch and oncePerTick load it when a handler is made.
    const engine = 'no idempotency key in the event';
    expect(textOf(root)).not.toContain(engine);
    expect(textOf(new Set(filesUnder(dist).filter((f) => f.endsWith('.js'))))).toContain(engine);
    console.log(
      `oncely/locks: ${locks.size} files, ${bytesOf(locks)} B; oncely: ${root.size} files, ${bytesOf(root)} B`,
    );
    expect(bytesOf(locks)).toBeLessThan(bytesOf(root) * 0.7);
  });

  it('its manifest is a real package: exports with types, side-effect free, engines, licence, optional peers', () => {
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules/oncely/package.json'), 'utf8'));
    expect(manifest).toMatchObject({
      name: 'oncely',
      type: 'module',
      sideEffects: false,
      license: 'MIT',
      engines: { node: '>=20' },
      exports: {
        '.': { types: './dist/index.d.ts', default: './dist/index.js' },
        './locks': { types: './dist/locks.d.ts', default: './dist/locks.js' },
        './middy': { types: './dist/middy.d.ts', default: './dist/middy.js' },
        './ioredis': { types: './dist/ioredis.d.ts', default: './dist/ioredis.js' },
        './effects/pg': { types: './dist/effects/pg.d.ts', default: './dist/effects/pg.js' },
        './effects/dynamodb': {
          types: './dist/effects/dynamodb.d.ts',
          default: './dist/effects/dynamodb.js',
        },
        './effects/redis': { types: './dist/effects/redis.d.ts', default: './dist/effects/redis.js' },
      },
      peerDependenciesMeta: {
        ioredis: { optional: true },
        '@middy/core': { optional: true },
        pg: { optional: true },
        '@aws-sdk/lib-dynamodb': { optional: true },
        '@aws-sdk/client-dynamodb': { optional: true },
      },
      bin: { oncely: './dist/cli.js' },
    });
    expect(Object.keys(manifest.dependencies ?? {})).not.toContain('ioredis');
    expect(manifest.main).toBe('./dist/index.js');
  });
});

describe('installed from the tarball into a scratch project outside the repo', () => {
  it('is installed as files, and nothing under the project links into the repo', () => {
    expect(inside(repo)(scratch), installLog).toBe(false);
    expect(lstatSync(join(app, 'node_modules/oncely')).isSymbolicLink()).toBe(false);
    const intoRepo = symlinks(join(app, 'node_modules')).filter((s) => !inside(app)(s.target));
    expect(intoRepo).toEqual([]);
    // The newest peers in oncely's ranges, not the repo's pinned ones.
    for (const [name, version] of Object.entries(peers)) {
      const installed = JSON.parse(readFileSync(join(app, 'node_modules', name, 'package.json'), 'utf8'));
      expect(installed.version, name).toBe(version);
    }
    console.log(`scratch project peers: ${JSON.stringify(peers)}`);
  });

  // Also compiles src/ to build/, which the next test runs.
  it('type-checks the handler with strict tsc, every file it reads inside the project', {
    timeout: 180_000,
  }, async () => {
    const tsc = join(app, 'node_modules/typescript/bin/tsc');
    const { stdout } = await run(process.execPath, [tsc, '-p', 'tsconfig.json', '--listFiles'], {
      cwd: app,
      timeout: 170_000,
    }).catch((err: { stdout?: string }) => {
      const errors = (err.stdout ?? String(err)).split('\n').filter((line) => /error TS/.test(line));
      throw new Error(`tsc failed:\n${errors.join('\n')}`);
    });
    const files = stdout
      .split('\n')
      .filter(Boolean)
      .map((f) => realpathSync(f));
    expect(files.filter((f) => !inside(app)(f))).toEqual([]);
    // The types came from the package's declarations, for each entry point.
    for (const entry of ['index', 'locks', 'middy', 'ioredis']) {
      expect(files).toContain(join(app, `node_modules/oncely/dist/${entry}.d.ts`));
    }
  });

  it('runs the handler against a real redis-server: once per key through withOnce and middy, a fenced lock', {
    timeout: 120_000,
  }, async () => {
    const { stdout } = await run(process.execPath, ['build/run.js'], {
      cwd: app,
      env: { PATH: process.env.PATH ?? '', ONCELY_REDIS_URL: redis!.url },
      timeout: 60_000,
    });
    const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      resolved: Record<string, string>;
      charge: { id: string; fence: number; run: number }[];
      middy: { id: string; fence: number; run: number }[];
      runs: number;
      fences: (number | 'busy')[];
      sameObjects: boolean;
    };
    for (const [specifier, path] of Object.entries(report.resolved)) {
      expect(inside(join(app, 'node_modules'))(realpathSync(path)), `${specifier} -> ${path}`).toBe(true);
    }
    expect(report.resolved.oncely).toBe(join(app, 'node_modules/oncely/dist/index.js'));
    expect(report.resolved['oncely/locks']).toBe(join(app, 'node_modules/oncely/dist/locks.js'));
    expect(report.sameObjects).toBe(true);
    // Each key ran once: the duplicate got the first result back, run counter included.
    expect(report.charge[0]).toMatchObject({ id: 'order-1', run: 1 });
    expect(report.charge[1]).toEqual(report.charge[0]);
    expect(report.middy[0]).toMatchObject({ id: 'order-2', run: 2 });
    expect(report.middy[1]).toEqual(report.middy[0]);
    expect(report.runs).toBe(2);
    // A new holder of the lock gets a greater fence.
    const [first, second] = report.fences as [number, number];
    expect(typeof first).toBe('number');
    expect(second).toBeGreaterThan(first);
  });
});

describe('bundled with esbuild as users deploy it: ESM and CJS, ioredis bundled and external, over REST and TCP', () => {
  /** Each documented way (README, "Bundling"); ESM with ioredis bundled needs the createRequire banner. */
  const WAYS = [
    { name: 'esm, ioredis bundled, createRequire banner', format: 'esm', ioredis: 'bundled', banner: true },
    { name: 'esm, ioredis external', format: 'esm', ioredis: 'external', banner: false },
    { name: 'cjs, ioredis bundled', format: 'cjs', ioredis: 'bundled', banner: false },
    { name: 'cjs, ioredis external', format: 'cjs', ioredis: 'external', banner: false },
    // Not a documented way: what a user gets who bundles ioredis into ESM without the banner.
    { name: 'esm, ioredis bundled, no banner', format: 'esm', ioredis: 'bundled', banner: false },
  ] as const;
  const outFile = (i: number) => join(app, 'out', `bundle-${i}.${WAYS[i]!.format === 'esm' ? 'mjs' : 'cjs'}`);
  let gateway: Awaited<ReturnType<typeof startGateway>> | undefined;

  beforeAll(async () => {
    gateway = await startGateway({ redis: { host: redis!.host, port: redis!.port }, token: 'bundles' });
    await Promise.all(
      WAYS.map((way, i) =>
        build({
          absWorkingDir: app,
          entryPoints: [join(app, 'src/bundled.ts')],
          outfile: outFile(i),
          bundle: true,
          platform: 'node',
          target: 'node20',
          format: way.format,
          sourcemap: true,
          external: way.ioredis === 'external' ? ['ioredis'] : [],
          ...(way.banner ? { banner: { js: REQUIRE_BANNER } } : {}),
          logLevel: 'silent',
        }),
      ),
    );
  }, 120_000);
  afterAll(async () => {
    await gateway?.close();
  });

  const runBundle = async (i: number, transport: 'rest' | 'tcp') => {
    const env =
      transport === 'rest'
        ? { UPSTASH_REDIS_REST_URL: gateway!.url, UPSTASH_REDIS_REST_TOKEN: 'bundles' }
        : { ONCELY_REDIS_URL: redis!.url };
    const { stdout } = await run(process.execPath, ['--enable-source-maps', 'runner.mjs', outFile(i)], {
      cwd: app,
      env: { PATH: process.env.PATH ?? '', APP_ENV: JSON.stringify(env) },
      timeout: 60_000,
    });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      same?: boolean;
      fence?: number;
      released?: string;
      stack?: string;
      error?: string;
      cause?: string | null;
    };
  };

  const cases = WAYS.slice(0, 4).flatMap((way, i) =>
    (['rest', 'tcp'] as const).map((transport) => ({ ...way, i, transport })),
  );
  it.each(cases)(
    '$name over $transport: runs once, locks, and its error stack names shipped files',
    {
      timeout: 90_000,
    },
    async ({ i, transport, ioredis }) => {
      const bundle = readFileSync(outFile(i), 'utf8');
      // ioredis is in the bundle exactly when it is meant to be.
      expect(bundle.includes('ClusterAllFailedError'), 'ioredis in the bundle').toBe(ioredis === 'bundled');
      const out = await runBundle(i, transport);
      expect(out.error, out.cause ?? '').toBeUndefined();
      expect(out.same).toBe(true);
      expect(out.fence).toBeGreaterThan(0);
      expect(out.released).toBe('released');
      // The stack's first frame inside the package names a source file it ships, at a line that file has.
      expect(out.stack).toMatch(/ValidationError|ConfigError/);
      const frames = [...out.stack!.matchAll(/(?:file:\/\/)?(\/[^\s()]+):(\d+):\d+/g)].map((m) => ({
        file: m[1]!,
        line: Number(m[2]),
      }));
      const ours = frames.filter((f) => f.file.startsWith(join(app, 'node_modules/oncely/')));
      expect(ours.length, out.stack).toBeGreaterThan(0);
      for (const frame of ours) {
        expect(frame.file, out.stack).toMatch(/\/node_modules\/oncely\/src\/.+\.ts$/);
        expect(readFileSync(frame.file, 'utf8').split('\n').length).toBeGreaterThanOrEqual(frame.line);
      }
    },
  );

  it('ESM with ioredis bundled and no banner: REST works; TCP says what to do, with the real error as cause', {
    timeout: 90_000,
  }, async () => {
    const i = WAYS.length - 1;
    expect((await runBundle(i, 'rest')).same).toBe(true);
    const tcp = await runBundle(i, 'tcp');
    expect(tcp.error).toMatch(/^ConfigError: .*could not load ioredis/);
    expect(tcp.error).toMatch(/createRequire banner/);
    expect(tcp.error).toMatch(/mark ioredis external/);
    expect(tcp.error).not.toMatch(/npm install ioredis/);
    expect(tcp.cause).toMatch(/Dynamic require of "\w+" is not supported/);
  });
});

describe('the oncely command, installed as the package bin', () => {
  const npx = (args: string[]) =>
    run('npx', ['--no-install', 'oncely', ...args], {
      cwd: app,
      env: {
        PATH: process.env.PATH ?? '',
        ONCELY_REDIS_URL: redis!.url,
        npm_config_update_notifier: 'false',
      },
      timeout: 60_000,
    }).then(
      ({ stdout }) => ({ code: 0, stdout }),
      (err: { code?: number; stdout?: string }) => ({ code: err.code, stdout: err.stdout ?? '' }),
    );

  it('npx oncely --help; status and leader against a real redis-server, with their exit codes', {
    timeout: 120_000,
  }, async () => {
    const help = await npx(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: oncely <command>/m);
    const status = await npx(['status', 'scratch-lock', '--json']);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual({
      lock: 'scratch-lock',
      held: false,
      remainingMs: 0,
      fence: 0,
    });
    expect((await npx(['leader', 'nobody'])).code).toBe(1);
    expect((await npx(['nope'])).code).toBe(2);
  });

  it('npx oncely --version prints the package version; a refused password is exit 4, not "unavailable"', {
    timeout: 120_000,
  }, async () => {
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules/oncely/package.json'), 'utf8'));
    const version = await npx(['--version']);
    expect(version).toEqual({ code: 0, stdout: `${manifest.version}\n` });
    const locked = await startRedis({ password: 'right-secret' });
    try {
      const refused = await run('npx', ['--no-install', 'oncely', 'status', 'x'], {
        cwd: app,
        env: {
          PATH: process.env.PATH ?? '',
          ONCELY_REDIS_URL: `redis://:wrong-secret@${locked.host}:${locked.port}`,
        },
        timeout: 60_000,
      }).then(
        () => ({ code: 0, stderr: '' }),
        (err: { code?: number; stderr?: string }) => ({ code: err.code, stderr: err.stderr ?? '' }),
      );
      expect(refused.code).toBe(4);
      expect(refused.stderr).toMatch(/refused the credentials.*WRONGPASS.*check the password/);
      expect(refused.stderr).not.toContain('secret');
    } finally {
      await locked.stop();
    }
  });
});

describe('a REST-only app without ioredis installed', () => {
  it('type-checks without ioredis and middy, bundles with esbuild without ioredis, runs over REST, and a TCP store says to install ioredis', {
    timeout: 240_000,
  }, async () => {
    // The app's node_modules minus ioredis (and its own dependencies) and @middy/core, in a folder of its own.
    const restApp = join(scratch, 'rest-app');
    const ioredisDeps = new Set(
      Object.keys(
        (
          JSON.parse(readFileSync(join(app, 'node_modules/ioredis/package.json'), 'utf8')) as {
            dependencies: Record<string, string>;
          }
        ).dependencies,
      ),
    );
    cpSync(join(app, 'node_modules'), join(restApp, 'node_modules'), {
      recursive: true,
      filter: (src) => {
        const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(src.slice(app.length));
        return !m || (m[1] !== 'ioredis' && m[1] !== '@middy/core' && !ioredisDeps.has(m[1]!));
      },
    });
    writeFileSync(
      join(restApp, 'handler.mjs'),
      `import { createLock, fromEnv, withOnce } from 'oncely';
export async function main(env) {
  const store = fromEnv(env);
  const once = withOnce(async (e) => ({ id: e.id, at: Math.random() }), { store, key: (e) => e.id });
  const context = { getRemainingTimeInMillis: () => 30_000 };
  const [a, b] = [await once({ id: 'x' }, context), await once({ id: 'x' }, context)];
  const lease = await createLock(store).tryAcquire('rest-only', { ttlMs: 5_000 });
  await lease.release();
  let tcp;
  try {
    await createLock(fromEnv({ ONCELY_REDIS_URL: env.REDIS_URL })).tryAcquire('tcp', { ttlMs: 5_000 });
  } catch (err) {
    tcp = err.message;
  }
  return { same: a.at === b.at, fence: lease.fence, tcp };
}
`,
    );
    // The root's types need neither ioredis nor @middy/core: a strict type-check of a REST-only handler
    // passes here, where neither is installed (skipLibCheck off: every .d.ts it reads is checked).
    writeFileSync(
      join(restApp, 'typed.ts'),
      `import { createLock, fromEnv, withOnce } from 'oncely';
const store = fromEnv();
export const handler = withOnce(async (event: { id: string }, _context, { fence }) => ({ id: event.id, fence }), {
  store,
  key: (event) => event.id,
});
export const lock = createLock(store);
`,
    );
    writeFileSync(
      join(restApp, 'tsconfig.json'),
      JSON.stringify({
        ...TSCONFIG,
        compilerOptions: { ...TSCONFIG.compilerOptions, rootDir: '.', noEmit: true },
        include: ['typed.ts'],
      }),
    );
    writeFileSync(join(restApp, 'package.json'), JSON.stringify({ type: 'module', private: true }));
    await run(process.execPath, [join(restApp, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], {
      cwd: restApp,
      timeout: 170_000,
    }).catch((err: { stdout?: string }) => {
      throw new Error(`tsc (REST only) failed:\n${err.stdout ?? err}`);
    });

    const result = await build({
      absWorkingDir: restApp,
      entryPoints: ['handler.mjs'],
      outfile: join(restApp, 'out/handler.mjs'),
      bundle: true,
      format: 'esm',
      platform: 'node',
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((i) => i.includes('node_modules/oncely/dist/'))).toBe(true);
    expect(inputs.filter((i) => /ioredis|redis-parser|denque|@aws-sdk/.test(i))).toEqual([]);

    const gateway = await startGateway({ redis: { host: redis!.host, port: redis!.port }, token: 'npm' });
    try {
      // In a process of its own: Node resolves the bundle's imports as on Lambda (vitest would resolve them
      // from the repo).
      const { stdout } = await run(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const { main } = await import(${JSON.stringify(pathToFileURL(join(restApp, 'out/handler.mjs')).href)});
console.log(JSON.stringify(await main(JSON.parse(process.env.APP_ENV))));
process.exit(0);`,
        ],
        {
          cwd: restApp,
          env: {
            PATH: process.env.PATH ?? '',
            APP_ENV: JSON.stringify({
              UPSTASH_REDIS_REST_URL: gateway.url,
              UPSTASH_REDIS_REST_TOKEN: 'npm',
              REDIS_URL: redis!.url,
            }),
          },
          timeout: 60_000,
        },
      );
      // The last line: withOnce's decision log lines come first.
      const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
        same: boolean;
        fence: number;
        tcp: string;
      };
      expect(out.same).toBe(true);
      expect(out.fence).toBeGreaterThan(0);
      expect(out.tcp).toMatch(/needs the ioredis package: npm install ioredis/);
    } finally {
      await gateway.close();
    }
  });
});
