/**
 * Folds each of the layer's stub entry points into the chunk it re-exports (scripts/build.ts buildLayer).
 *
 * With the lock path in one chunk, `oncely/locks` is a stub (imports from that chunk, exports under the public
 * names), and so is `oncely/ioredis` over the TCP store's chunk: one more file each for a cold start to
 * resolve, read, compile and link, for a line of code. Here the chunk's code moves into the entry's file,
 * which exports both the chunk's names (for the other files, whose imports of the chunk now name the entry
 * file) and the entry's public names; the chunk's file is removed. The module graph keeps its shape: one
 * module per former chunk, so every class and every piece of state is still one object for every entry.
 *
 * Only the simplest case is folded, and anything else is left as esbuild wrote it: an entry whose code is
 * nothing but imports and one export, all of its named imports from one chunk in `chunks/`, no name exported
 * twice.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

/** `import{…}from"…";`, `import"…";`, one `export{…};`, nothing else: an entry that only re-exports. */
const STUB = /^(?:import(?:\{[^}]*\}from)?"[^"]+";)*export\{[^}]*\};?\s*$/;
/** The chunk's own export list, its last statement. */
const TAIL_EXPORT = /export\{([^}]*)\};?\s*$/;
/** A relative module path in an import, an export from, or a dynamic import. */
const MODULE_PATH = /((?<![.\w$])(?:from|import)\s*\(?\s*)"(\.{1,2}\/[^"]+\.js)"/g;

/** `a as b,c` → [['a','b'],['c','c']]: [local, exported] pairs. */
function specifiers(list: string): [string, string][] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const [local, exported] = s.split(/\s+as\s+/);
      return [local!, exported ?? local!];
    });
}

/** Rewrites the relative module paths of `code`, read from `fromDir`, through `map` (absolute → absolute). */
function rewritePaths(code: string, fromDir: string, toDir: string, map: (abs: string) => string): string {
  return code.replace(MODULE_PATH, (_m, lead: string, path: string) => {
    let rel = relative(toDir, map(join(fromDir, path)));
    if (!rel.startsWith('.')) rel = `./${rel}`;
    return `${lead}"${rel}"`;
  });
}

/**
 * Folds the stub entries among `entries` (paths of `dir`, `locks.js`) into their chunks. `files` lists every
 * JavaScript file of `dir` (relative), to point their imports of a folded chunk at its entry. Returns the
 * folded pairs (entry, chunk).
 */
export function foldEntryStubs(
  dir: string,
  entries: readonly string[],
  files: readonly string[],
): [string, string][] {
  const folded: [string, string][] = [];
  const moved = new Map<string, string>(); // chunk (absolute) → entry (absolute)
  for (const entry of entries) {
    const entryFile = join(dir, entry);
    const code = readFileSync(entryFile, 'utf8');
    if (!STUB.test(code)) continue;
    const named = [...code.matchAll(/import\{([^}]*)\}from"([^"]+)";/g)];
    const sources = new Set(named.map((m) => m[2]!));
    if (sources.size !== 1) continue;
    const chunkFile = join(dirname(entryFile), [...sources][0]!);
    if (!relative(dir, chunkFile).startsWith('chunks/') || moved.has(chunkFile)) continue;
    const chunk = readFileSync(chunkFile, 'utf8');
    const tail = TAIL_EXPORT.exec(chunk);
    if (!tail) continue;
    // chunk export name → chunk local; entry local → chunk export name; public name → entry local.
    const chunkLocal = new Map(specifiers(tail[1]!).map(([local, exported]) => [exported, local]));
    const imported = new Map(
      named.flatMap((m) => specifiers(m[1]!)).map(([theirs, local]) => [local, theirs]),
    );
    const exported = specifiers(/export\{([^}]*)\}/.exec(code)![1]!);
    const publicNames = exported.map(([local, name]) => [chunkLocal.get(imported.get(local) ?? ''), name]);
    if (publicNames.some(([local, name]) => !local || chunkLocal.has(name!))) continue;
    const sideEffects = [...code.matchAll(/import"([^"]+)";/g)]
      .map((m) => m[1]!)
      .filter((p) => join(dirname(entryFile), p) !== chunkFile)
      .map((p) => `import"${p}";`)
      .join('');
    const body = rewritePaths(chunk.slice(0, tail.index), dirname(chunkFile), dirname(entryFile), (p) => p);
    const exports = [...specifiers(tail[1]!), ...publicNames].map(([l, n]) => (l === n ? l : `${l} as ${n}`));
    writeFileSync(entryFile, `${body}${sideEffects}export{${exports.join(',')}};\n`);
    rmSync(chunkFile);
    moved.set(chunkFile, entryFile);
    folded.push([entry, relative(dir, chunkFile)]);
  }
  if (moved.size === 0) return folded;
  for (const f of files) {
    const file = join(dir, f);
    if ([...moved.keys()].includes(file)) continue;
    const code = readFileSync(file, 'utf8');
    const next = rewritePaths(code, dirname(file), dirname(file), (p) => moved.get(p) ?? p);
    if (next !== code) writeFileSync(file, next);
  }
  return folded;
}
