/**
 * `npm run check` (both), `npm run typecheck` (`--types`), `npm run lint` (`--lint`, `-- --fix`):
 * type-checks the project and lints it with one TypeScript program, so the type-aware lint rules
 * reuse the checker that found the type errors instead of building their own (docs/testing.md).
 *
 * Incremental, without ever giving a stale answer: the program is a TypeScript incremental program
 * whose state lives in node_modules/.cache/vetline-check/ (what `tsc --incremental` keeps). The
 * files TypeScript must re-check (changed, or depending on a declaration that changed) are the
 * files whose lint result can have changed, so exactly those are linted again, with the files that
 * had lint problems last time and the plain JavaScript files. A change to the ESLint or TypeScript
 * configuration, the lockfile or this script, or a missing cache, lints everything. `npm ci`
 * empties node_modules, so CI always starts cold.
 *
 * Every mode does both analyses (the cache state must describe both); the mode decides what is
 * printed and what fails the exit code.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CACHE = join(ROOT, 'node_modules/.cache/vetline-check');
const LINT_STATE = join(CACHE, 'lint.json');
const JS_FILES = '**/*.{js,mjs,cjs}';

interface LintState {
  key: string;
  /** Files with lint problems at the last run: linted again until they are clean. */
  failing: string[];
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** What a lint result depends on besides the files TypeScript tracks. */
function lintKey(): string {
  const hash = createHash('sha256');
  for (const f of ['eslint.config.js', 'tsconfig.json', 'package-lock.json', 'scripts/check.ts']) {
    hash.update(f).update('\0').update(existsSync(join(ROOT, f)) ? readFileSync(join(ROOT, f)) : '').update('\0');
  }
  return hash.digest('hex');
}

function readLintState(): LintState | null {
  try {
    return JSON.parse(readFileSync(LINT_STATE, 'utf8')) as LintState;
  } catch {
    return null;
  }
}

/** The incremental program, the type errors (as tsc reports them) and the files it re-checked (null: all). */
function typeCheck() {
  const configPath = join(ROOT, 'tsconfig.json');
  const host: ts.ParseConfigFileHost = {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  };
  const overrides: ts.CompilerOptions = { incremental: true, tsBuildInfoFile: join(CACHE, 'tsconfig.tsbuildinfo'), noEmit: true };
  const config = ts.getParsedCommandLineOfConfigFile(configPath, overrides, host);
  if (!config) throw new Error('cannot read tsconfig.json');
  const builder = ts.createIncrementalProgram({
    rootNames: config.fileNames,
    options: config.options,
    configFileParsingDiagnostics: ts.getConfigFileParsingDiagnostics(config),
    ...(config.projectReferences ? { projectReferences: config.projectReferences } : {}),
  });
  // Drain the affected files first (getSemanticDiagnostics would consume them).
  let affected: Set<string> | null = new Set();
  for (let r = builder.getSemanticDiagnosticsOfNextAffectedFile(); r; r = builder.getSemanticDiagnosticsOfNextAffectedFile()) {
    if ('fileName' in r.affected) affected?.add(resolve(r.affected.fileName));
    else affected = null; // the whole program
  }
  // The order and short-circuits of tsc's own report.
  const diagnostics: ts.Diagnostic[] = [...builder.getConfigFileParsingDiagnostics(), ...builder.getOptionsDiagnostics(), ...builder.getSyntacticDiagnostics()];
  const before = builder.getConfigFileParsingDiagnostics().length;
  if (diagnostics.length === before) diagnostics.push(...builder.getGlobalDiagnostics());
  if (diagnostics.length === before) diagnostics.push(...builder.getSemanticDiagnostics());
  return { builder, program: builder.getProgram(), diagnostics: ts.sortAndDeduplicateDiagnostics(diagnostics), affected, files: config.fileNames.length };
}

async function lint(program: ts.Program, affected: Set<string> | null, fix: boolean) {
  const eslint = new ESLint({
    cwd: ROOT,
    fix,
    overrideConfig: [{ files: ['**/*.ts'], languageOptions: { parserOptions: { projectService: false, programs: [program] } } }],
  });
  const key = lintKey();
  const state = readLintState();
  let patterns: string[];
  if (affected === null || state?.key !== key) patterns = ['.'];
  else {
    const candidates = new Set([...affected].filter((f) => f.startsWith(ROOT) && !f.includes('/node_modules/')));
    for (const f of state.failing) candidates.add(resolve(ROOT, f));
    const files: string[] = [];
    for (const f of candidates) if (existsSync(f) && !(await eslint.isPathIgnored(f))) files.push(f);
    patterns = [...files, JS_FILES];
  }
  const results = await eslint.lintFiles(patterns);
  if (fix) await ESLint.outputFixes(results);
  const failing = results.filter((r) => r.errorCount + r.warningCount > 0).map((r) => relative(ROOT, r.filePath));
  const formatter = await eslint.loadFormatter('stylish');
  return {
    errors: results.reduce((n, r) => n + r.errorCount, 0),
    linted: results.length,
    all: patterns[0] === '.',
    report: await formatter.format(results),
    save: () => writeFileSync(LINT_STATE, JSON.stringify({ key, failing } satisfies LintState)),
  };
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => !['--types', '--lint', '--fix'].includes(a));
  if (unknown.length) throw new Error(`unknown argument ${unknown.join(' ')} (usage: check.ts [--types | --lint [--fix]])`);
  const showTypes = !args.includes('--lint');
  const showLint = !args.includes('--types');
  mkdirSync(CACHE, { recursive: true });

  const t0 = performance.now();
  const { builder, program, diagnostics, affected, files } = typeCheck();
  const t1 = performance.now();
  const lintResult = await lint(program, affected, args.includes('--fix'));
  const t2 = performance.now();
  // Lint state first, then TypeScript's: a run cut short in between re-checks (and re-lints) the same files next time.
  lintResult.save();
  builder.emit();

  const typeErrors = diagnostics.filter((d) => d.category === ts.DiagnosticCategory.Error).length;
  if (showTypes && diagnostics.length) {
    const formatHost: ts.FormatDiagnosticsHost = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => ROOT, getNewLine: () => '\n' };
    process.stdout.write(process.stdout.isTTY ? ts.formatDiagnosticsWithColorAndContext(diagnostics, formatHost) : ts.formatDiagnostics(diagnostics, formatHost));
  }
  if (showLint && lintResult.report) process.stdout.write(lintResult.report);
  const rechecked = affected === null ? 'all' : String([...affected].filter((f) => f.startsWith(ROOT) && !f.includes('/node_modules/')).length);
  process.stderr.write(
    `check: types ${seconds(t1 - t0)} (${files} files, ${rechecked} re-checked, ${typeErrors} errors), ` +
      `lint ${seconds(t2 - t1)} (${lintResult.all ? 'all ' : ''}${lintResult.linted} files, ${lintResult.errors} errors)\n`,
  );
  return (showTypes && typeErrors > 0) || (showLint && lintResult.errors > 0) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`check: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(2);
  },
);
