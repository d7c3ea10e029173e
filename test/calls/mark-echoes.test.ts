import { describe, expect, it } from 'vitest';
import { MarkEchoes, type MarkEvent } from '../../src/calls/mark-echoes.js';

const mark = (endMs: number, generation = 2, epoch = 0): MarkEvent => ({ type: 'twilio.mark', generation, epoch, endMs });

function rig(queuedMs = 3_000) {
  let now = 0;
  const given: number[] = [];
  const echoes = new MarkEchoes((m) => given.push(m.endMs), () => now, 250);
  const playback = { generation: 2, epoch: 0, queuedMs };
  // Twilio's echoes of a reply played in real time: one per 100 ms message.
  const play = (fromMs: number, toMs: number) => {
    for (let end = fromMs; end <= toMs; end += 100) {
      now = end;
      echoes.arrived(mark(end), playback);
    }
  };
  return { echoes, given, playback, play, at: (ms: number) => (now = ms) };
}

describe('mark echoes on their way to the call machine', () => {
  it('passes one echo per 250 ms while audio plays, and the one that completes it at once', () => {
    const r = rig(1_000);
    r.play(100, 1_000);
    expect(r.given).toEqual([100, 400, 700, 1_000]);
  });

  it('gives the held position before anything else reaches the machine', () => {
    const r = rig();
    r.play(100, 300);
    expect(r.given).toEqual([100]);
    r.echoes.flush(); // e.g. vad.speechStart: the barge-in cuts the reply at what was heard
    expect(r.given).toEqual([100, 300]);
    r.echoes.flush();
    expect(r.given).toEqual([100, 300]);
  });

  it('an echo of another generation or epoch goes in at once, after the held one', () => {
    const r = rig();
    r.play(100, 200);
    r.echoes.arrived(mark(900, 2, 1), r.playback);
    expect(r.given).toEqual([100, 200, 900]);
    r.echoes.arrived(mark(50, 1, 0), r.playback);
    expect(r.given).toEqual([100, 200, 900, 50]);
  });

  it('while synthesis streams, an echo that catches up with the queued audio is not held', () => {
    const r = rig(600);
    r.play(100, 600);
    expect(r.given).toEqual([100, 400, 600]);
    r.playback.queuedMs = 1_400;
    r.at(650);
    r.echoes.arrived(mark(700), r.playback);
    expect(r.given).toEqual([100, 400, 600]);
    r.at(900);
    r.echoes.arrived(mark(900), r.playback);
    expect(r.given).toEqual([100, 400, 600, 900]);
  });
});
