/**
 * The turn clock (src/calls/turn-clock.ts): each turn's stages from the events and commands the
 * session hands it, for a reply prepared during the end-of-turn window and for one that starts at
 * the commit (a final transcript that came after the window).
 */
import { describe, expect, it } from 'vitest';
import type { AudioHub } from '../../src/calls/audio-hub.js';
import { TurnClock } from '../../src/calls/turn-clock.js';
import type { TurnTiming } from '../../src/journal/turn-timing.js';

function clock() {
  let now = 1_000;
  // Stream time runs with the wall clock: the latest frame arrived "now".
  const hub = { get nowMs() { return now; } } as unknown as AudioHub;
  const reported: TurnTiming[] = [];
  const c = new TurnClock(() => now, hub, (t) => reported.push(t));
  return { c, reported, at: (ms: number) => (now = ms) };
}

const WINDOW = { kind: 'complete', windowMs: 250 } as const;

describe('turn clock', () => {
  it('a prepared reply: agent and synthesis counted from its start, before the commit', () => {
    const { c, reported, at } = clock();
    at(2_000);
    c.onChildEvent({ type: 'vad.speechEnd', atMs: 2_000, speechMs: 800 });
    c.onReplyStart(2);
    at(2_250);
    c.onChildEvent({ type: 'agent.delta', generation: 2, text: 'We are open' });
    at(2_300);
    c.onChildEvent({ type: 'stt.final', text: 'what are your hours', atMs: 2_300 });
    at(2_450);
    c.onChildEvent({ type: 'tts.chunk', generation: 2, audio: new Uint8Array(160) });
    at(2_500);
    c.onTurn(2, WINDOW, true);
    at(2_510);
    c.onAudio(2);
    expect(reported).toEqual([{
      generation: 2, endOfSpeechToAudioMs: 510, sttMs: 300, endpointMs: 500, agentFirstTextMs: 250, ttsFirstAudioMs: 450, firstAudioMs: 10,
      endOfTurn: WINDOW, prepared: true,
    }]);
  });

  it('a reply started at the commit: its first text and audio after the commit still count', () => {
    const { c, reported, at } = clock();
    at(2_000);
    c.onChildEvent({ type: 'vad.speechEnd', atMs: 2_000, speechMs: 800 });
    at(2_500);
    c.onChildEvent({ type: 'stt.final', text: 'what are your hours', atMs: 2_500 });
    c.onReplyStart(2);
    c.onTurn(2, WINDOW, false);
    at(2_800);
    c.onChildEvent({ type: 'agent.delta', generation: 2, text: 'We are open' });
    at(3_000);
    c.onChildEvent({ type: 'tts.chunk', generation: 2, audio: new Uint8Array(160) });
    c.onAudio(2);
    expect(reported).toMatchObject([{ sttMs: 500, endpointMs: 500, agentFirstTextMs: 300, ttsFirstAudioMs: 500, firstAudioMs: 500, endOfSpeechToAudioMs: 1_000, prepared: false }]);
  });

  it('a prepared reply thrown away leaves nothing for the next turn', () => {
    const { c, reported, at } = clock();
    c.onReplyStart(2);
    c.onChildEvent({ type: 'agent.delta', generation: 2, text: 'Sure' });
    c.onDiscard(2);
    c.onAudio(2);
    expect(reported).toEqual([]);
    at(3_000);
    c.onChildEvent({ type: 'vad.speechEnd', atMs: 3_000, speechMs: 500 });
    c.onReplyStart(3);
    at(3_300);
    c.onTurn(3, WINDOW, true);
    c.onChildEvent({ type: 'agent.delta', generation: 3, text: 'Sure' });
    at(3_400);
    c.onAudio(3);
    expect(reported).toMatchObject([{ generation: 3, agentFirstTextMs: 300, endpointMs: 300, endOfSpeechToAudioMs: 400 }]);
  });
});
