/**
 * `npm run build`: the npm package, the Lambda layer and the functions, as they are published and deployed.
 *
 *   layers/oncely/dist/                     the npm package "oncely" (layers/oncely/package.json): one ESM file
 *                                           per entry point (`oncely`, `oncely/locks`, `oncely/middy`,
 *                                           `oncely/ioredis`) and shared chunks, readable (not minified), with
 *                                           source maps naming the package's own `src/` (shipped with it, so a
 *                                           mapped stack names a file that exists); `.d.ts` from tsc
 *                                           (layers/oncely/tsconfig.build.json). Dependencies stay external,
 *                                           each loaded by its transport when a store is created:
 *                                           @upstash/redis (with oncely's requester) by a REST store, ioredis
 *                                           (an optional peer) by a TCP store
 *   dist/layer/nodejs/node_modules/         the layer (`layers.oncely.path` in serverless.yml): the packed
 *                                           package (what `npm pack` puts in the tarball) unpacked as `oncely`,
 *                                           its JavaScript rebuilt minified for cold start and its `src/` left
 *                                           out, next to its runtime dependencies (ioredis included,
 *                                           without their .d.ts and docs), in the layout Lambda resolves from
 *                                           /opt/nodejs/node_modules
 *   dist/functions/<name>/handler.mjs       each function bundled alone, `oncely` external (it comes from the
 *                                           layer at /opt/nodejs/node_modules), the AWS SDK external (it comes
 *                                           with the runtime)
 *
 * `serverless package` / `deploy` bundle the functions again through serverless-esbuild with the same
 * settings (serverless.yml); the layer is only built here, so run `npm run build` first. The tarball a user
 * installs: `npm run pack` (scripts/pack.ts); to publish it, `npm publish <that tarball>`.
 *
 *   npm run build                 everything, then a size table
 *   npm run build -- --layer      the package and the layer
 *   npm run build -- --package    the package only
 */
import { execFile } from 'node:child_process';
import {
  cpSync,
  existsSync,
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
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type BuildOptions, build } from 'esbuild';

const run = promisify(execFile);

export const root = fileURLToPath(new URL('..', import.meta.url));
export const distDir = join(root, 'dist');
export const layerDir = join(distDir, 'layer');
/** The npm package's folder (its package.json, README, LICENSE; `dist/` is built). */
export const packageDir = join(root, 'layers/oncely');
/** Where the package lands inside the layer zip (and under /opt on Lambda). */
export const layerPackagePath = 'nodejs/node_modules/oncely';
export const functionsDistDir = join(distDir, 'functions');

/**
 * The package's entry points: output name -> source. layers/oncely/package.json `exports` maps `.`,
 * `./middy`, `./ioredis` and `./effects/{pg,dynamodb,redis}` to `dist/<name>.js` and `dist/<name>.d.ts`. The
 * effects' peers (pg, the DynamoDB SDK) are the function's own: the layer does not carry them.
 *
 * `cli` is the `oncely` command (`"bin": { "oncely": "./dist/cli.js" }`): esbuild keeps the
 * `#!/usr/bin/env node` line cli.ts starts with.
 */
export const PACKAGE_ENTRIES = {
  index: 'layers/oncely/src/index.ts',
  locks: 'layers/oncely/src/locks.ts',
  middy: 'layers/oncely/src/middy.ts',
  ioredis: 'layers/oncely/src/ioredis.ts',
  'effects/pg': 'layers/oncely/src/effects/pg.ts',
  'effects/dynamodb': 'layers/oncely/src/effects/dynamodb.ts',
  'effects/redis': 'layers/oncely/src/effects/redis.ts',
  cli: 'layers/oncely/src/cli.ts',
} as const;

/**
 * Optional peer dependencies the layer carries, next to the package's own runtime dependencies: ioredis, so
 * that the TCP transport works from the layer alone. @middy/core is not loaded by oncely (the function
 * bundles its own middy), nor is @upstash/redis (upstashClientStore takes the caller's client).
 */
