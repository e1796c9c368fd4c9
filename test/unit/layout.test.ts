/**
 * The layer's layout stays readable (issue 15): no source file over 400 lines, and the run-once adapters stay
 * thin (the state machine lives in once/engine.ts, once/run.ts and once/outcome.ts, not in them).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const src = fileURLToPath(new URL('../../layers/oncely/src', import.meta.url));
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').length - 1;
const sources = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );

it('no source file of the layer is over 400 lines', () => {
  const files = sources(src);
  expect(files.length).toBeGreaterThan(30);
  const long = files.filter((f) => lines(f) > 400).map((f) => `${relative(src, f)}: ${lines(f)}`);
  expect(long).toEqual([]);
});

it('no run-once adapter is over 120 lines', () => {
  const adapters = ['batch.ts', 'per-tick.ts', 'middy.ts', 'with-once.ts'].map((f) => join(src, 'once', f));
  const long = adapters.filter((f) => lines(f) > 120).map((f) => `${relative(src, f)}: ${lines(f)}`);
  expect(long).toEqual([]);
});
