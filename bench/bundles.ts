/**
 * Bundle sizes and cold starts, of the layer that ships:
 *
 * - the layer is built by scripts/build.ts `buildLayer` (the package's entry points bundled with their
 *   dependencies inlined, in dist/layer's layout). Its REST path is every file a REST user loads at cold
 *   start: the entry point and its static chunks, and the REST chunks (the REST store's code, and oncely's
 *   requester with @upstash/redis); its TCP path the same without the REST chunks, plus `oncely/ioredis`
 *   and the chunk that holds ioredis. JMESPath, the SSM code and client, and the run-once engine (loaded when a withOnce
 *   handler is made), loaded only when asked for, count in neither: a lock never takes them. Each path
 *   is measured twice: through `oncely/locks` (a function that only takes locks) and through the root
 *   `oncely` (every feature);
 * - the same package as it was before @upstash/redis became its REST client (issue 14), built as the layer
 *   is (scripts/build.ts `layerBuildOptions`) but the REST transport swapped for the protocol spoken by hand
 *   (bench/before.ts), next to the layer's package. Its REST path is the "before" row;
 * - one entry per contender (bench/cold/*.ts), built as the project deploys a function (scripts/build.ts
 *   `DEPLOYED`: ESM, minified, `keepNames`, the `require` banner), the library bundled in; oncely's layer
 *   entries import `oncely` (or its subpaths) from the built layer instead, as deployed functions do.
 *
 * A cold start is a fresh `node bench/cold/runner.mjs <bundle>`: import the bundle, then complete one lock.
 */
import { spawn } from 'node:child_process';
import { cpSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build, type Metafile, type Plugin } from 'esbuild';
import {
  buildLayer,
  DEPLOYED,
  layerBuildOptions,
  layerPackagePath,
  packageDir,
  REQUIRE_BANNER,
} from '../scripts/build.js';
import { restBeforeFile } from './before.js';
import type { ColdConfig } from './cold/types.js';
import { median } from './stats.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** For the "before" package: the REST transport replaced by the hand-written protocol it used to be. */
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
  { id: 'oncely-rest', label: 'oncely REST (layer, oncely/locks)', file: 'oncely-rest', layer: 'rest' },
  {
    id: 'oncely-rest-index',
    label: 'oncely REST (layer, whole index)',
    file: 'oncely-rest-index',
    layer: 'rest',
  },
  {
    id: 'oncely-rest-before',
    label: 'oncely REST before @upstash/redis (layer, whole index, hand-written protocol)',
    file: 'oncely-rest-index',
    layer: 'rest-before',
  },
  { id: 'oncely-tcp', label: 'oncely TCP (layer, oncely/locks)', file: 'oncely-tcp', layer: 'tcp' },
  {
    id: 'oncely-tcp-index',
    label: 'oncely TCP (layer, whole index)',
    file: 'oncely-tcp-index',
    layer: 'tcp',
  },
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
  /** Bytes a process loads for the contender (the layer path plus the tiny entry, for oncely). */
  bytes: number;
  gzipBytes: number;
  /** Bytes by package (`oncely` is the layer's own package). */
  byPackage: Record<string, number>;
  /** The file the cold start imports. */
  bundle: string;
}

const packageOf = (input: string): string => {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
  if (m) return m[1] === 'oncely-before' ? 'oncely' : m[1]!;
  if (input.startsWith('oncely-ioredis:') || input === 'scripts/layer-debug.cjs') return 'oncely';
  if (input.includes('layers/oncely/src')) return 'oncely';
  return 'entry';
};

function addInputs(into: Record<string, number>, output: Metafile['outputs'][string]): void {
  for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
    const pkg = packageOf(input);
    into[pkg] = (into[pkg] ?? 0) + bytesInOutput;
  }
}

/**
 * The files of the layer a cold start of `entry` (an entry bundle importing the layer) loads, as Node would
 * find them: static imports and requires always, a dynamic import only where `follow(path)` says this path
 * takes it. esbuild walks the graph (reading, not writing), resolving with Node's conditions.
 */
async function loadedFiles(entry: string, follow: (path: string) => boolean): Promise<string[]> {
  const { metafile } = await build({
    absWorkingDir: root,
    entryPoints: [entry],
    bundle: true,
    write: false,
    metafile: true,
    platform: 'node',
    format: 'esm',
    conditions: [],
    mainFields: ['main'],
    logLevel: 'error',
  });
  const inputs = metafile.inputs;
  const seen = new Set<string>();
  const walk = (path: string) => {
    if (seen.has(path) || !inputs[path]) return;
    seen.add(path);
    for (const imp of inputs[path].imports) {
      if (imp.external) continue;
      if (imp.kind === 'dynamic-import' && !follow(imp.path)) continue;
      walk(imp.path);
    }
  };
  walk(relative(root, entry));
  return [...seen].filter((p) => p !== relative(root, entry));
}

