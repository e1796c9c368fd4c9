/**
 * What each of the layer's entry points loads before a feature is used (scripts/build.ts layerBuildOptions):
 * the files its static imports reach, without following dynamic imports. `oncely/locks` must not load
 * run-once's, leader's or the operator's scripts, nor the SSM code; `oncely` must not load the run-once
 * engine until a withOnce handler is made (once/lazy.ts). The layer's bytes and cold start depend on it.
 */
import { join } from 'node:path';
import { build, type Metafile } from 'esbuild';
import { beforeAll, describe, expect, it } from 'vitest';
import { layerBuildOptions, root } from '../../scripts/build.js';

/** Never written (write: false): esbuild names its outputs under it. */
const OUT = 'dist/layer-chunks-test';
let metafile: Metafile;

/** The files that the entries (dist/<entry>.js) load through static imports, themselves included. */
function staticFiles(...entries: string[]): Set<string> {
  const outputs = metafile.outputs;
  const seen = new Set<string>();
  const walk = (file: string) => {
    if (seen.has(file) || !outputs[file]) return;
    seen.add(file);
    for (const i of outputs[file].imports) if (i.kind === 'import-statement') walk(i.path);
  };
  for (const entry of entries) walk(`${OUT}/${entry}.js`);
  return seen;
}

/** The sources in the files that `entry` (dist/<entry>.js) loads through static imports. */
function staticSources(entry: string): Set<string> {
  return new Set([...staticFiles(entry)].flatMap((f) => Object.keys(metafile.outputs[f]!.inputs)));
}

beforeAll(async () => {
  const result = await build({ ...layerBuildOptions(join(root, OUT)), write: false });
  metafile = result.metafile!;
}, 60_000);

describe('the layer loads a feature when it is used', () => {
  it('oncely/locks loads the lock and its scripts, not the other scripts or SSM', () => {
    const src = staticSources('locks');
    expect(src).toContain('layers/oncely/src/lock.ts');
    expect(src).toContain('layers/oncely/src/scripts/lock.ts');
    for (const not of [
      'scripts/once.ts',
      'scripts/leader.ts',
      'scripts/admin.ts',
      'transport/ssm.ts',
      // The REST store's code loads when a REST store is made (transport/upstash.ts): not on the TCP path.
      'transport/upstash-client.ts',
      'transport/upstash-replicas.ts',
    ])
      expect(src, not).not.toContain(`layers/oncely/src/${not}`);
  });

  it('oncely loads withOnce option checks, not the run-once engine', () => {
    const src = staticSources('index');
    expect(src).toContain('layers/oncely/src/once/options.ts');
    for (const not of [
      'once/engine.ts',
      'once/record.ts',
      'scripts/once.ts',
      'events.ts',
      'transport/ssm.ts',
    ])
      expect(src, not).not.toContain(`layers/oncely/src/${not}`);
  });

  it('the lock path is one chunk (scripts/build.ts lockPath): few files on a cold start', () => {
    // The entry and the lock path's chunk (esbuild's runtime helpers in it); the TCP path adds oncely/ioredis
    // and the TCP store's chunk (ioredis itself loads when a store is made). The built layer then folds each
    // of these stub entries into its chunk (scripts/layer-fold.ts): one file each.
    expect([...staticFiles('locks')].length).toBeLessThanOrEqual(2);
    expect([...staticFiles('locks', 'ioredis')].length).toBeLessThanOrEqual(4);
    expect([...staticFiles('index')].length).toBeLessThanOrEqual(6);
    const lockChunk = [...staticFiles('locks')].find((f) =>
      Object.keys(metafile.outputs[f]!.inputs).includes('layers/oncely/src/lock.ts'),
    )!;
    const inputs = Object.keys(metafile.outputs[lockChunk]!.inputs);
    for (const src of [
      'errors.ts',
      'lease.ts',
      'scripts/lock.ts',
      'transport/options.ts',
      'transport/from-env.ts',
    ])
      expect(inputs, src).toContain(`layers/oncely/src/${src}`);
  });

  it('ioredis comes with a debug stand-in, not debug', () => {
    const inputs = Object.keys(metafile.inputs);
    expect(inputs).toContain('scripts/layer-debug.cjs');
    expect(inputs.filter((i) => /node_modules\/(debug|supports-color|ms)\//.test(i))).toEqual([]);
  });
});
