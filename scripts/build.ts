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
 *   dist/layer/nodejs/node_modules/oncely/  the layer (`layers.oncely.path` in serverless.yml), in the layout
 *                                           Lambda resolves from /opt/nodejs/node_modules: the packed package
 *                                           (what `npm pack` puts in the tarball: manifest, .d.ts) unpacked
 *                                           as `oncely`, its JavaScript rebuilt for cold start as a bundle
 *                                           (layerBuildOptions: minified, one file per entry point with shared
 *                                           chunks, @upstash/redis, ioredis and JMESPath inlined, each in the
 *                                           chunk of the path that loads it), no sources and no source maps,
 *                                           and the inlined packages' licences (THIRD-PARTY-LICENSES.txt)
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
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type BuildOptions, build, type Metafile, type Plugin } from 'esbuild';
import { foldEntryStubs } from './layer-fold.js';

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
 * Modules the layer leaves out of its bundle, for the function or the runtime to bring: the AWS SDK (it comes
 * with the Lambda runtime: the SSM client at cold start, the DynamoDB clients of `oncely/effects/dynamodb`),
 * and the peers a function imports itself (pg for `oncely/effects/pg`, its own middy). Everything else the
 * package depends on is inlined: @upstash/redis, ioredis, JMESPath.
 */
export const LAYER_EXTERNALS = ['@aws-sdk/*', 'pg', '@middy/core'] as const;

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
 * ioredis (CommonJS) as an ES module with named exports, for the layer's chunk that holds it. esbuild makes a
 * CommonJS module reached only by `import()` the entry of a chunk that exports it as `default` alone, while
 * the importer still reads `Redis` and `Cluster` from it (undefined: "is not a constructor" on the first TCP
 * call); an ES module in front of it, re-exporting every name the installed ioredis has, gives the chunk
 * the named exports. Only the layer needs it: a bundle without splitting inlines the import.
 */
const ioredisNamedExports: Plugin = {
  name: 'oncely-ioredis-named-exports',
  setup(b) {
    b.onResolve({ filter: /^ioredis$/ }, (args) =>
      args.namespace === 'oncely-ioredis'
        ? undefined
        : { path: 'ioredis', namespace: 'oncely-ioredis', pluginData: args.resolveDir },
    );
    b.onLoad({ filter: /.*/, namespace: 'oncely-ioredis' }, (args) => {
      // Every name ioredis exports, as Node's own import of it would give them.
      const resolveDir = args.pluginData as string;
      const names = Object.keys(createRequire(join(resolveDir, 'index.js'))('ioredis') as object).filter(
        (n) => n !== 'default' && /^[A-Za-z_$][\w$]*$/.test(n),
      );
      return {
        contents: `export { default, ${names.join(', ')} } from 'ioredis';\n${lockPathImport}`,
        resolveDir,
        loader: 'js',
      };
    });
  },
};

/**
 * `debug` (ioredis's only use of it: built/utils/debug.js) as scripts/layer-debug.cjs: the same lines on
 * stderr under the same DEBUG patterns, in 1 KiB instead of debug with supports-color and ms (10 KiB of every
 * TCP path). Only the layer: the npm package leaves ioredis and its debug to the user's install.
 */
const layerDebug: Plugin = {
  name: 'oncely-layer-debug',
  setup(b) {
    b.onResolve({ filter: /^debug$/ }, () => ({ path: join(root, 'scripts/layer-debug.cjs') }));
  },
};

/** The lock path: what `oncely/locks` loads, and every other entry point and lazily loaded part needs. */
const LOCK_PATH = 'layers/oncely/src/locks.ts';
/**
 * The modules that only ever load beside the lock path, read by the layer's build as importing it (lockPath):
 * every entry point (each one's users take locks: a store, a lease, a fence token come from it) and every
 * part loaded on first use (by code on the lock path or the index).
 */
