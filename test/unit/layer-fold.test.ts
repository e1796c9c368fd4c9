/**
 * scripts/layer-fold.ts: a stub entry point (imports and one export) takes its chunk's code, the other files
 * import that code from the entry, and the module graph keeps one instance of everything. On a small layer
 * written by hand in esbuild's minified shape, run by Node.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { foldEntryStubs } from '../../scripts/layer-fold.js';

const run = promisify(execFile);
let dir: string;

function layer(files: Record<string, string>): string[] {
  dir = mkdtempSync(join(tmpdir(), 'oncely-fold-'));
  mkdirSync(join(dir, 'chunks'));
  for (const [f, code] of Object.entries(files)) writeFileSync(join(dir, f), code);
  return Object.keys(files);
}

afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('foldEntryStubs', () => {
  it('moves a stub entry’s chunk into the entry; every importer then shares the one module', async () => {
    const files = layer({
      'chunks/chunk-CORE.js':
        'var n=0;class s{}function c(){return++n}const l=()=>import("./lazy-X.js");export{s as a,c as b,l as c};',
      'chunks/lazy-X.js': 'import{a as e}from"./chunk-CORE.js";export const Lazy=e;',
      'locks.js':
        'import{a as o,b as r,c as z}from"./chunks/chunk-CORE.js";export{o as Err,r as count,z as lazy};',
      'index.js':
        'import{a as t,b as u}from"./chunks/chunk-CORE.js";export{t as Err,u as count};export const own=1;',
    });
    expect(foldEntryStubs(dir, ['locks.js', 'index.js'], files)).toEqual([
      ['locks.js', 'chunks/chunk-CORE.js'],
    ]);
    expect(existsSync(join(dir, 'chunks/chunk-CORE.js'))).toBe(false);
    expect(readFileSync(join(dir, 'index.js'), 'utf8')).toContain('from"./locks.js"');
    const program = `const l = await import(${JSON.stringify(join(dir, 'locks.js'))});
      const i = await import(${JSON.stringify(join(dir, 'index.js'))});
      const lazy = await l.lazy();
      console.log(JSON.stringify([l.Err === i.Err, lazy.Lazy === l.Err, l.count(), i.count()]));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', program]);
    expect(JSON.parse(stdout)).toEqual([true, true, 1, 2]);
  });

  it('leaves an entry with code of its own, or names from two chunks, as it was', () => {
    const own = 'import{a as o}from"./chunks/chunk-A.js";const x=o;export{x as A};';
    const two =
      'import{a as o}from"./chunks/chunk-A.js";import{a as p}from"./chunks/chunk-B.js";export{o as A,p as B};';
    const files = layer({
      'chunks/chunk-A.js': 'const a=1;export{a};',
      'chunks/chunk-B.js': 'const b=2;export{b as a};',
      'own.js': own,
      'two.js': two,
    });
    expect(foldEntryStubs(dir, ['own.js', 'two.js'], files)).toEqual([]);
    expect(readFileSync(join(dir, 'own.js'), 'utf8')).toBe(own);
    expect(readFileSync(join(dir, 'two.js'), 'utf8')).toBe(two);
  });
});
