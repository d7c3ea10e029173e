/**
 * Once per `vitest run`, before any worker starts: the clip cache's directory (docs/testing.md).
 * A fresh temporary directory, removed at the end, so every run renders each clip once with flite
 * and every later file reads it; VETLINE_CLIP_CACHE=<dir> keeps one across runs instead, and
 * VETLINE_CLIP_CACHE=off renders everything every time.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** '' when the cache is off. */
    clipCacheDir: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const preset = process.env.VETLINE_CLIP_CACHE ?? '';
  const off = preset === 'off';
  const dir = off ? '' : preset || (await mkdtemp(join(tmpdir(), 'vetline-clips-')));
  project.provide('clipCacheDir', dir);
  return async () => {
    if (!off && !preset) await rm(dir, { recursive: true, force: true });
  };
}
