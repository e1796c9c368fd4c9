/**
 * Bundle sizes and cold starts. Everything is built here with esbuild, minified, with the settings the
 * project deploys with (scripts/build.ts: ESM, `keepNames`, a `require` banner for bundled CommonJS):
 *
 * - the layer from layers/oncely/src/index.ts with code splitting; the REST client (@upstash/redis and
 *   oncely's requester), ioredis and JMESPath are chunks of their own, loaded by dynamic import. Its REST
 *   path is every file a REST user loads at cold start (the index, its static chunks and the REST client
 *   chunk), its TCP path the index and its static chunks plus the ioredis chunk; JMESPath, loaded only for a
 *   `{ jmespath }` key spec, counts in neither;
 * - the same layer as it was before @upstash/redis became its REST client (issue 14): the REST transport
 *   swapped for the protocol spoken by hand (bench/before.ts), no client chunk. Its REST path is the
 *   "before" row;
 * - one entry per contender (bench/cold/*.ts), the library bundled in as a function would bundle it; oncely's
 *   entries import `oncely` from the built layer instead, as deployed functions do.
 *
 * A cold start is a fresh `node bench/cold/runner.mjs <bundle>`: import the bundle, then complete one lock.
 */
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build, type Metafile, type Plugin } from 'esbuild';
import { TARGET } from '../scripts/build.js';
import { restBeforeFile } from './before.js';
import type { ColdConfig } from './cold/types.js';
import { median } from './stats.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const REQUIRE_BANNER =
  "import { createRequire as __benchCreateRequire } from 'node:module'; " +
  'const require = __benchCreateRequire(import.meta.url);';

/** As scripts/build.ts: the transports' dynamic-import targets as ES modules of their own, one chunk each. */
const SHIMS: Record<string, { name: string; contents: string }> = {
  ioredis: {
    name: 'ioredis',
    contents: "import * as ioredis from 'ioredis';\nexport const { Redis, Cluster } = ioredis;",
  },
};
const clientShims: Plugin = {
  name: 'bench-client-shims',
  setup(b) {
    b.onResolve({ filter: /^ioredis$/ }, (args) =>
      args.namespace === 'bench-shim' ? undefined : { path: SHIMS[args.path]!.name, namespace: 'bench-shim' },
    );
    b.onLoad({ filter: /.*/, namespace: 'bench-shim' }, (args) => ({
      contents: Object.values(SHIMS).find((s) => s.name === args.path)!.contents,
      resolveDir: root,
      loader: 'js',
    }));
  },
};

/** For the "before" layer: the REST transport replaced by the hand-written protocol it used to be. */
const restBefore = (file: string): Plugin => ({
  name: 'bench-rest-before',
  setup(b) {
    b.onResolve({ filter: /^\.\/(transport\/)?upstash\.js$/ }, (args) =>
      args.importer.includes('layers/oncely/src') ? { path: file } : undefined,
    );
  },
});

export interface Entry {
  id: string;
  label: string;
  /** bench/cold/<file>.ts */
  file: string;
  /** Uses the layer (oncely) rather than bundling a library: which path of which build. */
  layer?: 'rest' | 'tcp' | 'rest-before';
}

export const ENTRIES: readonly Entry[] = [
  { id: 'oncely-rest', label: 'oncely REST (layer, REST path)', file: 'oncely-rest', layer: 'rest' },
  {
    id: 'oncely-rest-before',
    label: 'oncely REST before @upstash/redis (layer, hand-written protocol)',
    file: 'oncely-rest',
    layer: 'rest-before',
  },
  { id: 'oncely-tcp', label: 'oncely TCP (layer, TCP path)', file: 'oncely-tcp', layer: 'tcp' },
  { id: 'oncely-rest-entry', label: 'oncely REST lock entry', file: 'oncely-rest' },
  { id: 'oncely-tcp-entry', label: 'oncely TCP lock entry', file: 'oncely-tcp' },
  { id: 'upstash-lock', label: '@upstash/lock + @upstash/redis', file: 'upstash-lock' },
  { id: 'upstash-redis', label: '@upstash/redis alone', file: 'upstash-redis' },
  { id: 'ioredis', label: 'ioredis alone', file: 'ioredis' },
  { id: 'redlock', label: 'redlock + ioredis', file: 'redlock' },
  { id: 'powertools', label: 'Powertools idempotency + @redis/client', file: 'powertools' },
];

