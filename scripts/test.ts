/**
 * `npm test [-- <vitest arguments>]`: type-check and lint (scripts/check.ts: one TypeScript
 * program for both, incremental), then the whole vitest suite; stops at the first failure, like
 * `npm run lint && npm run typecheck && vitest run`. Arguments go to `vitest run`:
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
const bin = (name: string) => join(ROOT, 'node_modules/.bin', name);

function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: 'inherit', env });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
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
  process.exit(await run(bin('vitest'), ['run', ...files, ...args.slice(1)], { ...process.env, VETLINE_LONG: '1' }));
}
const checked = await run(bin('tsx'), ['scripts/check.ts']);
if (checked !== 0) {
  process.stderr.write('npm test: type-check or lint failed; tests not run\n');
  process.exit(checked);
}
process.exit(await run(bin('vitest'), ['run', ...args]));
