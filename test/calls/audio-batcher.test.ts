import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AudioBatcher } from '../../src/calls/audio-batcher.js';

/** `ms` of μ-law (8 bytes per ms), every byte `tag`. */
const audio = (ms: number, tag = 1) => new Uint8Array(ms * 8).fill(tag);

function rig() {
  const handed: { atMs: number; ms: number }[] = [];
  const bytes: number[] = [];
  const batcher = new AudioBatcher(
    (a) => {
      handed.push({ atMs: Date.now(), ms: a.length / 8 });
      bytes.push(...a);
    },
    () => Date.now(),
    { lowWaterMs: 600, maxBytes: 3_200 },
  );
  return { batcher, handed, bytes };
}

/** A vendor streaming `chunks` chunks of 100 ms, one every `everyMs`. */
function stream(b: AudioBatcher, chunks: number, everyMs: number) {
  for (let i = 0; i < chunks; i++) {
    b.push(audio(100, i + 1));
    vi.advanceTimersByTime(everyMs);
  }
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(0);
});
afterEach(() => {
  vi.useRealTimers();
});

describe('synthesized audio on its way to the machine', () => {
  it('a fast vendor: chunks go at once until 600 ms are ahead of playback, then in batches of up to 400 ms', () => {
    const { batcher, handed, bytes } = rig();
    stream(batcher, 30, 20); // 3 s of audio at 5× real time
    batcher.flush();
    // 8 at once (800 ms handed by 160 ms: 640 ahead), then 200 ms when the timer came (40 ms later),
    // then 400 ms batches: 14 hand-overs instead of 30.
    expect(handed.map((h) => h.ms)).toEqual([100, 100, 100, 100, 100, 100, 100, 100, 200, 400, 400, 400, 400, 400]);
    // Nothing lost, nothing reordered.
    expect(bytes).toEqual(Array.from({ length: 30 }, (_, i) => Array<number>(800).fill(i + 1)).flat());
  });

  it('never lets playback come within the low-water mark of what is held: a stalled vendor is covered by the timer', () => {
    const { batcher, handed } = rig();
    stream(batcher, 9, 20); // 900 ms handed or held after 180 ms
    const handedMs = () => handed.reduce((a, h) => a + h.ms, 0);
    expect(handedMs()).toBeLessThan(900);
    // The vendor goes quiet. By the time playback (from t = 0) is 600 ms from the end of what was
    // handed, the rest has been handed over too.
    vi.advanceTimersByTime(1_000);
    expect(handedMs()).toBe(900);
    const last = handed.at(-1)!;
    const handedBefore = handedMs() - last.ms;
    expect(handedBefore - last.atMs).toBeGreaterThanOrEqual(600);
  });

  it('a vendor at real time: every chunk goes at once', () => {
    const { batcher, handed } = rig();
    stream(batcher, 20, 100);
    expect(handed).toHaveLength(20);
  });

  it('flush hands over what is held now; stop drops it and its timer', () => {
    const { batcher, handed } = rig();
    stream(batcher, 9, 20);
    const n = handed.length;
    batcher.flush();
    expect(handed.length).toBe(n + 1);
    batcher.push(audio(100));
    batcher.stop();
    vi.advanceTimersByTime(5_000);
    expect(handed.length).toBe(n + 1);
  });
});