export const LOCK_PATH_RIDERS = [
  ...Object.values(PACKAGE_ENTRIES).filter((e) => e !== LOCK_PATH),
  'layers/oncely/src/once/with-once.ts',
  'layers/oncely/src/once/batch.ts',
  'layers/oncely/src/once/per-tick.ts',
  'layers/oncely/src/transport/tcp.ts',
  'layers/oncely/src/transport/ssm.ts',
  'layers/oncely/src/transport/upstash-client.ts',
  'layers/oncely/src/transport/upstash-http.ts',
] as const;

/**
 * The lock path in one chunk. esbuild splits code by the set of entry points (and dynamically imported
 * modules) that reach each module, so the lock path came in ten files (errors, scripts, lease, lock,
 * transport options, …, each reached by a different set), and every file costs a cold start its read, compile
 * and link. Each LOCK_PATH_RIDER (and ioredis's chunk, ioredisNamedExports) is read with one more line,
 * `import '<locks.ts>'`: it now reaches the whole lock path, as it does at run time anyway, so every module of
 * the path has the same set and lands in one chunk. The import itself is dropped (the package is
 * `sideEffects: false`): nothing runs or loads that did not before.
 */
const lockPath: Plugin = {
  name: 'oncely-lock-path',
  setup(b) {
    const riders = new Set(LOCK_PATH_RIDERS.map((f) => join(root, f)));
    // The packages oncely's code loads on first use (JMESPath): each holds esbuild's runtime helpers, which
    // join the lock path's chunk when every user of them reaches it too.
    b.onResolve({ filter: /^[^./]/ }, async (args) => {
      if (args.kind !== 'dynamic-import' || args.pluginData === lockPath) return undefined;
      const { kind, importer, resolveDir, namespace } = args;
      const r = await b.resolve(args.path, { kind, importer, resolveDir, namespace, pluginData: lockPath });
      if (!r.external && /\.m?js$/.test(r.path)) riders.add(r.path);
      return r;
    });
    b.onLoad({ filter: /\.(ts|m?js)$/ }, (args) =>
      riders.has(args.path)
        ? {
            contents: `${readFileSync(args.path, 'utf8')}\n${lockPathImport}`,
            loader: args.path.endsWith('.ts') ? 'ts' : 'js',
            resolveDir: dirname(args.path),
          }
        : undefined,
    );
  },
};
const lockPathImport = `import ${JSON.stringify(join(root, LOCK_PATH))};\n`;

/**
 * esbuild's options for the layer's JavaScript, written into `outDir`: the package's entry points and chunks,
 * built for the Lambda runtime (TARGET) and minified, with its dependencies inlined (all but LAYER_EXTERNALS), so
 * that a cold start reads a few files instead of a package tree (ioredis alone is 57 files as published). What a
 * path loads only when asked for stays behind a dynamic import, in a chunk of its own: ioredis (the TCP
 * transport, loaded when a TCP store is created), @upstash/redis with oncely's requester (a REST store),
 * JMESPath, the SSM client. ioredis's `debug` is a 1 KiB stand-in (layerDebug). ioredis and its dependencies are CommonJS: the `require` banner gives each file of
 * the ES module bundle the `require` they call.
 *
 * No source maps: the functions run with --enable-source-maps, which reads and parses the map of every module
 * at load (the bundle's would add its inlined dependencies' maps to every cold start), and a map could only
 * name sources the layer does not carry. Stack frames in the layer keep their function names (keepNames).
 */
