/**
 * scripts/layer-debug.cjs, the layer's stand-in for ioredis's `debug`: the same namespaces on under the same
 * DEBUG patterns (wildcards, comma or space separated, `-name` to skip), each call one line on stderr, and
 * nothing at all without DEBUG. A fresh process per case: DEBUG is read when the module loads.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const file = fileURLToPath(new URL('../../scripts/layer-debug.cjs', import.meta.url));
const program = `
const createDebug = require(${JSON.stringify(file)});
const fns = ['ioredis:redis', 'ioredis:connection', 'other'].map((ns) => createDebug.default(ns));
fns.forEach((fn, i) => fn('call %d of %s', i, fn.namespace, { a: 1 }));
process.stdout.write(JSON.stringify(fns.map((fn) => fn.enabled)));
`;

function run(debug: string | undefined) {
  const env = { ...process.env };
  delete env.DEBUG;
  if (debug !== undefined) env.DEBUG = debug;
  const r = spawnSync(process.execPath, ['-e', program], { env, encoding: 'utf8' });
  return { enabled: JSON.parse(r.stdout) as boolean[], lines: r.stderr.split('\n').filter(Boolean) };
}

describe('the layer debug stand-in', () => {
  it('is silent without DEBUG', () => {
    expect(run(undefined)).toEqual({ enabled: [false, false, false], lines: [] });
  });

  it('writes the namespaces DEBUG names, one line per call, ISO time first', () => {
    const { enabled, lines } = run('ioredis:*');
    expect(enabled).toEqual([true, true, false]);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ioredis:redis call 0 of ioredis:redis \{ a: 1 \}$/,
    );
    expect(lines[1]).toContain(' ioredis:connection call 1 of ioredis:connection');
  });

  it('skips -names and takes comma or space separated lists', () => {
    expect(run('ioredis:*,-ioredis:connection').enabled).toEqual([true, false, false]);
    expect(run('other ioredis:redis').enabled).toEqual([true, false, true]);
    expect(run('*').enabled).toEqual([true, true, true]);
  });

  it('gives ioredis what its wrapper reads: default, namespace, enabled, log, destroy', () => {
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `const d = require(${JSON.stringify(file)}); const fn = d.default('ioredis:x');
         const seen = []; fn.log = (line) => seen.push(line); fn.enabled = true; fn('hi');
         process.stdout.write(JSON.stringify([d.default === d, fn.namespace, typeof fn.destroy, seen.length, / ioredis:x hi$/.test(seen[0])]));`,
      ],
      { encoding: 'utf8', env: { ...process.env, DEBUG: '' } },
    );
    expect(JSON.parse(out)).toEqual([true, 'ioredis:x', 'function', 1, true]);
  });
});
