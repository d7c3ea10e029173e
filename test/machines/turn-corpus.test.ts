/**
 * The end-of-turn rule on a corpus of scripted caller turns with mid-sentence pauses
 * (test/fixtures/turn-corpus.json; docs/design/conversation.md §1.2, §1.5), through the call
 * machine on XState's simulated clock with a recognizer that behaves like a streaming one: interim
 * words while the caller speaks, the VAD reporting a pause 100 ms after the last word and closing
 * the segment 200 ms after it, the punctuated final 300 ms after that.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { CallCommand, CallEvent } from '../../machines/call/call.types.js';
import { createCallHarness } from '../support/call-harness.js';

interface Segment {
  text: string;
  pauseMs?: number;
}
interface Turn {
  complete: boolean;
  segments: Segment[];
}

const corpus = JSON.parse(readFileSync(new URL('../fixtures/turn-corpus.json', import.meta.url), 'utf8')) as { turns: Turn[] };

const VAD_PAUSE_MS = 100;
const VAD_SILENCE_MS = 200;
const FINAL_AFTER_VAD_MS = 300;
/** A brisk 160 words a minute. */
const speechMsOf = (text: string) => Math.max(300, text.split(/\s+/).length * 375);
const unpunctuated = (text: string) => text.replace(/[.,!?]/g, '').trim();

/** Plays one turn; returns when the caller's last word ended and what the machine emitted, with times. */
function play(turn: Turn) {
  const h = createCallHarness({ agent: [] });
  h.start();
  h.send({ type: 'twilio.start', streamSid: 'MZ1' });
  h.advance(2_000);
  const t0 = h.clock.now();
  const events: { at: number; event: CallEvent }[] = [];
  let at = t0;
  for (const segment of turn.segments) {
    const speechMs = speechMsOf(segment.text);
    events.push({ at, event: { type: 'vad.speechStart', atMs: at } });
    // Interim words grow while the caller speaks.
    const words = unpunctuated(segment.text).split(/\s+/);
    words.forEach((_, i) => events.push({ at: at + ((i + 1) * speechMs) / words.length - 1, event: { type: 'stt.partial', text: words.slice(0, i + 1).join(' ') } }));
    const end = at + speechMs;
    events.push({ at: end + VAD_PAUSE_MS, event: { type: 'vad.pause', atMs: end } });
    events.push({ at: end + VAD_SILENCE_MS, event: { type: 'vad.speechEnd', atMs: end, speechMs, closedAtMs: end + VAD_SILENCE_MS } });
    events.push({ at: end + VAD_SILENCE_MS + FINAL_AFTER_VAD_MS, event: { type: 'stt.final', text: segment.text, atMs: end + VAD_SILENCE_MS + FINAL_AFTER_VAD_MS } });
    at = end + (segment.pauseMs ?? 0);
  }
  const lastWordAt = at;
  const timed: { at: number; command: CallCommand }[] = [];
  const seen = h.commands.length;
  const stamp = () => {
    for (const command of h.commands.splice(seen)) timed.push({ at: h.clock.now(), command });
  };
  // Events in time order (a resumed segment's speech can start before the last one's final arrives).
  for (const { at: when, event } of events.sort((a, b) => a.at - b.at)) {
    h.advance(when - h.clock.now());
    stamp();
    h.send(event);
    stamp();
  }
  for (let i = 0; i < 300; i++) {
    h.advance(10);
    stamp();
  }
  return { lastWordAt, timed, discarded: h.state().context.counts.discardedReplies, text: turn.segments.map((s) => s.text).join(' ') };
}

describe('end of turn on a corpus of scripted callers', () => {
  const results = corpus.turns.map((turn) => ({ turn, ...play(turn) }));

  it('never commits a turn, or plays a reply, while the caller is only pausing', () => {
    for (const r of results) {
      const turns = r.timed.filter((c) => c.command.type === 'out.turn');
      expect(turns, r.text).toHaveLength(1);
      const committed = turns[0]!;
      expect(committed.at, r.text).toBeGreaterThanOrEqual(r.lastWordAt);
      expect(committed.command).toMatchObject({ transcript: r.text });
      // Nothing of any reply, prepared and thrown away or not, reached the caller before their last word.
      const audioBefore = r.timed.filter((c) => (c.command.type === 'out.audio' || c.command.type === 'out.finish') && c.at < r.lastWordAt);
      expect(audioBefore, r.text).toEqual([]);
      expect(r.timed.filter((c) => c.command.type === 'out.clear'), r.text).toEqual([]);
      // …and the reply did play once the turn was committed.
      expect(r.timed.some((c) => c.command.type === 'out.audio' && c.at >= committed.at), r.text).toBe(true);
    }
  });

  it('finished utterances get a short window: median 250 ms or less', () => {
    const windows = results
      .filter((r) => r.turn.complete)
      .map((r) => r.timed.find((c) => c.command.type === 'out.turn')!.command)
      .map((c) => (c.type === 'out.turn' ? c.endOfTurn.windowMs : Infinity))
      .sort((a, b) => a - b);
    const median = windows[Math.floor((windows.length - 1) / 2)]!;
    expect(windows.length).toBeGreaterThanOrEqual(15);
    expect(median).toBeLessThanOrEqual(250);
  });

  it('throws away at most one prepared reply per four turns', () => {
    const discarded = results.reduce((n, r) => n + r.discarded, 0);
    expect(discarded).toBeGreaterThan(0); // the corpus does have callers who pause after open words
    expect(discarded / results.length).toBeLessThanOrEqual(0.25);
  });
});
