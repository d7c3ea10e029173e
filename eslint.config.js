// @ts-check
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/**
 * Layers (issue 16 §3): the lower layers never reach up into the call, HTTP or inspector layers,
 * type-only imports included; src/server.ts (wiring) and src/metrics.ts (reads every layer) are
 * imported only by src/main.ts and src/server.ts. test/layers.test.ts also fails on any import cycle.
 */
const WIRING_MESSAGE = 'only src/main.ts and src/server.ts import the wiring (server.ts, metrics.ts, main.ts)';
/** From a file under src/<dir>/ (`../`, `../../` …); a top-level src file is checked with `./` below. */
const WIRING_ONLY = { regex: '^(\\.\\./)+(server|metrics|main)(\\.js)?$', message: WIRING_MESSAGE };
const LOWER_LAYERS = ['providers', 'twilio', 'audio', 'journal', 'config', 'observability', 'redis'];
const UPPER = {
  regex: '^(\\.\\./)+(calls|http|inspector)(/|$)',
  message: 'src/providers, twilio, audio, journal, config, observability and redis never import src/calls, src/http or src/inspector (move the shared type down instead)',
};
/**
 * src/redis is the only code that knows Redis (issue #14 part 4): ioredis is imported there only, and
 * only the wiring (src/server.ts, src/main.ts) imports src/redis; the layers get narrow interfaces.
 */
const REDIS_ONLY = { regex: '^(\\.\\./)+redis(/|$)', message: 'only src/main.ts and src/server.ts import src/redis; hand the layer a narrow interface instead' };
const IOREDIS = { name: 'ioredis', message: 'only src/redis knows Redis: import from there (via src/server.ts), not ioredis' };
/** src/journal/s3-shipper.ts is the only code that knows the AWS SDK (JOURNAL_S3_URL), and main.ts loads it only when set. */
const AWS_S3 = { name: '@aws-sdk/client-s3', message: 'only src/journal/s3-shipper.ts knows the AWS SDK: hand the layer a narrow interface instead' };

export default defineConfig(
  { ignores: ['node_modules/', 'data/', 'coverage/', 'visualizations/', 'dist/'] },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        {
          selector: 'ImportDeclaration[source.value=/^(twilio|alawmulaw|wavefile)$/] > ImportSpecifier',
          message: 'CommonJS package: use the default import.',
        },
      ],
    },
  },
  {
    // The machine is pure: it imports xstate and sibling machine files only (no I/O, no SDKs).
    files: ['machines/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^(?!xstate$|\\.{1,2}/)', message: 'machines/ imports only xstate and machine files' },
            { regex: '(^|/)(src|test)/', message: 'machines/ must not reach into src/ or test/' },
          ],
        },
      ],
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [IOREDIS, AWS_S3], patterns: [WIRING_ONLY, REDIS_ONLY] }] },
  },
  {
    files: LOWER_LAYERS.map((dir) => `src/${dir}/**/*.ts`),
    ignores: ['src/redis/**', 'src/journal/s3-shipper.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [IOREDIS, AWS_S3], patterns: [WIRING_ONLY, UPPER, REDIS_ONLY] }] },
  },
  {
    files: ['src/journal/s3-shipper.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [IOREDIS], patterns: [WIRING_ONLY, UPPER, REDIS_ONLY] }] },
  },
  {
    files: ['src/redis/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [AWS_S3], patterns: [WIRING_ONLY, UPPER] }] },
  },
  {
    files: ['src/*.ts'],
    ignores: ['src/main.ts', 'src/server.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [IOREDIS, AWS_S3], patterns: [{ regex: '^\\./(server|metrics|main)(\\.js)?$', message: WIRING_MESSAGE }, { regex: '^\\./redis(/|$)', message: REDIS_ONLY.message }] }] },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // vitest's expect().rejects and friends trip this rule without being unsafe.
      '@typescript-eslint/unbound-method': 'off',
    },
  },
);