const LAYER_PEERS = ['ioredis'];

/**
 * The one Node major of the deployed functions, written here only. serverless.yml (`provider.runtime`, the
 * layer's `compatibleRuntimes`, `custom.esbuild.target`), .ci/run (`NODE24_VERSION`) and the bench's bundles
 * must agree with it: test/unit/serverless-config.test.ts checks that they do.
 */
export const NODE_MAJOR = 24;
/** esbuild's target for the deployed functions and the layer. */
export const TARGET = `node${NODE_MAJOR}`;
/** The Lambda runtime the functions and the layer run on. */
export const LAMBDA_RUNTIME = `nodejs${NODE_MAJOR}.x`;
/**
 * The lowest Node the package runs on, read from its `engines` (">=20"), written there only: the package is
 * built for it, and the repo's own `engines` must agree (test/unit/serverless-config.test.ts).
 */
export const PACKAGE_NODE_MAJOR = Number(
  /^>=\s*(\d+)/.exec(
    (JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { engines: { node: string } })
      .engines.node,
  )?.[1],
);
const PACKAGE_TARGET = `node${PACKAGE_NODE_MAJOR}`;
/** Bundled CommonJS code calls require(); an ESM bundle has none of its own. */
export const REQUIRE_BANNER =
  "import { createRequire as __oncelyCreateRequire } from 'node:module'; const require = __oncelyCreateRequire(import.meta.url);";
/** What every function is built with, as deployed (the bench bundles its contenders with it too). */
export const DEPLOYED = {
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: TARGET,
  minify: true,
  keepNames: true,
  sourcemap: true,
  // Stack traces are mapped (NODE_OPTIONS=--enable-source-maps) without shipping the sources.
  sourcesContent: false,
} as const;
/** Modules a deployed function never bundles: the layer, and the SDK that ships with the runtime. */
export const FUNCTION_EXTERNALS = ['oncely', '@aws-sdk/*'];

export interface BuiltFile {
  /** Path relative to the output directory (`nodejs/node_modules/oncely/index.mjs`, `webhook/handler.mjs`). */
  readonly path: string;
  readonly bytes: number;
}

/** The files of layers/oncely that the package ships besides `dist/` (its `files` in package.json). */
export const PACKAGE_FILES = ['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE', 'src'] as const;

/** How the layer's copy of the package differs from the published one: minified, for cold start. */
export const LAYER_BUILD = { minify: true } as const;

/**
 * esbuild's options for the package's JavaScript, written into `outDir`: one file per entry point and shared
 * chunks, every dependency external (they resolve from the user's node_modules or the layer's). The package
 * is readable (`minify: false`: a user's stack trace and debugger show real code); the layer minifies.
 */
export function packageBuildOptions(outDir: string, { minify = false } = {}): BuildOptions {
  return {
    absWorkingDir: root,
    entryPoints: PACKAGE_ENTRIES,
    outdir: outDir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: PACKAGE_TARGET,
    packages: 'external',
    minify,
    keepNames: true,
    sourcemap: true,
    sourcesContent: false,
    chunkNames: 'chunks/[name]-[hash]',
    legalComments: 'linked',
    logLevel: 'warning',
  };
}

/**
 * Builds the package's `dist/` into `outDir` (emptied first; default layers/oncely/dist): the JavaScript with
 * esbuild (packageBuildOptions), then the declarations with tsc. Returns every file written.
 */
export async function buildPackage(outDir = join(packageDir, 'dist')): Promise<BuiltFile[]> {
  rmSync(outDir, { recursive: true, force: true });
  await build(packageBuildOptions(outDir));
  rebaseSourceMaps(outDir);
  await run(
    process.execPath,
    [
      join(root, 'node_modules/typescript/bin/tsc'),
      '-p',
      join(packageDir, 'tsconfig.build.json'),
      '--outDir',
      outDir,
    ],
    { cwd: root },
  );
  return listFiles(outDir);
}

