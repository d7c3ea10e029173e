/**
 * An on-disk cache of audio rendered by the local synthesizer, shared between processes: the test
 * suite's workers render the same clinic clips and caller lines again and again, and one flite
 * rendering of a clinic's clips costs seconds of CPU (docs/testing.md "The clip cache").
 *
 * Off unless `useClipCache(dir)` is called; nothing in the engine calls it, so `npm start` and
 * production always synthesize. The test setup (test/support/clip-cache.setup.ts) turns it on.
 *
 * Content-addressed: a file's name is the SHA-256 of everything that decides its audio (the
 * caller passes voice, text and the synthesizer's identity: its WASM bytes, the resampler and codec
 * versions, the rendering code; see `synthesizeUlaw` in ./local.ts), so a stale entry is never
 * read, only left behind. Files are written to a temporary name and renamed into place, so a reader
 * sees a whole clip or none; a cache that cannot be read or written falls back to rendering.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

let cacheDir: string | null = null;
/** Renderings in flight in this process, so concurrent requests for one clip render it once. */
const inFlight = new Map<string, Promise<Uint8Array>>();

/** Turns the cache on (a directory, created when first written) or off (null). */
export function useClipCache(dir: string | null): void {
  cacheDir = dir === '' ? null : dir;
}

export function clipCacheDir(): string | null {
  return cacheDir;
}

/** The file name for a clip: SHA-256 (hex) of every field, by name. */
export function clipKey(parts: Readonly<Record<string, string>>): string {
  const ordered = Object.fromEntries(Object.entries(parts).sort(([a], [b]) => a.localeCompare(b)));
  return createHash('sha256').update(JSON.stringify(ordered)).digest('hex');
}

/** The cached audio for `key`, or `render()`'s, stored for the next reader. Off: `render()`. */
export function cachedClip(key: string, render: () => Promise<Uint8Array>): Promise<Uint8Array> {
  const dir = cacheDir;
  if (dir === null) return render();
  const pending = inFlight.get(key);
  if (pending) return pending.then((a) => a.slice());
  const job = readOrRender(dir, key, render).finally(() => inFlight.delete(key));
  inFlight.set(key, job);
  return job.then((a) => a.slice());
}

async function readOrRender(dir: string, key: string, render: () => Promise<Uint8Array>): Promise<Uint8Array> {
  const file = join(dir, `${key}.ulaw`);
  try {
    const b = await readFile(file);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch {
    // Missing (or unreadable): render.
  }
  const audio = await render();
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(tmp, audio);
    await rename(tmp, file);
  } catch {
    await rm(tmp, { force: true }).catch(() => undefined);
  }
  return audio;
}
