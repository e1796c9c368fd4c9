import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const file = process.argv[2];
let src = readFileSync(file, 'utf8');
// For every `lua: \`...\`,\n  sha1: '...'` pair, recompute the pin.
src = src.replace(/lua: `([\s\S]*?)`,\n(\s*)sha1: '[0-9a-f]*'/g, (_m, lua, ind) => {
  const sha = createHash('sha1').update(lua).digest('hex');
  return `lua: \`${lua}\`,\n${ind}sha1: '${sha}'`;
});
writeFileSync(file, src);
