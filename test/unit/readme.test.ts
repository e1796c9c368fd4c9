import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
/** The README and the docs it sends readers to: every `<!-- example: file -->` block in them. */
const pages = [
  'README.md',
  ...readdirSync(`${root}/docs`)
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

describe('README and docs examples are the compiled files they name', () => {
  const blocks = pages.flatMap((page) =>
    [
      ...readFileSync(`${root}/${page}`, 'utf8').matchAll(
        /<!-- example: (\S+) [^>]*-->\n```ts\n([\s\S]*?)```/g,
      ),
    ].map((m) => [page, m[1]!, m[2]!] as const),
  );
  it('has examples, the README first', () => {
    expect(blocks.filter(([page]) => page === 'README.md').length).toBeGreaterThanOrEqual(4);
    // Every example file is still shown somewhere (moving a section to docs/ must not drop one).
    for (const file of [
      'examples/lock.ts',
      'examples/lock-features.ts',
      'examples/redlock.ts',
      'examples/once-middy.ts',
      'examples/telemetry.ts',
      'functions/worker/handler.ts',
    ]) {
      expect(
        blocks.some(([, f]) => f === file),
        file,
      ).toBe(true);
    }
  });
  it.each(blocks.map(([page, file, code]) => [`${page}: ${file}`, file, code]))('%s', (_name, file, code) => {
    expect(code).toBe(readFileSync(`${root}/${file}`, 'utf8'));
  });
});

describe('the README reads top to bottom: install first, and short', () => {
  const readme = readFileSync(`${root}/README.md`, 'utf8');
  it('## Install is the first section; the README is under 250 lines; its links to files resolve', () => {
    expect(/^## (.*)$/m.exec(readme)?.[1]).toBe('Install');
    expect(readme.split('\n').length).toBeLessThan(250);
    for (const m of readme.matchAll(/\]\(((?:docs|layers)\/[^)#]+)/g)) {
      expect(() => readFileSync(`${root}/${m[1]}`), m[1]).not.toThrow();
    }
  });
});
