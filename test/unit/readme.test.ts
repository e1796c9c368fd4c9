import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const readme = readFileSync(`${root}/README.md`, 'utf8');

describe('README examples are the compiled files they name', () => {
  const blocks = [...readme.matchAll(/<!-- example: (\S+) [^>]*-->\n```ts\n([\s\S]*?)```/g)];
  it('has examples', () => {
    expect(blocks.length).toBeGreaterThan(0);
  });
  it.each(blocks.map((m) => [m[1]!, m[2]!]))('%s', (file, code) => {
    expect(code).toBe(readFileSync(`${root}/${file}`, 'utf8'));
  });
});
