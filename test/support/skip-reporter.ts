/**
 * A vitest reporter (vitest.config.ts, after `default`; .ci/run names it too) that ends the run with
 * one line naming the suites skipped for want of something on the machine, e.g.
 * `skipped: 9 tests of "the inspector in headless Chromium" (no Chromium at /usr/bin/chromium; …)`.
 * Such a suite carries the reason in its title after SKIPPED_TAG (test/support/chromium.ts,
 * test/store/postgres.test.ts). Without one, it prints nothing; tests skipped by a `-t` filter
 * carry no reason and are not named.
 */
import type { Reporter, TestModule, TestSuite, Vitest } from 'vitest/node';

/** What a suite's title says before its reason for being skipped: `<title> (skipped: <reason>)`. */
export const SKIPPED_TAG = '(skipped:';

/** The line for these modules' skipped tests, or null when no test was skipped for a stated reason. */
export function skippedLine(modules: readonly TestModule[]): string | null {
  const bySuite = new Map<string, number>();
  for (const module of modules) {
    for (const test of module.children.allTests('skipped')) {
      let suite: TestSuite | TestModule = test.parent;
      while (suite.type === 'suite' && !suite.name.includes(SKIPPED_TAG)) suite = suite.parent;
      if (suite.type !== 'suite') continue;
      bySuite.set(suite.name, (bySuite.get(suite.name) ?? 0) + 1);
    }
  }
  if (bySuite.size === 0) return null;
  const parts = [...bySuite].map(([name, n]) => {
    const at = name.indexOf(SKIPPED_TAG);
    return `${n} test${n === 1 ? '' : 's'} of "${name.slice(0, at).trim()}" (${name.slice(at + SKIPPED_TAG.length).trim()}`;
  });
  return `skipped: ${parts.join(', ')}`;
}

export default class SkipReporter implements Reporter {
  private vitest: Vitest | null = null;

  onInit(vitest: Vitest): void {
    this.vitest = vitest;
  }

  onTestRunEnd(modules: readonly TestModule[]): void {
    const line = skippedLine(modules);
    if (line) this.vitest?.logger.log(line);
  }
}