const fileBytes = (path: string) => statSync(resolve(root, path)).size;
const gzipBytes = (paths: readonly string[]) =>
  paths.reduce((sum, p) => sum + gzipSync(readFileSync(resolve(root, p))).length, 0);

/** Builds the layer and every entry into `outDir`; returns one size per entry. */
export async function buildBundles(outDir: string): Promise<BundleSize[]> {
  const modules = join(outDir, 'layer', 'nodejs', 'node_modules');
  /** The layer's files that hold each client, found by what esbuild put in them, and their bytes by package. */
  const holding = { rest: new Set<string>(), tcp: new Set<string>() };
  const layerParts = new Map<string, Record<string, number>>();
  const sortOutputs = (m: Metafile) => {
    for (const [file, output] of Object.entries(m.outputs)) {
      const parts: Record<string, number> = {};
      addInputs(parts, output);
      layerParts.set(file, parts);
      const inputs = Object.keys(output.inputs);
      // The REST store's code (upstash-client.ts) is a chunk of its own, loaded beside the client's.
      if (
        inputs.some(
          (i) => i.includes('node_modules/@upstash/redis/') || i.endsWith('transport/upstash-client.ts'),
        )
      )
        holding.rest.add(file);
      if (inputs.some((i) => i.includes('node_modules/ioredis/'))) holding.tcp.add(file);
    }
  };
  await buildLayer(join(outDir, 'layer'), { metafile: sortOutputs });
  // The "before" row only where its old transport still builds against today's source (bench/before.ts):
  // otherwise it is left out, as before.ts leaves out what git cannot give it.
  let before = false;
  const beforeFile = restBeforeFile();
  if ('file' in beforeFile) {
    const dir = join(modules, 'oncely-before');
    try {
      const result = await build({
        ...layerBuildOptions(join(dir, 'dist')),
        plugins: [restBefore(beforeFile.file)],
        logLevel: 'silent',
      });
      sortOutputs(result.metafile!);
      cpSync(join(packageDir, 'package.json'), join(dir, 'package.json'));
      before = true;
    } catch (err) {
      console.error(`bundles: the "before" layer is left out: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  const packages = {
    rest: layerPackagePath,
    tcp: layerPackagePath,
    'rest-before': 'nodejs/node_modules/oncely-before',
  };
  /** Which dynamic imports each path takes: the REST client's chunk, or ioredis's. */
  const follows = {
    rest: (p: string) => holding.rest.has(p),
    tcp: (p: string) => holding.tcp.has(p),
    'rest-before': () => false,
  };
  const layerAlias = (pkg: string): Plugin => ({
    name: 'bench-layer',
    setup(b) {
      b.onResolve({ filter: /^oncely(\/ioredis|\/locks)?$/ }, (args) => ({
        path: relative(
          join(outDir, 'entries'),
          join(outDir, 'layer', pkg, 'dist', `${args.path === 'oncely' ? 'index' : args.path.slice(7)}.js`),
        ),
        external: true,
      }));
    },
  });
  const sizes: BundleSize[] = [];
  for (const entry of ENTRIES.filter((e) => e.layer !== 'rest-before' || before)) {
    const outfile = join(outDir, 'entries', `${entry.id}.mjs`);
    const result = await build({
      ...DEPLOYED,
      absWorkingDir: root,
      entryPoints: [join(root, 'bench', 'cold', `${entry.file}.ts`)],
      outfile,
      banner: { js: REQUIRE_BANNER },
      metafile: true,
      logLevel: 'warning',
      plugins: entry.layer ? [layerAlias(packages[entry.layer])] : [],
    });
    const own = relative(root, outfile);
    const layerFiles = entry.layer ? await loadedFiles(outfile, follows[entry.layer]) : [];
    const files = [own, ...layerFiles];
    const byPackage: Record<string, number> = {};
    addInputs(byPackage, result.metafile!.outputs[own]!);
    for (const f of layerFiles) {
      // A layer file's bytes by the package its code came from; what esbuild adds around it (the banner,
      // imports and exports between chunks) counts as oncely's.
      const parts = layerParts.get(f) ?? {};
      const glue = fileBytes(f) - Object.values(parts).reduce((sum, n) => sum + n, 0);
      for (const [pkg, n] of Object.entries({ ...parts, oncely: (parts.oncely ?? 0) + glue })) {
        byPackage[pkg] = (byPackage[pkg] ?? 0) + n;
      }
    }
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
