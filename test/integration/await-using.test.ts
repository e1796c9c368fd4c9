import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLock, type Lock } from '../../layers/oncely/src/index.js';
import { startTransport, type TransportFixture } from '../support/transports.js';

/**
 * `await using` as a user's build emits it: compiled by this repo's TypeScript with this repo's tsconfig
 * (target ES2022: TypeScript's own disposal helpers) and as native syntax (target ESNext), then run on the
 * Node running the tests (CI runs them on Node 20 and 24) against a real redis-server.
 */
const source = `
export async function scoped(lock, key, inside) {
  await using lease = await lock.acquire(key, { ttlMs: 60000 });
  await inside(lease);
  return lease.fence;
}
`;

const repoOptions = ts.parseJsonConfigFileContent(
  JSON.parse(readFileSync(new URL('../../tsconfig.json', import.meta.url), 'utf8')),
  ts.sys,
  '.',
).options;

function compile(target: ts.ScriptTarget): string {
  return ts.transpileModule(source, {
    compilerOptions: { ...repoOptions, target, module: ts.ModuleKind.ESNext, noEmit: false },
  }).outputText;
}

/** Does this Node parse `await using` itself (Node 24 does; Node 20 does not)? */
function nodeParsesAwaitUsing(): boolean {
  try {
    new Function('return async () => { await using x = null; }');
    return true;
  } catch {
    return false;
  }
}

type Scoped = (
  lock: Lock,
  key: string,
  inside: (lease: { token: string }) => Promise<void>,
) => Promise<number>;

describe('await using, compiled by TypeScript', () => {
  let fx: TransportFixture;
  let lock: Lock;
  let dir: string;
  beforeAll(async () => {
    fx = await startTransport('redis');
    lock = createLock(fx.store());
    dir = mkdtempSync(join(tmpdir(), 'oncely-await-using-'));
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await fx?.stop();
  });

  async function load(target: ts.ScriptTarget, name: string): Promise<Scoped> {
    const file = join(dir, `${name}.mjs`);
    writeFileSync(file, compile(target));
    return ((await import(pathToFileURL(file).href)) as { scoped: Scoped }).scoped;
  }

  async function releasesOnExit(scoped: Scoped, label: string) {
    const key = `${label}-${process.pid}`;
    let seen = '';
    await scoped(lock, key, async (lease) => {
      seen = (await fx.admin.get(lock.keyOf(key))) ?? '';
      expect(seen).toBe(lease.token);
    });
    expect(seen).not.toBe('');
    expect(await fx.admin.exists(lock.keyOf(key))).toBe(0);
    const mine = new Error('mine');
    await expect(
      scoped(lock, `${key}-throw`, async () => {
        throw mine;
      }),
    ).rejects.toBe(mine);
    expect(await fx.admin.exists(lock.keyOf(`${key}-throw`))).toBe(0);
  }

  it("Symbol.asyncDispose is defined: Node 20's registered symbol, or the engine's own (Node 24)", () => {
    expect(typeof Symbol.asyncDispose).toBe('symbol');
    const major = Number(process.versions.node.split('.')[0]);
    if (Symbol.keyFor(Symbol.asyncDispose) !== undefined)
      expect(Symbol.asyncDispose).toBe(Symbol.for('nodejs.asyncDispose'));
    else expect(major).toBeGreaterThanOrEqual(24);
    expect(ts.version).toMatch(/^5\.9\./);
  });

  it('target ES2022 (the repo tsconfig): TypeScript lowers it, and the lease is released on exit', async () => {
    const js = compile(ts.ScriptTarget.ES2022);
    expect(js).not.toMatch(/await using/); // lowered to TypeScript's helpers
    await releasesOnExit(await load(ts.ScriptTarget.ES2022, 'es2022'), 'await-using-es2022');
  });

  it('target ESNext: native syntax where this Node parses it (from Node 24), released on exit', async () => {
    const js = compile(ts.ScriptTarget.ESNext);
    expect(js).toMatch(/await using/);
    const major = Number(process.versions.node.split('.')[0]);
    if (!nodeParsesAwaitUsing()) {
      expect(major).toBeLessThan(24); // Node 20: the syntax needs the lowered form above
      return;
    }
    await releasesOnExit(await load(ts.ScriptTarget.ESNext, 'esnext'), 'await-using-esnext');
  });
});
