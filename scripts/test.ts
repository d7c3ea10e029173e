/**
 * `npm test [-- <vitest arguments>]`: type-check and lint (scripts/check.ts: one TypeScript
 * program for both, incremental) beside the whole vitest suite. The check is single-threaded and
 * runs at the lowest CPU priority (`nice -n 19`), so the suite's tests get the CPU first and the
 * check mostly what they leave idle (docs/testing.md "Type-check and lint").
 * A failed check stops the suite at once and fails the run, like `npm run check && vitest run`
 * would have, only sooner. Arguments go to `vitest run`:
 * `npm test -- --reporter=default --reporter=json --outputFile=report.json` (.ci/run), or
 * `npm test -- test/e2e` (still checks the whole project).
 *
 * `npm run test:long [-- <vitest arguments>]` (`--long`): only the test files whose sizes scale
 * with VETLINE_LONG (those importing test/support/long.ts: fuzz, soak, the machine graph), with
 * VETLINE_LONG=1 and no check (docs/testing.md).
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** How long a stopped suite gets to end its workers before they are killed. */
const STOP_GRACE_MS = 3_000;
const bin = (name: string) => join(ROOT, 'node_modules/.bin', name);

/**
 * Starts a command in the project root, in this process group (Ctrl-C reaches it as it would
 * directly); `code` settles with its exit status once its output has ended.
 */
function start(command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; quiet?: boolean } = {}) {
  const child = spawn(command, args, { cwd: ROOT, stdio: opts.quiet ? ['ignore', 'pipe', 'pipe'] : 'inherit', env: opts.env ?? process.env });
  const code = new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status, signal) => resolve(status ?? (signal ? 128 : 1)));
  });
  return { child, code };
}

/** Test files that scale with VETLINE_LONG. */
function longFiles(dir = join(ROOT, 'test')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return longFiles(path);
    return e.name.endsWith('.test.ts') && /from '(\.\.\/)+support\/long\.js'/.test(readFileSync(path, 'utf8')) ? [relative(ROOT, path)] : [];
  });
}

const args = process.argv.slice(2);
if (args[0] === '--long') {
  const files = longFiles();
  process.stderr.write(`npm run test:long: VETLINE_LONG=1 on ${files.join(', ')}\n`);
  process.exit(await start(bin('vitest'), ['run', ...files, ...args.slice(1)], { env: { ...process.env, VETLINE_LONG: '1' } }).code);
}
// The check's report is held and printed whole when it ends, not interleaved with the suite's.
// `nice` before exec: every thread of the check (V8's compiler and GC helpers too) runs at its
// priority. It must stay in this session: Linux shares the CPU between sessions first (autogroups)
// and applies nice values only within one, so a niced check in a session of its own (a detached
// child) got half the cores and slowed the suite by a fifth.
const check = start('nice', ['-n', '19', bin('tsx'), 'scripts/check.ts'], { quiet: true });
const report: Buffer[] = [];
check.child.stdout?.on('data', (chunk: Buffer) => report.push(chunk));
check.child.stderr?.on('data', (chunk: Buffer) => report.push(chunk));
const suite = start(bin('vitest'), ['run', ...args]);
// Ctrl-C reaches both from the terminal; other signals sent to this process are passed on.
for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    check.child.kill(signal);
    suite.child.kill(signal);
  });
}
process.on('SIGINT', () => undefined); // wait for both to stop and report
const checked = await check.code;
process.stdout.write(Buffer.concat(report));
if (checked !== 0) {
  process.stderr.write('npm test: type-check or lint failed; the test suite was stopped\n');
  // vitest cancels on SIGINT; its workers exit once it is gone (their IPC channel closes).
  suite.child.kill('SIGINT');
  const stragglers = setTimeout(() => suite.child.kill('SIGKILL'), STOP_GRACE_MS);
  await suite.code;
  clearTimeout(stragglers);
  process.exit(checked);
}
process.exit(await suite.code);
