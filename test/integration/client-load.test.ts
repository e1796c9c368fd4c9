// When a store loads its client: a TCP store created from options starts loading ioredis at once, before any
// call, so that a store created at module scope pays for it in Lambda's init phase rather than in the first
// invocation (the REST store does the same with @upstash/redis). In a fresh process each: importing oncely
// loads no ioredis, creating the store does, and a REST store never does.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const src = (file: string) =>
  JSON.stringify(fileURLToPath(new URL(`../../layers/oncely/src/${file}`, import.meta.url)));

/** Creates one store and reports whether ioredis was loaded before, and whether it is once `settled` holds. */
const PROGRAM = `import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { clusterStore, redisStore } = await import(${src('ioredis.ts')});
const { upstashStore } = await import(${src('index.ts')});
const loaded = () => Object.keys(require.cache).some((f) => /[\\\\/]ioredis[\\\\/]built[\\\\/]/.test(f));
const before = loaded();
const kind = process.env.STORE_KIND;
let store;
let settled = loaded;
if (kind === 'redis') store = redisStore({ host: '127.0.0.1', port: 1 });
if (kind === 'cluster') store = clusterStore({ nodes: [{ host: '127.0.0.1', port: 1 }] });
if (kind === 'rest') {
  store = upstashStore({ url: 'http://127.0.0.1:1', token: 'not-a-secret' });
  // The REST client chunk loads at creation too: once @upstash/redis is in, it is settled either way.
  const { Redis } = await import('@upstash/redis');
  settled = () => typeof Redis === 'function';
}
const deadline = Date.now() + 20_000;
while (!settled() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
console.log(JSON.stringify({ before, after: loaded() }));
process.exit(0);
`;

async function loadsIoredis(
  kind: 'redis' | 'cluster' | 'rest',
): Promise<{ before: boolean; after: boolean }> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', PROGRAM], {
    cwd: root,
    env: { ...process.env, STORE_KIND: kind },
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as { before: boolean; after: boolean };
}

describe('a TCP store loads ioredis when it is created, before any call', () => {
  it.each(['redis', 'cluster'] as const)('%sStore from options', { timeout: 90_000 }, async (kind) => {
    expect(await loadsIoredis(kind)).toEqual({ before: false, after: true });
  });

  it('an upstashStore never loads ioredis', { timeout: 90_000 }, async () => {
    expect(await loadsIoredis('rest')).toEqual({ before: false, after: false });
  });
});
