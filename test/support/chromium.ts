/**
 * Debian's Chromium for the browser tests (test/inspector/browser.test.ts, test/desk/browser.test.ts),
 * driven by playwright-core: never a downloaded browser. `CHROMIUM_PATH` overrides the path.
 *
 * Without it a browser suite is skipped with the reason in its title, which the run's last line
 * repeats (test/support/skip-reporter.ts). Under CI (`CI` set; .ci/run sets it and installs the
 * chromium package) a missing Chromium is a failing test instead.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SKIPPED_TAG } from './skip-reporter.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** docs/design/stack.md §5: what this machine's Chromium needs to start quietly. */
export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
];

/** As test/store/postgres.test.ts reads it. */
const inCi = Boolean(process.env.CI);

/**
 * `describe(title, body)` when Chromium is there. Otherwise the suite is skipped and its title says
 * why, or, under CI, replaced by one failing test.
 */
export function describeInChromium(title: string, body: () => void): void {
  if (existsSync(CHROMIUM)) {
    describe(title, body);
  } else if (inCi) {
    describe(title, () => {
      it('has Chromium', () => {
        expect.fail(`CI is set but there is no Chromium at ${CHROMIUM}: .ci/run installs Debian's chromium package (CHROMIUM_PATH overrides the path)`);
      });
    });
  } else {
    describe.skip(`${title} ${SKIPPED_TAG} no Chromium at ${CHROMIUM}; apt-get install chromium, as .ci/run does)`, body);
  }
}
