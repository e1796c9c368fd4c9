/**
 * The REST transport as it was before @upstash/redis became the one REST client (issue 14): the REST protocol
 * spoken by hand over node:http. It is no longer in the tree; the bench reads it from git at BEFORE_COMMIT
 * (the last commit that had it) into node_modules/.cache, with its imports pointed at today's layer source,
 * so that the layer's REST path can be measured against it: pair latency (the "hand-written protocol"
 * REST contender, bench/locks.ts) and bytes and cold start (the "before" layer, bench/bundles.ts).
 * Without git history (or if today's helpers no longer fit it) those rows are left out, with the reason.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Store } from '../layers/oncely/src/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
export const BEFORE_COMMIT = 'c316edacbd2e70fbe436abc65df999ef8ae828c4';
const SOURCE = 'layers/oncely/src/transport/upstash.ts';

type Before = { file: string } | { skipped: string };
let cached: Before | undefined;

/** Writes the old transport to a file of its own (once per process); its path, or why it is not there. */
export function restBeforeFile(): Before {
  if (cached) return cached;
  try {
    const source = execFileSync('git', ['show', `${BEFORE_COMMIT}:${SOURCE}`], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const dir = join(root, 'node_modules', '.cache', 'oncely-bench');
    const src = relative(dir, join(root, 'layers/oncely/src'));
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'rest-before.ts');
    writeFileSync(
      file,
      source.replaceAll("from '../", `from '${src}/`).replaceAll("from './", `from '${src}/transport/`),
    );
    cached = { file };
  } catch {
    cached = {
      skipped: `the REST transport of ${BEFORE_COMMIT.slice(0, 7)} is not in this checkout's git history`,
    };
  }
  return cached;
}

/** The old `upstashStore`, or why it cannot run. */
export async function restBeforeStore(): Promise<
  ((options: { url: string; token: string }) => Store) | { skipped: string }
> {
  const before = restBeforeFile();
  if ('skipped' in before) return before;
  try {
    const mod = (await import(pathToFileURL(before.file).href)) as {
      upstashStore: (options: { url: string; token: string }) => Store;
    };
    return mod.upstashStore;
  } catch (err) {
    return { skipped: `the old REST transport no longer loads: ${(err as Error).message}` };
  }
}
