import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    alias: { oncely: fileURLToPath(new URL('./layers/oncely/src/index.ts', import.meta.url)) },
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
