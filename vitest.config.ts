import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (file: string) => fileURLToPath(new URL(`./layers/oncely/src/${file}`, import.meta.url));

export default defineConfig({
  resolve: {
    // The package's entry points (layers/oncely/package.json `exports`), from source.
    alias: [
      { find: /^oncely$/, replacement: src('index.ts') },
      { find: /^oncely\/locks$/, replacement: src('locks.ts') },
      { find: /^oncely\/middy$/, replacement: src('middy.ts') },
      { find: /^oncely\/ioredis$/, replacement: src('ioredis.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration files start their own redis-server processes; two cores, so keep the fan-out modest.
    maxWorkers: 2,
    retry: 0,
  },
});
