import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

const cores = availableParallelism();
/** `npm run test:long` (docs/testing.md): the scaled-up files one at a time, with room for their size. */
const long = process.env.VETLINE_LONG === '1';

/**
 * CPU-bound files without wall-clock assertions (docs/testing.md "How the suite is organised"):
 * they run first, one per core, so that none of them shares a core with a test that times the
 * engine in real time.
 */
const COMPUTE = [
  'test/machines/**/*.test.ts',
  'test/fuzz/**/*.test.ts',
  'test/soak/**/*.test.ts',
  'test/visualize.test.ts',
  'test/boot.test.ts',
  'test/twilio/media-codec.test.ts',
  'test/providers/stt-local.test.ts',
  'test/providers/tts-local.test.ts',
  'test/calls/recording-transcriber.test.ts',
];

export default defineConfig({
  test: {
    environment: 'node',
    testTimeout: long ? 900_000 : 20_000,
    hookTimeout: long ? 900_000 : 20_000,
    // Child processes, not worker threads: tests spawn engines, send signals and listen for process
    // warnings (threads measured no faster here).
    pool: 'forks',
    // The last line names suites skipped for want of Chromium or PostgreSQL (test/support/skip-reporter.ts).
    reporters: ['default', './test/support/skip-reporter.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    setupFiles: ['test/support/clip-cache.setup.ts'],
    projects: [
      // No wall-clock assertions here, but two at once take twice as long: a minute per test, not 20 s.
      { extends: true, test: { name: 'compute', include: COMPUTE, maxWorkers: long ? 1 : cores, ...(long ? {} : { testTimeout: 60_000 }), sequence: { groupOrder: 0 } } },
      {
        extends: true,
        // The rest mostly waits on real-time calls rather than computing: one worker per core
        // (vitest's default, cores - 1, ran this suite one file at a time on 2 cores; cores + 1 made
        // the embedded-voice files miss their timing bounds: backpressure, the inspector in Chromium).
        test: { name: 'calls', include: ['test/**/*.test.ts'], exclude: COMPUTE, maxWorkers: cores, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
