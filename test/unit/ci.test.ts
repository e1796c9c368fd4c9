/**
 * The checks .ci/run makes (.ci/lib.sh), run for real: against a fake `node` first on PATH and a scratch git
 * repository. CI must fail on a Node other than the one a run is named after, and it tests a fresh checkout of
 * the last commit, never an uncommitted change or an untracked file lying in the folder.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const lib = fileURLToPath(new URL('../../.ci/lib.sh', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'oncely-ci-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs `source .ci/lib.sh; <script>` in bash; returns the exit status and what it printed on stderr. */
function check(script: string, env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync('bash', ['-c', `source "${lib}"; ${script}`], { env, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

/** A PATH whose first `node` prints `version` for `node -v`. */
function fakeNode(version: string): NodeJS.ProcessEnv {
  const dir = join(scratch, `node-${version}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'node'), `#!/bin/sh\necho ${version}\n`);
  chmodSync(join(dir, 'node'), 0o755);
  return { ...process.env, PATH: `${dir}:${process.env.PATH}` };
}

/** A git repository in the scratch folder with one commit: a.ts and a .gitignore of node_modules. */
function scratchRepo(name: string) {
  const repo = join(scratch, name);
  const git = (...args: string[]) =>
    execFileSync('git', ['-C', repo, '-c', 'user.name=ci', '-c', 'user.email=ci@example.invalid', ...args]);
  mkdirSync(repo, { recursive: true });
  git('init', '-q');
  writeFileSync(join(repo, '.gitignore'), 'node_modules\n');
  writeFileSync(join(repo, 'a.ts'), 'export const a = 1;\n');
  git('add', '.');
  git('commit', '-q', '-m', 'first');
  return { repo, git };
}

describe('require_node_major', () => {
  it('passes on the major it is given', () => {
    expect(check('require_node_major 20', fakeNode('v20.20.2')).status).toBe(0);
    expect(check('require_node_major 24', fakeNode('v24.21.0')).status).toBe(0);
  });

  it('fails on any other Node, naming what it found', () => {
    for (const [want, have] of [
      ['20', 'v22.12.0'],
      ['20', 'v2.0.0'],
      ['24', 'v20.20.2'],
      ['2', 'v20.20.2'],
    ] as const) {
      const r = check(`require_node_major ${want}`, fakeNode(have));
      expect(r.status, `${have} accepted for ${want}`).toBe(1);
      expect(r.stderr).toContain(`node on PATH is ${have}, expected v${want}.x`);
    }
  });
});

describe('require_committed_tree', () => {
  const { repo, git } = scratchRepo('repo');

  const committed = () => check(`require_committed_tree "${repo}"`);

  it('passes on a clean checkout; ignored files do not count', () => {
    mkdirSync(join(repo, 'node_modules'), { recursive: true });
    writeFileSync(join(repo, 'node_modules', 'x.js'), '');
    expect(committed().status).toBe(0);
  });

  it('fails on an untracked file, a modified file and a staged change, listing them', () => {
    // A focused test, written as a string built at run time so that greps for committed ones pass this file by.
    writeFileSync(join(repo, 'only.test.ts'), `${['it', 'only'].join('.')}('x', () => {});\n`);
    let r = committed();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('?? only.test.ts');
    rmSync(join(repo, 'only.test.ts'));

    writeFileSync(join(repo, 'a.ts'), 'export const a = 2;\n');
    r = committed();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('M a.ts');
    git('add', 'a.ts');
    expect(committed().status).toBe(1);
    git('reset', '-q', '--hard');
    expect(committed().status).toBe(0);
  });

  it('fails outside a git work tree', () => {
    const plain = join(scratch, 'not-a-repo');
    mkdirSync(plain, { recursive: true });
    expect(check(`require_committed_tree "${plain}"`).status).toBe(1);
  });
});

describe('committed_checkout', () => {
  const { repo } = scratchRepo('checkout-src');

  it('checks out the last commit alone: no modification, untracked or ignored file, and says what it left out', () => {
    writeFileSync(join(repo, 'a.ts'), 'export const a = 2;\n');
    writeFileSync(join(repo, 'focused.test.ts'), 'untracked\n');
    mkdirSync(join(repo, 'node_modules'), { recursive: true });
    writeFileSync(join(repo, 'node_modules', 'x.js'), '');
    const dest = join(scratch, 'checkout-dest');
    const r = check(`committed_checkout "${repo}" "${dest}"`);
    expect(r.status).toBe(0);
    expect(readFileSync(join(dest, 'a.ts'), 'utf8')).toBe('export const a = 1;\n');
    expect(existsSync(join(dest, 'focused.test.ts'))).toBe(false);
    expect(existsSync(join(dest, 'node_modules'))).toBe(false);
    expect(r.stderr).toContain('left out');
    expect(r.stderr).toContain('?? focused.test.ts');
    expect(r.stderr).toContain('M a.ts');
  });
});
