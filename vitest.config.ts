import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Child processes, not worker threads: tests spawn engines, send signals and listen for process
    // warnings (threads measured no faster here).
    pool: 'forks',
    // Most files wait on real-time calls rather than compute, so one more worker than cores (3 on
    // 2 cores; vitest's default, cores - 1, ran the suite one file at a time). docs/testing.md.
    maxWorkers: availableParallelism() + 1,
    globalSetup: ['test/support/global-setup.ts'],
    setupFiles: ['test/support/clip-cache.setup.ts'],
  },
});
