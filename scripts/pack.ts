/**
 * `npm run pack`: the npm package as one tarball a user installs today, before (and after) it is on the registry.
 *
 *   npm run pack                  builds layers/oncely and writes dist/oncely-<version>.tgz
 *   npm run pack -- --out DIR     writes it into DIR instead
 *
 * Then, in the app: `npm install /path/to/oncely-<version>.tgz`. The tarball is what `npm publish` uploads:
 * `npm publish dist/oncely-<version>.tgz` (test/integration/npm-package.test.ts runs `npm publish --dry-run` on
 * it). See layers/oncely/CHANGELOG.md for the version policy.
 */
import { mkdirSync, realpathSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { distDir, packPackage } from './build.js';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string', default: distDir } } });
  const out = resolve(values.out);
  mkdirSync(out, { recursive: true });
  const packed = await packPackage(out);
  const shown = relative(process.cwd(), packed.tarball) || packed.tarball;
  console.log(
    `${shown}: ${packed.files.length} files, ${(packed.size / 1024).toFixed(1)} KiB (${(packed.unpackedSize / 1024).toFixed(1)} KiB unpacked)`,
  );
  console.log(`install it in your app: npm install ${packed.tarball}`);
}

const entry = process.argv[1];
if (entry && realpathSync(entry) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error('pack failed:', err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
