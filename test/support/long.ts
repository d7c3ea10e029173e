/**
 * Iteration counts for the fuzz, soak and model tests: `npm test` runs them at a size that catches
 * regressions in seconds; `npm run test:long` (VETLINE_LONG=1) scales them up (docs/testing.md).
 */
export const LONG = process.env.VETLINE_LONG === '1';

/** `normal` under `npm test`, `long` under `npm run test:long`. */
export const sized = <T>(normal: T, long: T): T => (LONG ? long : normal);
