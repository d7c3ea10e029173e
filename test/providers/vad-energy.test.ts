import { describe, expect, it } from 'vitest';
import { energyVad, energyVadParams, frameDbfs } from '../../src/providers/vad/energy.js';
import type { Vad, VadEvent, VadMode, VadParams } from '../../src/providers/vad/types.js';

const FRAME = 160; // 20 ms at 8 kHz

/** A 440 Hz tone at `db` dBFS (RMS), `ms` long. -Infinity gives digital silence. */
function tone(db: number, ms: number): Int16Array {
  const n = (ms * 8000) / 1000;
  const amp = db === -Infinity ? 0 : Math.SQRT2 * 32768 * 10 ** (db / 20);
  return Int16Array.from({ length: n }, (_, i) => Math.round(amp * Math.sin((2 * Math.PI * 440 * i) / 8000)));
}
const silence = (ms: number) => tone(-Infinity, ms);
const concat = (...parts: Int16Array[]) => {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
};

/** Feeds `pcm` in frames of `frame` samples; returns the events with the frame time that produced them. */
function run(vad: Vad, pcm: Int16Array, frame = FRAME, startMs = 0): Array<VadEvent & { decidedAtMs: number }> {
  const events: Array<VadEvent & { decidedAtMs: number }> = [];
  for (let i = 0; i < pcm.length; i += frame) {
    const atMs = startMs + (i * 1000) / 8000;
    const e = vad.process(pcm.subarray(i, i + frame), atMs);
    if (e) events.push({ ...e, decidedAtMs: atMs });
  }
  return events;
}

const defaults = energyVadParams({ listeningThresholdDb: -38, speakingThresholdDb: -30, minSpeechMs: 100, minSilenceMs: 200 });
const make = (p: Record<VadMode, VadParams> = defaults) => energyVad.create(p);

