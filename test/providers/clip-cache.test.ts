/** The test suite's on-disk clip cache (src/providers/tts/clip-cache.ts, docs/testing.md). */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cachedClip, clipCacheDir, clipKey, useClipCache } from '../../src/providers/tts/clip-cache.js';
import { synthesizeUlaw } from '../../src/providers/tts/local.js';

const suiteDir = clipCacheDir();
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vetline-clip-cache-test-'));
});
afterEach(() => useClipCache(suiteDir));
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const counting = (bytes: number[]) => {
  const r = { calls: 0, render: () => (r.calls++, Promise.resolve(Uint8Array.from(bytes))) };
  return r;
};

describe('clip cache', () => {
  it('is off unless configured: every request renders', async () => {
    useClipCache(null);
    const r = counting([1, 2, 3]);
    expect(await cachedClip('k', r.render)).toEqual(Uint8Array.from([1, 2, 3]));
    await cachedClip('k', r.render);
    expect(r.calls).toBe(2);
  });

  it('renders a key once, then reads it back from disk under its content address', async () => {
    useClipCache(join(dir, 'a'));
    const key = clipKey({ voice: 'kal', text: 'One moment.', synthesizer: 'x' });
    const r = counting([7, 8, 9]);
    const [a, b] = await Promise.all([cachedClip(key, r.render), cachedClip(key, r.render)]);
    const c = await cachedClip(key, r.render);
    expect(r.calls).toBe(1);
    expect([a, b, c]).toEqual([Uint8Array.from([7, 8, 9]), Uint8Array.from([7, 8, 9]), Uint8Array.from([7, 8, 9])]);
    a[0] = 0; // each caller owns its copy
    expect((await cachedClip(key, r.render))[0]).toBe(7);
    expect(await readdir(join(dir, 'a'))).toEqual([`${key}.ulaw`]);
  });

  it('keys on every field: another voice, text or synthesizer is another clip', () => {
    const k = clipKey({ voice: 'kal', text: 'Hi.', synthesizer: 's1' });
    expect(clipKey({ text: 'Hi.', synthesizer: 's1', voice: 'kal' })).toBe(k);
    expect(clipKey({ voice: 'slt', text: 'Hi.', synthesizer: 's1' })).not.toBe(k);
    expect(clipKey({ voice: 'kal', text: 'Hi!', synthesizer: 's1' })).not.toBe(k);
    expect(clipKey({ voice: 'kal', text: 'Hi.', synthesizer: 's2' })).not.toBe(k);
  });

  it('a directory that cannot be written is no cache, not an error', async () => {
    const file = join(dir, 'not-a-dir');
    await writeFile(file, '');
    useClipCache(join(file, 'sub'));
    const r = counting([5]);
    expect(await cachedClip('k2', r.render)).toEqual(Uint8Array.from([5]));
    expect(await cachedClip('k2', r.render)).toEqual(Uint8Array.from([5]));
    expect(r.calls).toBe(2);
  });

  it('the local voice through the cache gives the bytes flite renders, per voice', async () => {
    useClipCache(null);
    const fresh = await synthesizeUlaw('Are you still there?', 'kal');
    const freshSlt = await synthesizeUlaw('Are you still there?', 'slt');
    useClipCache(join(dir, 'b'));
    expect(await synthesizeUlaw('Are you still there?', 'kal')).toEqual(fresh); // rendered, stored
    expect(await synthesizeUlaw('Are you still there?', 'kal')).toEqual(fresh); // read back
    expect(await synthesizeUlaw('Are you still there?', 'slt')).toEqual(freshSlt);
    expect(await synthesizeUlaw('Are you still there?', 'no-such-voice')).toEqual(fresh); // falls back to kal, as rendering does
    expect(await readdir(join(dir, 'b'))).toHaveLength(2);
  });
});
