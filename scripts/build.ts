/**
 * `npm run build`: the Lambda layer and the functions, as they are deployed.
 *
 *   dist/layer/nodejs/node_modules/oncely/   the layer (`layers.oncely.path` in serverless.yml): the layer
 *                                           source bundled, minified, with source maps; ESM with code
 *                                           splitting, so `ioredis` and the REST client
 *                                           (`@upstash/redis` with oncely's requester) are separate
 *                                           chunks, each loaded on first use by its transport
 *   dist/functions/<name>/handler.mjs       each function bundled alone, `oncely` external (it comes from the
 *                                           layer at /opt/nodejs/node_modules), the AWS SDK external (it comes
 *                                           with the runtime)
 *
 * `serverless package` / `deploy` bundle the functions again through serverless-esbuild with the same
 * settings (serverless.yml); the layer is only built here, so run `npm run build` first.
 *
 *   npm run build                 both, then a size table
 *   npm run build -- --layer      the layer only
 */
import { readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const distDir = join(root, 'dist');
export const layerDir = join(distDir, 'layer');
/** Where the layer's package lands inside the layer zip (and under /opt on Lambda). */
export const layerPackagePath = 'nodejs/node_modules/oncely';
export const functionsDistDir = join(distDir, 'functions');

/** The one Node version (matches `provider.runtime: nodejs24.x` in serverless.yml). */
const TARGET = 'node24';
/** Bundled CommonJS code (ioredis) calls require(); an ESM bundle has none of its own. */
const REQUIRE_BANNER =
  "import { createRequire as __oncelyCreateRequire } from 'node:module'; const require = __oncelyCreateRequire(import.meta.url);";
/** What the layer and every function are built with, as deployed. */
const DEPLOYED = {
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

/**
 * The targets of the transports' dynamic imports, as ES modules of their own. `import('ioredis')` of a CommonJS
 * package across a split point would yield `{ default: module.exports }`, not the named exports, so its shim
 * re-exports the names the transport uses with esbuild's CommonJS interop in the same chunk, and names the
 * chunk (`chunks/ioredis-<hash>.mjs`). The REST transport's client needs no shim: it imports
 * transport/upstash-http.ts, an ES module that imports `@upstash/redis` (ESM), which becomes
 * `chunks/upstash-http-<hash>.mjs`.
 */
const SHIMS: Record<string, { name: string; contents: string }> = {
  ioredis: {
    name: 'ioredis',
    contents: "import * as ioredis from 'ioredis';\nexport const { Redis, Cluster } = ioredis;",
  },
};

const clientShims: Plugin = {
  name: 'oncely-client-shims',
  setup(b) {
    b.onResolve({ filter: /^ioredis$/ }, (args) =>
      args.namespace === 'oncely-shim'
        ? undefined
        : { path: SHIMS[args.path]!.name, namespace: 'oncely-shim' },
    );
    b.onLoad({ filter: /.*/, namespace: 'oncely-shim' }, (args) => ({
      contents: Object.values(SHIMS).find((s) => s.name === args.path)!.contents,
      resolveDir: root,
      loader: 'js',
    }));
  },
};

export interface BuiltFile {
  /** Path relative to the output directory (`nodejs/node_modules/oncely/index.mjs`, `webhook/handler.mjs`). */
  readonly path: string;
  readonly bytes: number;
}

/** Builds the layer into `dir` (emptied first; default dist/layer). Returns every file written. */
export async function buildLayer(dir = layerDir): Promise<BuiltFile[]> {
  const outDir = join(dir, layerPackagePath);
  rmSync(dir, { recursive: true, force: true });
  const source = JSON.parse(readFileSync(join(root, 'layers/oncely/package.json'), 'utf8')) as {
    name: string;
    version: string;
    description: string;
  };
  await build({
    absWorkingDir: root,
    entryPoints: { index: 'layers/oncely/src/index.ts' },
    outdir: outDir,
    ...DEPLOYED,
    splitting: true,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    // The SSM client that fromEnvAsync() loads on demand comes with the Lambda runtime.
    external: ['@aws-sdk/*'],
    banner: { js: REQUIRE_BANNER },
    legalComments: 'linked',
    plugins: [clientShims],
    logLevel: 'warning',
  });
  const manifest = {
    name: source.name,
    version: source.version,
    description: source.description,
    type: 'module',
    main: './index.mjs',
    exports: { '.': './index.mjs' },
    sideEffects: false,
  };
  writeFileSync(join(outDir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
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
  const layerOnly = process.argv.includes('--layer');
  const under = (dir: string, files: BuiltFile[]) =>
    files.map((f) => ({ ...f, path: join(relative(root, dir), f.path) }));
  const files = [
    ...under(layerDir, await buildLayer()),
    ...(layerOnly ? [] : under(functionsDistDir, await buildFunctions())),
  ];
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