describe('energy VAD', () => {
  it('measures frame level in dBFS', () => {
    expect(frameDbfs(new Int16Array(FRAME).fill(32767))).toBeCloseTo(0, 2);
    expect(frameDbfs(tone(-20, 20))).toBeCloseTo(-20, 0);
    expect(frameDbfs(silence(20))).toBe(-120);
    expect(frameDbfs(new Int16Array(0))).toBe(-120);
  });

  it('stays quiet on digital silence and on noise below the threshold', () => {
    const vad = make();
    expect(run(vad, concat(silence(1000), tone(-45, 1000)))).toEqual([]);
    expect(vad.speaking).toBe(false);
  });

  it('opens on a tone burst, back-dated by minSpeechMs, and closes after minSilenceMs', () => {
    const vad = make();
    const events = run(vad, concat(silence(400), tone(-20, 500), silence(600)));
    expect(events).toEqual([
      { type: 'speechStart', atMs: 400, decidedAtMs: 480 },
      { type: 'speechEnd', atMs: 900, speechMs: 500, decidedAtMs: 1080 },
    ]);
    expect(vad.speaking).toBe(false);
  });

  it('with pauseMs, reports a pause inside the segment, then the close or a resume', () => {
    const vad = make(energyVadParams({ listeningThresholdDb: -38, speakingThresholdDb: -30, minSpeechMs: 100, minSilenceMs: 200, pauseMs: 100 }));
    const events = run(vad, concat(silence(400), tone(-20, 500), silence(140), tone(-20, 300), silence(600)));
    expect(events).toEqual([
      { type: 'speechStart', atMs: 400, decidedAtMs: 480 },
      // 100 ms of silence (frames 900–980): a pause dated where it began; the caller goes on at 1040.
      { type: 'pause', atMs: 900, decidedAtMs: 980 },
      { type: 'resume', atMs: 1040, decidedAtMs: 1040 },
      // One segment still: the pause did not close it. The last silence pauses at 1420, closes at 1520.
      { type: 'pause', atMs: 1340, decidedAtMs: 1420 },
      { type: 'speechEnd', atMs: 1340, speechMs: 940, decidedAtMs: 1520 },
    ]);
    // Not below minSilenceMs: no pauses at all.
    const none = make(energyVadParams({ listeningThresholdDb: -38, speakingThresholdDb: -30, minSpeechMs: 100, minSilenceMs: 200, pauseMs: 200 }));
    expect(run(none, concat(silence(400), tone(-20, 500), silence(600))).map((e) => e.type)).toEqual(['speechStart', 'speechEnd']);
  });

  it('ignores bursts shorter than minSpeechMs and gaps shorter than minSilenceMs', () => {
    const vad = make();
    expect(run(vad, concat(silence(200), tone(-20, 60), silence(400)))).toEqual([]);
    const events = run(make(), concat(silence(200), tone(-20, 300), silence(160), tone(-20, 300), silence(400)));
    expect(events.map((e) => e.type)).toEqual(['speechStart', 'speechEnd']);
    expect(events[1]).toMatchObject({ atMs: 960, speechMs: 760 });
  });

  it('has hysteresis: a level between release and threshold neither opens nor closes', () => {
    // threshold -38, release -44: -41 dBFS keeps an open segment open but cannot open one.
    expect(run(make(), concat(tone(-41, 1000), silence(300)))).toEqual([]);
    const events = run(make(), concat(tone(-20, 200), tone(-41, 1000), tone(-50, 300)));
    expect(events).toMatchObject([
      { type: 'speechStart', atMs: 0 },
      { type: 'speechEnd', atMs: 1200, speechMs: 1200 },
    ]);
    const custom = energyVad.create({ ...defaults, listening: { ...defaults.listening, releaseDb: -39 } });
    expect(run(custom, concat(tone(-20, 200), tone(-41, 400)))).toMatchObject([
      { type: 'speechStart' },
      { type: 'speechEnd', atMs: 200 },
    ]);
  });

  it('a dip longer than a stop consonant resets a run that has not opened yet', () => {
    const pcm = concat(tone(-20, 60), silence(80), tone(-20, 60), silence(500));
    expect(run(make(), pcm)).toEqual([]);
  });

  it('a 20 ms dip (a stop consonant, "what | are") does not reset a run that is opening', () => {
    const pcm = concat(tone(-20, 60), silence(20), tone(-20, 60), silence(500));
    expect(run(make(), pcm)).toMatchObject([{ type: 'speechStart', atMs: 0 }, { type: 'speechEnd' }]);
  });

  it('switches thresholds with the mode, keeping an open segment open', () => {
    const vad = make();
    vad.setMode('speaking');
    expect(run(vad, concat(tone(-35, 600), silence(300)))).toEqual([]);
    expect(run(vad, tone(-25, 200), FRAME, 900)).toMatchObject([{ type: 'speechStart', atMs: 900 }]);
    vad.setMode('listening'); // release now -44: -38 dBFS keeps it open
    expect(run(vad, tone(-38, 600), FRAME, 1100)).toEqual([]);
    expect(vad.speaking).toBe(true);
    vad.setMode('speaking'); // release now -36: the same level is silence
    expect(run(vad, tone(-38, 300), FRAME, 1700)).toMatchObject([{ type: 'speechEnd', atMs: 1700, speechMs: 800 }]);
  });

  it('accepts frames of any length with the same timing', () => {
    const pcm = concat(silence(400), tone(-20, 500), silence(600));
    for (const frame of [80, 160, 400, 800]) {
      expect(run(make(), pcm, frame).map(({ decidedAtMs: _d, ...e }) => e)).toEqual([
        { type: 'speechStart', atMs: 400 },
        { type: 'speechEnd', atMs: 900, speechMs: 500 },
      ]);
    }
  });

  it('costs about a microsecond per 20 ms frame', () => {
    const vad = make();
    const frames = [tone(-20, 20), silence(20), tone(-50, 20), tone(-30, 20)];
    const n = 200_000;
    for (let i = 0; i < 10_000; i++) vad.process(frames[i & 3]!, i * 20);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) vad.process(frames[i & 3]!, i * 20);
    const usPerFrame = ((performance.now() - t0) * 1000) / n;
    console.info(`[figures] energy VAD: ${usPerFrame.toFixed(2)} µs per 20 ms frame (${n} frames)`);
    expect(usPerFrame).toBeLessThan(50);
  });
});