/**
 * Points the source maps in `outDir` (a package's `dist/`) at the package's own `src/` next to it: esbuild names
 * the files it read (layers/oncely/src in the repo), relative to wherever `outDir` is, which in a scratch copy
 * or an installed package is nowhere.
 */
function rebaseSourceMaps(outDir: string): void {
  const packageRoot = dirname(outDir);
  for (const f of listFiles(outDir)) {
    if (!f.path.endsWith('.js.map')) continue;
    const file = join(outDir, f.path);
    const map = JSON.parse(readFileSync(file, 'utf8')) as { sources: string[] };
    map.sources = map.sources.map((source) => {
      const inPackage = relative(packageDir, resolve(dirname(file), source));
      return relative(dirname(file), join(packageRoot, inPackage));
    });
    writeFileSync(file, JSON.stringify(map));
  }
}

export interface PackedPackage {
  /** The `.tgz` file, in the folder given to packPackage. */
  readonly tarball: string;
  /** `npm pack`'s figures: the tarball's bytes and the unpacked bytes. */
  readonly size: number;
  readonly unpackedSize: number;
  /** Every path in the tarball (relative to the package root). */
  readonly files: readonly string[];
}

/**
 * Builds the package in a scratch copy of its folder and runs `npm pack` there, writing the tarball into
 * `destDir`: the same bytes `npm publish ./layers/oncely` would upload after `npm run build -- --package`.
 */