export interface BundleSize {
  id: string;
  label: string;
  /** Minified bytes a process loads for the contender (the layer path plus the tiny entry, for oncely). */
  bytes: number;
  gzipBytes: number;
  /** Bytes by package (`oncely` is the layer's own source). */
  byPackage: Record<string, number>;
  /** The file the cold start imports. */
  bundle: string;
}

const packageOf = (input: string): string => {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
  if (m) return m[1]!;
  if (input.includes('layers/oncely/src')) return 'oncely';
  if (input.startsWith('bench-shim:') || input.includes('oncely-bench/rest-before')) return 'oncely';
  return 'entry';
};

function addInputs(into: Record<string, number>, output: Metafile['outputs'][string]): void {
  for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
    const pkg = packageOf(input);
    into[pkg] = (into[pkg] ?? 0) + bytesInOutput;
  }
}

/**
 * Output files a cold start loads from `start`: static imports always, a dynamic import only when `follow`
 * says that path is loaded on this path (the TCP client chunk for the TCP path). Chunks loaded only on demand
 * (JMESPath, for a `{ jmespath }` key spec) are not counted.
 */
function closure(meta: Metafile, start: string, follow: (path: string) => boolean): string[] {
  const seen = new Set<string>();
  const walk = (path: string) => {
    if (seen.has(path)) return;
    seen.add(path);
    for (const imp of meta.outputs[path]?.imports ?? []) {
      if (imp.external) continue;
      if (imp.kind === 'dynamic-import' && !follow(imp.path)) continue;
      walk(imp.path);
    }
  };
  walk(start);
  return [...seen];
}

const fileBytes = (path: string) => statSync(resolve(root, path)).size;
const gzipBytes = (paths: readonly string[]) =>
  paths.reduce((sum, p) => sum + gzipSync(readFileSync(resolve(root, p))).length, 0);