export function layerBuildOptions(outDir: string): BuildOptions {
  return {
    ...packageBuildOptions(outDir),
    packages: undefined,
    external: [...LAYER_EXTERNALS],
    target: TARGET,
    minify: true,
    sourcemap: false,
    banner: { js: REQUIRE_BANNER },
    legalComments: 'none',
    metafile: true,
    plugins: [ioredisNamedExports, layerDebug, lockPath],
    // lockPath's imports are dropped on purpose (the package is side-effect free): esbuild says so for each.
    logOverride: { 'ignored-bare-import': 'silent' },
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
 * The licences of the packages a bundle inlined (every `node_modules/<package>` among the metafile's inputs),
 * one after another: their MIT and Apache notices must travel with the code they cover.
 */
export function thirdPartyLicenses(metafile: Metafile): string {
  const packages = new Set<string>();
  for (const input of Object.keys(metafile.inputs)) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) packages.add(m[1]!);
  }
  return [...packages]
    .sort()
    .map((dir) => {
      const manifest = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as {
        name: string;
        version: string;
        license?: string;
      };
      const file = readdirSync(join(root, dir)).find((f) => /^licen[cs]e/i.test(f));
      const text = file ? readFileSync(join(root, dir, file), 'utf8').trim() : `License: ${manifest.license}`;
      return `${manifest.name} ${manifest.version}\n\n${text}\n`;
    })
    .join(`\n${'-'.repeat(80)}\n\n`);
}

/** A free `require` in minified code: not a property (`.require`), not inside a word or a quoted name. */
const FREE_REQUIRE = /(?<![.\w$"'`])require(?![\s\w$"'`])/;

/**
 * Takes the `require` banner (REQUIRE_BANNER) out of every layer file of `dir` whose code never names
 * `require`: esbuild writes it into every file, and each one's createRequire builds a CommonJS module object
 * at import, on every file of the cold path. ioredis's `require()`s go through esbuild's `__require`
 * helper, in the one chunk of esbuild's runtime helpers, which keeps it.
 */
export function requireBannerWhereUsed(dir: string): void {
  for (const f of listFiles(dir)) {
    if (!f.path.endsWith('.js')) continue;
    const file = join(dir, f.path);
    const code = readFileSync(file, 'utf8');
    if (!code.startsWith(REQUIRE_BANNER)) continue;
    const rest = code.slice(REQUIRE_BANNER.length);
    if (!FREE_REQUIRE.test(rest)) writeFileSync(file, rest.replace(/^\n/, ''));
  }
}

/**
 * Builds the layer into `dir` (emptied first; default dist/layer): the packed package unpacked at
 * nodejs/node_modules/oncely, its JavaScript rebuilt as the layer's bundle (layerBuildOptions) with the
 * inlined packages' licences next to it. Returns every file written; `metafile` (bench/bundles.ts) receives
 * esbuild's account of which sources went into which file.
 */
export async function buildLayer(
  dir = layerDir,
  { metafile }: { metafile?: (m: Metafile) => void } = {},
): Promise<BuiltFile[]> {
  rmSync(dir, { recursive: true, force: true });
  const packDir = mkdtempSync(join(tmpdir(), 'oncely-layer-'));
  try {
    const packed = await packPackage(packDir);
    const target = join(dir, layerPackagePath);
    mkdirSync(target, { recursive: true });
    await run('tar', ['-xzf', packed.tarball, '--strip-components=1', '-C', target]);
    // The package's readable JavaScript, its maps and sources out; its declarations (not their maps, which
    // name the sources) stay.
    rmSync(join(target, 'src'), { recursive: true, force: true });
    for (const f of listFiles(join(target, 'dist'))) {
      if (!/\.d\.ts$/.test(f.path)) rmSync(join(target, 'dist', f.path));
    }
    const result = await build(layerBuildOptions(join(target, 'dist')));
    requireBannerWhereUsed(join(target, 'dist'));
    // oncely/locks and oncely/ioredis hold their chunks' code rather than re-export it (one file each).
    const js = listFiles(join(target, 'dist')).filter((f) => f.path.endsWith('.js'));
    foldEntryStubs(
      join(target, 'dist'),
      Object.keys(PACKAGE_ENTRIES).map((e) => `${e}.js`),
      js.map((f) => f.path),
    );
    writeFileSync(join(target, 'THIRD-PARTY-LICENSES.txt'), thirdPartyLicenses(result.metafile!));
    // Its dependencies are inside the bundle: nothing for Node or a reader to look for.
    const manifestFile = join(target, 'package.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as Record<string, unknown>;
    delete manifest.dependencies;
    writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
    metafile?.(result.metafile!);
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
    files.push(...under(layerDir, await buildLayer()));
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