export async function packPackage(destDir: string): Promise<PackedPackage> {
  const stage = mkdtempSync(join(tmpdir(), 'oncely-pack-'));
  try {
    for (const f of PACKAGE_FILES) cpSync(join(packageDir, f), join(stage, f), { recursive: true });
    await buildPackage(join(stage, 'dist'));
    const { stdout } = await run(
      'npm',
      ['pack', '--json', '--ignore-scripts', '--pack-destination', destDir],
      { cwd: stage, env: { ...process.env, npm_config_update_notifier: 'false' } },
    );
    const [info] = JSON.parse(stdout) as {
      filename: string;
      size: number;
      unpackedSize: number;
      files: { path: string }[];
    }[];
    return {
      tarball: join(destDir, info!.filename),
      size: info!.size,
      unpackedSize: info!.unpackedSize,
      files: info!.files.map((f) => f.path).sort(),
    };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * The packages a list of package names needs at run time, found as Node finds them from the repo root:
 * their folders relative to the root (`node_modules/ioredis`, `node_modules/a/node_modules/b`).
 */
export function runtimeClosure(names: readonly string[]): string[] {
  const found = new Set<string>();
  const visit = (name: string, from: string) => {
    let dir = from;
    let at: string | undefined;
    for (;;) {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) {
        at = candidate;
        break;
      }
      if (dir === root) break;
      dir = dirname(dir);
    }
    if (!at) throw new Error(`layer: ${name} is not installed (needed from ${relative(root, from) || '.'})`);
    const rel = relative(root, at);
    if (found.has(rel)) return;
    found.add(rel);
    const manifest = JSON.parse(readFileSync(join(at, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    for (const dep of Object.keys(manifest.dependencies ?? {})) visit(dep, at);
  };
  for (const name of names) visit(name, root);
  return [...found].sort();
}

/** Files of a dependency the layer leaves out: type declarations and docs (never licences). */
const LAYER_PRUNE = /\.d\.[cm]?ts(\.map)?$|\.(md|markdown)$/i;

/**
 * Builds the layer into `dir` (emptied first; default dist/layer): the packed package, unpacked at
 * nodejs/node_modules/oncely, and its runtime dependencies next to it. Returns every file written.
 */
export async function buildLayer(dir = layerDir): Promise<BuiltFile[]> {
  rmSync(dir, { recursive: true, force: true });
  const packDir = mkdtempSync(join(tmpdir(), 'oncely-layer-'));
  try {
    const packed = await packPackage(packDir);
    const target = join(dir, layerPackagePath);
    mkdirSync(target, { recursive: true });
    await run('tar', ['-xzf', packed.tarball, '--strip-components=1', '-C', target]);
    // Minified for cold start: the package's JavaScript rebuilt in place (the .d.ts kept), its sources left out.
    rmSync(join(target, 'src'), { recursive: true, force: true });
    for (const f of listFiles(join(target, 'dist'))) {
      if (/\.js(\.map)?$/.test(f.path)) rmSync(join(target, 'dist', f.path));
    }
    await build(packageBuildOptions(join(target, 'dist'), LAYER_BUILD));
    rebaseSourceMaps(join(target, 'dist'));
    const manifest = JSON.parse(readFileSync(join(target, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    const runtime = [
      ...Object.keys(manifest.dependencies ?? {}).filter((d) => !d.startsWith('@types/')),
      ...LAYER_PEERS,
    ];
    for (const rel of runtimeClosure(runtime)) {
      cpSync(join(root, rel), join(dir, 'nodejs', rel), {
        recursive: true,
        // Nested node_modules are in the closure themselves (only what is needed at run time).
        filter: (src) => !(src.endsWith('/node_modules') || LAYER_PRUNE.test(src)),
      });
    }
  } finally {
    rmSync(packDir, { recursive: true, force: true });
  }
  return listFiles(dir);
}

/** The functions: every `functions/<name>/handler.ts`. */
export function functionNames(): string[] {
  const dir = join(root, 'functions');
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && statSafe(join(dir, e.name, 'handler.ts')))
    .map((e) => e.name)
    .sort();
}

/**
 * Builds each function into `<dir>/<name>/handler.mjs` (`dir` emptied first; default dist/functions). Returns
 * every file written.
 */
export async function buildFunctions(dir = functionsDistDir, names = functionNames()): Promise<BuiltFile[]> {
  rmSync(dir, { recursive: true, force: true });
  await Promise.all(
    names.map((name) =>
      build({
        absWorkingDir: root,
        entryPoints: [`functions/${name}/handler.ts`],
        outfile: join(dir, name, 'handler.mjs'),
        ...DEPLOYED,
        external: FUNCTION_EXTERNALS,
        banner: { js: REQUIRE_BANNER },
        logLevel: 'warning',
      }),
    ),
  );
  return listFiles(dir);
}

function statSafe(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function listFiles(dir: string): BuiltFile[] {
  const out: BuiltFile[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push({ path: relative(dir, p), bytes: statSync(p).size });
    }
  };
  walk(dir);
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

function kb(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

async function main(): Promise<void> {
  const packageOnly = process.argv.includes('--package');
  const layerOnly = process.argv.includes('--layer');
  const under = (dir: string, files: BuiltFile[]) =>
    files.map((f) => ({ ...f, path: join(relative(root, dir), f.path) }));
  const files = under(join(packageDir, 'dist'), await buildPackage());
  if (!packageOnly) {
    const layer = await buildLayer();
    // The layer's dependencies are hundreds of files: one line for oncely's, one per dependency.
    const byPackage = new Map<string, number>();
    for (const f of layer) {
      const m = /^nodejs\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f.path);
      const key = join(relative(root, layerDir), 'nodejs/node_modules', m?.[1] ?? f.path);
      byPackage.set(key, (byPackage.get(key) ?? 0) + f.bytes);
    }
    files.push(...[...byPackage].map(([path, bytes]) => ({ path: `${path}/`, bytes })));
  }
  if (!packageOnly && !layerOnly) files.push(...under(functionsDistDir, await buildFunctions()));
  const width = Math.max(...files.map((f) => f.path.length));
  for (const f of files) console.log(`${f.path.padEnd(width)}  ${kb(f.bytes).padStart(10)}`);
  console.log(`built ${files.length} files into ${relative(root, distDir)}/`);
}

const entry = process.argv[1];
if (entry && realpathSync(entry) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error('build failed:', err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