/** Builds the layer and every entry into `outDir`; returns one size per entry. */
export async function buildBundles(outDir: string): Promise<BundleSize[]> {
  const common = {
    absWorkingDir: root,
    bundle: true,
    format: 'esm' as const,
    platform: 'node' as const,
    target: TARGET,
    minify: true,
    keepNames: true,
    banner: { js: REQUIRE_BANNER },
    metafile: true,
    logLevel: 'warning' as const,
    outExtension: { '.js': '.mjs' },
  };
  const buildLayer = (dir: string, plugins: Plugin[]) =>
    build({
      ...common,
      // The package's root and its TCP entry point (`oncely/ioredis`: redisStore, clusterStore).
      entryPoints: { index: 'layers/oncely/src/index.ts', ioredis: 'layers/oncely/src/ioredis.ts' },
      outdir: dir,
      splitting: true,
      chunkNames: 'chunks/[name]-[hash]',
      plugins,
    });
  const layerDir = join(outDir, 'layer');
  const beforeDir = join(outDir, 'layer-before');
  const beforeFile = restBeforeFile();
  const layer = await buildLayer(layerDir, [clientShims]);
  const before =
    'file' in beforeFile ? await buildLayer(beforeDir, [clientShims, restBefore(beforeFile.file)]) : layer;
  const layerIndex = relative(root, join(layerDir, 'index.mjs'));
  const beforeIndex = relative(root, join(beforeDir, 'index.mjs'));
  const isChunk = (name: string) => (p: string) => p.includes(`/chunks/${name}-`);
  const layers = {
    rest: {
      dir: layerDir,
      meta: layer.metafile!,
      path: closure(layer.metafile!, layerIndex, isChunk('upstash-http')),
    },
    tcp: {
      dir: layerDir,
      meta: layer.metafile!,
      // A TCP function imports both the root and oncely/ioredis.
      path: [
        ...new Set([
          ...closure(layer.metafile!, layerIndex, isChunk('ioredis')),
          ...closure(layer.metafile!, relative(root, join(layerDir, 'ioredis.mjs')), isChunk('ioredis')),
        ]),
      ],
    },
    'rest-before': {
      dir: beforeDir,
      meta: before.metafile!,
      path: closure(before.metafile!, beforeIndex, () => false),
    },
  };

  const layerAlias = (dir: string): Plugin => ({
    name: 'bench-layer',
    setup(b) {
      b.onResolve({ filter: /^oncely(\/ioredis)?$/ }, (args) => ({
        path: relative(
          join(outDir, 'entries'),
          join(dir, args.path === 'oncely' ? 'index.mjs' : 'ioredis.mjs'),
        ),
        external: true,
      }));
    },
  });
  const sizes: BundleSize[] = [];
  for (const entry of ENTRIES.filter((e) => e.layer !== 'rest-before' || 'file' in beforeFile)) {
    const outfile = join(outDir, 'entries', `${entry.id}.mjs`);
    const result = await build({
      ...common,
      entryPoints: [join(root, 'bench', 'cold', `${entry.file}.ts`)],
      outfile,
      plugins: entry.layer ? [layerAlias(layers[entry.layer].dir)] : [],
    });
    const own = relative(root, outfile);
    const used = entry.layer ? layers[entry.layer] : undefined;
    const files = [own, ...(used?.path ?? [])];
    const byPackage: Record<string, number> = {};
    addInputs(byPackage, result.metafile!.outputs[own]!);
    for (const f of used?.path ?? []) addInputs(byPackage, used!.meta.outputs[f]!);
    sizes.push({
      id: entry.id,
      label: entry.label,
      bytes: files.reduce((sum, f) => sum + fileBytes(f), 0),
      gzipBytes: gzipBytes(files),
      byPackage,
      bundle: outfile,
    });
  }
  return sizes;
}

// ------------------------------------------------------------------------------------------- cold starts

export interface ColdSample {
  /** Node's own start-up, ms (the same for every bundle). */
  boot: number;
  /** Importing the bundle, ms. */
  load: number;
  /** Creating the client and completing the first lock, ms. */
  first: number;
}

export interface ColdResult {
  id: string;
  label: string;
  /** Per process: load + first (ms). */
  samples: number[];
  load: number;
  first: number;
  total: number;
  boot: number;
}

function runOnce(bundle: string, cfg: ColdConfig): Promise<ColdSample> {
  const runner = join(root, 'bench', 'cold', 'runner.mjs');
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [runner, bundle, JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`cold start of ${bundle} exited ${code}: ${err.slice(-2000)}`));
      else resolveRun(JSON.parse(out) as ColdSample);
    });
  });
}

/** `processes` fresh processes per bundle, interleaved (a, b, c, a, b, c, …). */
export async function coldStarts(
  sizes: readonly BundleSize[],
  cfg: (i: number) => ColdConfig,
  processes: number,
): Promise<ColdResult[]> {
  const samples = new Map<string, ColdSample[]>(sizes.map((s) => [s.id, []]));
  let n = 0;
  for (let round = 0; round < processes; round++) {
    for (const s of sizes) samples.get(s.id)!.push(await runOnce(s.bundle, cfg(n++)));
  }
  return sizes.map((s) => {
    const xs = samples.get(s.id)!;
    return {
      id: s.id,
      label: s.label,
      samples: xs.map((x) => x.load + x.first),
      load: median(xs.map((x) => x.load)),
      first: median(xs.map((x) => x.first)),
      total: median(xs.map((x) => x.load + x.first)),
      boot: median(xs.map((x) => x.boot)),
    };
  });
}
