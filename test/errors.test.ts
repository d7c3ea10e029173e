import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../src/errors.js';

describe('docs/errors.md', () => {
  it('lists every code in ERROR_CODES and nothing else', async () => {
    const md = await readFile(new URL('../docs/errors.md', import.meta.url), 'utf8');
    const documented = [...md.matchAll(/^\| `(VET_E_\w+)`/gm)].map((m) => m[1]);
    expect([...documented].sort()).toEqual(Object.keys(ERROR_CODES).sort());
    expect(new Set(documented).size).toBe(documented.length); // no code documented twice
  });
});
