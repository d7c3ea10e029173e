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

type Shared = { dir: Promise<string>; users: number };
/**
 * One directory for the whole run: vitest runs every project's global setup (each may load this
 * module anew), so the directory is kept on globalThis, and the last teardown removes it.
 */
const SLOT = Symbol.for('vetline.clipCache.run');
const slot = globalThis as { [SLOT]?: Shared | undefined };

export default function setup(project: TestProject): Promise<() => Promise<void>> {
  const preset = process.env.VETLINE_CLIP_CACHE ?? '';
  const off = preset === 'off';
  const own = !off && !preset;
  const run = (slot[SLOT] ??= { dir: own ? mkdtemp(join(tmpdir(), 'vetline-clips-')) : Promise.resolve(off ? '' : preset), users: 0 });
  run.users++;
  return run.dir.then((dir) => {
    project.provide('clipCacheDir', dir);
    return async () => {
      if (--run.users > 0) return;
      slot[SLOT] = undefined;
      if (own) await rm(dir, { recursive: true, force: true });
    };
  });
}
