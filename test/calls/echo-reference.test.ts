/**
 * The echo guard's reference and the hub's use of it: which caller frames may be only our own voice
 * coming back (docs/design/conversation.md §2). End to end over an echoing line: test/e2e/echo.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { encodeUlaw, ulawEnergyDb } from '../../src/audio/ulaw.js';
import { AudioHub } from '../../src/calls/audio-hub.js';
import { ECHO_MARGIN_DB, ECHO_WINDOW_MS, EchoReference } from '../../src/calls/echo-reference.js';

/** μ-law sine of `ms` at `amplitude` (8000 ≈ -15 dBFS). */
const sine = (ms: number, amplitude: number) =>
  encodeUlaw(Int16Array.from({ length: ms * 8 }, (_, i) => Math.round(amplitude * Math.sin((2 * Math.PI * 400 * i) / 8000))));
/** One 20 ms PCM frame at `amplitude`. */
const pcmFrame = (amplitude: number) => Int16Array.from({ length: 160 }, (_, i) => Math.round(amplitude * Math.sin((2 * Math.PI * 300 * i) / 8000)));
const loudDb = ulawEnergyDb(sine(20, 8000));

describe('EchoReference', () => {
  it('knows the loudest audio playing in a window, and forgets what a clear cut', () => {
    const ref = new EchoReference();
    ref.played(1000, sine(100, 8000)); // 1000–1100 loud
    ref.played(1100, sine(100, 800)); // 1100–1200, 20 dB down
    expect(ref.loudestDb(900, 1000)).toBe(-100); // before it played
    expect(ref.loudestDb(1090, 1110)).toBeCloseTo(loudDb, 5);
    expect(ref.loudestDb(1100, 1200)).toBeCloseTo(loudDb - 20, 0);
    ref.cut(1150); // Twilio dropped 1160 on
    expect(ref.loudestDb(1160, 1300)).toBe(-100);
    expect(ref.loudestDb(1140, 1160)).toBeCloseTo(loudDb - 20, 0); // the frame playing at the cut did play
  });

  it('takes a frame for echo only within the margin of what played up to the window before it', () => {
    const ref = new EchoReference();
    ref.played(1000, sine(200, 8000));
    const echoDb = loudDb - 20;
    expect(ref.mayBeEcho(echoDb, 1050, 1070)).toBe(true); // during playback
    expect(ref.mayBeEcho(echoDb, 1200 + ECHO_WINDOW_MS - 30, 1200 + ECHO_WINDOW_MS - 10)).toBe(true); // the tail
    expect(ref.mayBeEcho(echoDb, 1200 + ECHO_WINDOW_MS + 20, 1200 + ECHO_WINDOW_MS + 40)).toBe(false); // long after
    expect(ref.mayBeEcho(loudDb - ECHO_MARGIN_DB + 1, 1050, 1070)).toBe(false); // a caller talking over us
    expect(new EchoReference().mayBeEcho(-60, 0, 20)).toBe(false); // nothing played: nothing to echo
  });

  it('keeps a fixed ring: a long reply does not grow it, and the newest audio is always known', () => {
    const ref = new EchoReference();
    for (let i = 0; i < 500; i++) ref.played(i * 100, sine(100, i % 2 ? 8000 : 800));
    expect(ref.loudestDb(49_900, 50_000)).toBeCloseTo(loudDb, 5);
    expect(ref.loudestDb(49_800, 49_900)).toBeCloseTo(loudDb - 20, 0);
  });
});

describe('AudioHub.mayBeEcho', () => {
  it('places caller frames on the player\'s clock by their earliest arrival, so late frames do not shift it', () => {
    let now = 0;
    const hub = new AudioHub(() => now);
    // Stream time 0 is monotonic 5000: frame n (ts 20n) arrives at 5000 + 20(n+1), some late.
    const push = (n: number, late: number, amplitude: number) => {
      now = 5000 + 20 * (n + 1) + late;
      hub.pushFrame(pcmFrame(amplitude), 20 * n);
      return hub.mayBeEcho(pcmFrame(amplitude), 20 * n);
    };
    expect(push(0, 40, 800)).toBe(false); // nothing played yet
    hub.echo.played(5100, sine(400, 8000)); // plays 5100–5500
    expect(push(1, 0, 800)).toBe(false); // ts 20: before our audio played
    expect(push(10, 60, 800)).toBe(true); // ts 200 ≈ 5200: echo-level, though it arrived 60 ms late
    expect(push(11, 0, 8000)).toBe(false); // a caller as loud as us
    expect(push(33, 0, 800)).toBe(true); // ts 660: the echo tail, within the window after 5500
    expect(push(40, 0, 800)).toBe(false); // ts 800: long after
  });
});
