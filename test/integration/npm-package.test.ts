// The npm package as a user gets it: `npm pack`, the tarball installed into a scratch project in a temporary
// folder outside the repo (dependencies from the npm cache the repo's own install filled: --prefer-offline),
// type-checked there with strict tsc (skipLibCheck off, so every .d.ts the package ships is checked too), compiled,
// and run against a real redis-server: withOnce, the middy adapter and createLock (from `oncely/locks`) over
// `oncely/ioredis`.
// Nothing in the scratch project may resolve into the repo: no symlink, no module, no type file.
//
// Then a REST-only app: the same package without ioredis (or middy) installed type-checks strictly, bundles with esbuild (as serverless-esbuild,
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
import { type PackedPackage, packPackage, root } from '../../scripts/build.js';

const run = promisify(execFile);
const repo = realpathSync(root);
const scratch = realpathSync(mkdtempSync(join(tmpdir(), 'oncely-npm-')));
const app = join(scratch, 'app');

/** The versions the repo itself installs: all of them are in the npm cache already. */
const versionOf = (name: string): string =>
  (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
    .version;

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
import type { Context } from 'aws-lambda';
import { fromEnv, withOnce } from 'oncely';
import { redisStore } from 'oncely/ioredis';
import { createLock } from 'oncely/locks';
import { type OnceContext, onceMiddleware } from 'oncely/middy';

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

export const chargeWithMiddy = middy<Order, Charged, Error, OnceContext>()
  .use(onceMiddleware<Order, Charged>({ store, key: (order) => order.id }))
  .handler(async (order, context) => {
    runs += 1;
    return { id: order.id, amount: order.amount, fence: context.oncely.fence, run: runs };
  });

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
import type { OnceContext } from 'oncely/middy';
import { charge, chargeWithMiddy, exclusive, lockStore, runCount, store } from './handler.js';

const context = { functionName: 'scratch', awsRequestId: 'r', getRemainingTimeInMillis: () => 30_000 } as Context;
const specifiers = ['oncely', 'oncely/locks', 'oncely/middy', 'oncely/ioredis', 'ioredis', '@middy/core', '@aws-lambda-powertools/jmespath'];
const [root, locks] = [await import('oncely'), await import('oncely/locks')];
const report = {
  resolved: Object.fromEntries(specifiers.map((s) => [s, fileURLToPath(import.meta.resolve(s))])),
  charge: [await charge({ id: 'order-1', amount: 5 }, context), await charge({ id: 'order-1', amount: 5 }, context)],
  middy: [
    // middy types the context as what the handler sees (the middleware adds \`oncely\` to it).
    await chargeWithMiddy({ id: 'order-2', amount: 7 }, context as OnceContext),
    await chargeWithMiddy({ id: 'order-2', amount: 7 }, context as OnceContext),
  ],
  runs: runCount(),
  fences: [await exclusive('report'), await exclusive('report')],
  // oncely/locks hands out the root's own objects (shared chunks), so instanceof holds across the two.
  sameObjects: (['createLock', 'Lease', 'LockNotAcquiredError', 'StoreError', 'upstashStore', 'fromEnv'] as const).every(
    (name) => locks[name] === root[name],
  ),
};
await store.close();
await lockStore.close();
console.log(JSON.stringify(report));
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

beforeAll(async () => {
  packed = await packPackage(scratch);
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
          ioredis: versionOf('ioredis'),
          '@middy/core': versionOf('@middy/core'),
        },
        devDependencies: { typescript: versionOf('typescript'), '@types/node': versionOf('@types/node') },
      },
      null,
      2,
    ),
  );
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
  writeFileSync(join(app, 'src/handler.ts'), HANDLER);
  writeFileSync(join(app, 'src/run.ts'), RUN);
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
  it('packs the built entry points, their declarations, the README and the licence; no sources, no tests', () => {
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
    for (const file of ['package.json', 'README.md', 'LICENSE']) expect(packed.files).toContain(file);
    expect(packed.files.filter((f) => !/^dist\/|^(package\.json|README\.md|LICENSE)$/.test(f))).toEqual([]);
    expect(packed.files.filter((f) => /\.ts$/.test(f) && !f.endsWith('.d.ts'))).toEqual([]);
    console.log(
      `oncely tarball: ${packed.files.length} files, ${(packed.size / 1024).toFixed(1)} KiB packed, ${(packed.unpackedSize / 1024).toFixed(1)} KiB unpacked`,
    );
  });

  it('oncely/locks loads no run-once, Redlock or leader code, and under half the bytes of the root', () => {
    const dist = join(app, 'node_modules/oncely/dist');
    const bytesOf = (files: Set<string>) => [...files].reduce((sum, f) => sum + statSync(f).size, 0);
    const textOf = (files: Set<string>) => [...files].map((f) => readFileSync(f, 'utf8')).join('\n');
    const [root, locks] = [staticGraph(join(dist, 'index.js')), staticGraph(join(dist, 'locks.js'))];
    // A string of each feature's own code: a decision kind of withOnce, a Redlock message, the leader's class.
    const markers = ['duplicate-returned', 'after a split', 'Election'];
    for (const m of markers) expect(textOf(root)).toContain(m);
    for (const m of markers) expect(textOf(locks)).not.toContain(m);
    console.log(
      `oncely/locks: ${locks.size} files, ${bytesOf(locks)} B; oncely: ${root.size} files, ${bytesOf(root)} B`,
    );
    expect(bytesOf(locks)).toBeLessThan(bytesOf(root) / 2);
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
