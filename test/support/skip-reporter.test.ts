/**
 * A machine without Chromium: the browser suite is skipped and the run's last line says so
 * (test/support/skip-reporter.ts); under CI it fails instead (test/support/chromium.ts). Runs vitest
 * itself, as `npm test` does, on the desk's browser test with CHROMIUM_PATH pointing nowhere.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NOWHERE = '/nonexistent/chromium';

function vitest(extraEnv: Record<string, string>): Promise<{ code: number | null; lines: string[] }> {
  // Without this run's own variables (VITEST, VITEST_POOL_ID, …), and without CI unless asked.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && k !== 'CI' && k !== 'TEST'));
  const child = spawn(join(ROOT, 'node_modules/.bin/vitest'), ['run', 'test/desk/browser.test.ts'], {
    cwd: ROOT,
    env: { ...env, NO_COLOR: '1', CHROMIUM_PATH: NOWHERE, ...extraEnv },
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, lines: out.split('\n').map((l) => l.trim()).filter((l) => l !== '') }));
  });
}

describe.concurrent('browser tests on a machine without Chromium', () => {
  it('are skipped, and the last line of the run says so', async () => {
    const { code, lines } = await vitest({});
    expect(code, lines.join('\n')).toBe(0);
    expect(lines.at(-1)).toMatch(/^skipped: \d+ tests of "the front desk in headless Chromium, on a phone" \(no Chromium at \/nonexistent\/chromium; /);
  }, 60_000);

  it('fail under CI', async () => {
    const { code, lines } = await vitest({ CI: '1' });
    expect(code).toBe(1);
    expect(lines.join('\n')).toContain(`CI is set but there is no Chromium at ${NOWHERE}`);
    expect(lines.some((l) => l.startsWith('skipped:'))).toBe(false);
  }, 60_000);
});
