/**
 * Replies prepared during the end-of-turn window (docs/design/conversation.md §1.5), on XState's
 * simulated clock: started at the end of speech on the recognizer's interim words, never played
 * or kept before the window closes, thrown away when the caller goes on or the words change.
 */
import { describe, expect, it } from 'vitest';
import type { CallCommand } from '../../machines/call/call.types.js';
import { createCallHarness, testTenant, type CallHarness } from '../support/call-harness.js';

const connect = (h: CallHarness) => {
  h.start();
  h.send({ type: 'twilio.start', streamSid: 'MZ1' });
  h.advance(2_000);
};

/**
 * The caller talks 800 ms and falls silent; the VAD reports the pause 100 ms later. `partial` (if
 * any) arrives `partialAfterMs` after the silence began (negative: before it, while they talked).
 * Returns where the silence began.
 */
const talkThenPause = (h: CallHarness, partial: string | null, partialAfterMs = -30) => {
  h.send({ type: 'vad.speechStart', atMs: h.clock.now() });
  h.advance(800);
  const silentFrom = h.clock.now();
  const after = Math.max(0, partialAfterMs);
  h.advance(after);
  if (partial !== null) h.send({ type: 'stt.partial', text: partial, atMs: silentFrom + partialAfterMs });
  h.advance(100 - after);
  h.send({ type: 'vad.pause', atMs: silentFrom });
  return silentFrom;
};

/** "what are your" was there; "hours" comes `afterMs` later: the reply is prepared on the whole words. Returns its generation. */
const lastWordComes = (h: CallHarness, afterMs: number) => {
  expect(h.agentInputs).toHaveLength(0);
  h.advance(afterMs);
  h.send({ type: 'stt.partial', text: 'what are your hours' });
  expect(h.matches({ reply: { preparing: 'transcribing' } })).toBe(true);
  expect(h.agentInputs.at(-1)).toMatchObject({ transcript: 'what are your hours' });
  return h.state().context.reply!.generation;
};

/** Commands about reply generation `g` (audio as a byte count). */
const about = (h: CallHarness, g: number) =>
  h.commands
    .filter((c): c is Extract<CallCommand, { generation: number }> => 'generation' in c && c.generation === g)
    .map((c) => (c.type === 'out.audio' ? `audio ${c.audio.length}` : c.type));

describe('replies prepared while the end-of-turn window runs', () => {
  it('starts the reply at the end of speech on the interim words and plays it the moment the window closes', () => {
    const h = createCallHarness({ agent: [{ text: 'We are open nine to five, Monday to Friday. Anything else?', delayMs: 100 }] });
    connect(h);
    h.speak('what are your hours', { final: null });
    // The VAD closed the segment (200 ms after the last word): the agent is asked at once.
    expect(h.matches({ reply: { preparing: 'transcribing' } })).toBe(true);
    expect(h.agentInputs.at(-1)).toMatchObject({ transcript: 'what are your hours', history: [] });
    const g = h.state().context.reply!.generation;
    h.advance(150);
    // The agent answered and the first clause was synthesized: held, nothing sent, nothing kept.
    expect(h.state().context.playback.held?.length).toBeGreaterThan(0);
    expect(about(h, g)).toEqual([]);
    expect(h.state().context.history).toEqual([]);
    expect(h.agentCommits).toEqual([]);
    // The final (300 ms after the VAD) means the same; the 250 ms complete-words window has passed: commit now.
    h.advance(150);
    h.send({ type: 'stt.final', text: 'What are your hours?', atMs: h.clock.now() });
    expect(h.matches({ reply: 'speaking' })).toBe(true);
    const turn = h.commands.find((c) => c.type === 'out.turn');
    expect(turn).toEqual({ type: 'out.turn', generation: g, transcript: 'What are your hours?', endOfTurn: { kind: 'complete', windowMs: 250 }, prepared: true });
    // Then the held audio, in order, and (the synthesizer having finished meanwhile) the end of it.
    const sent = about(h, g);
    expect(sent[0]).toBe('out.turn');
    expect(sent.slice(1, -1).length).toBeGreaterThan(1);
    expect(sent.slice(1, -1).every((c) => c.startsWith('audio'))).toBe(true);
    expect(sent.at(-1)).toBe('out.finish');
    expect(h.agentCommits).toEqual([g]);
    expect(h.state().context.history).toEqual([{ role: 'caller', text: 'What are your hours?' }]);
    h.advance(10_000);
    expect(h.matches({ listening: 'waiting' })).toBe(true);
    expect(h.state().context.history.at(-1)).toEqual({ role: 'agent', text: 'We are open nine to five, Monday to Friday. Anything else?' });
    expect(h.state().context.counts.discardedReplies).toBe(0);
  });

  it('interim words that finish the question after the VAD closed the segment start the reply before the final', () => {
    const h = createCallHarness({ agent: [{ text: 'We are open nine to five, Monday to Friday.', delayMs: 100 }] });
    connect(h);
    // The recognizer had not yet sent the last word when the segment closed: "what are your" reads unfinished.
    h.speak('what are your hours', { partial: 'what are your', final: null });
    expect(h.matches({ listening: 'transcribing' })).toBe(true);
    const g = lastWordComes(h, 50);
    h.advance(250);
    h.send({ type: 'stt.final', text: 'What are your hours?', atMs: h.clock.now() });
    expect(h.commands.find((c) => c.type === 'out.turn')).toEqual({
      type: 'out.turn', generation: g, transcript: 'What are your hours?', endOfTurn: { kind: 'complete', windowMs: 250 }, prepared: true,
    });
    expect(h.matches({ reply: 'speaking' })).toBe(true);

    // Words streamed one by one after the commit (OpenAI Realtime) prepare nothing until they read as finished.
    const streamed = createCallHarness();
    connect(streamed);
    streamed.speak('what are your hours', { partial: null, final: null });
    for (const words of ['what', 'what are', 'what are your']) streamed.send({ type: 'stt.partial', text: words });
    expect(streamed.agentInputs).toHaveLength(0);
    streamed.send({ type: 'stt.partial', text: 'what are your hours' });
    expect(streamed.agentInputs.map((i) => i.transcript)).toEqual(['what are your hours']);

    // Late words that still trail off ("…is um") wait for the final and the long window.
    const open = createCallHarness();
    connect(open);
    open.speak('my dog is um', { partial: 'my dog is', final: null });
    expect(open.matches({ listening: 'transcribing' })).toBe(true);
    open.send({ type: 'stt.partial', text: 'my dog is um' });
    expect(open.matches({ listening: 'transcribing' })).toBe(true);
    expect(open.agentInputs).toHaveLength(0);
    // …and emergency words in them still act at once.
    open.send({ type: 'stt.partial', text: 'my dog is bleeding' });
    expect(open.matches('emergency')).toBe(true);
  });

  it('at a short pause, finished words start the reply before the segment closes; words one short restart it; the caller going on takes it back', () => {
    const h = createCallHarness({ agent: [{ text: 'We are open nine to five, Monday to Friday.', delayMs: 100 }] });
    connect(h);
    const endedAt = talkThenPause(h, 'what are your');
    expect(h.matches({ listening: 'paused' })).toBe(true);
    // The recognizer catches up on the last word 150 ms after it: the reply starts, 50 ms before the close.
    const g = lastWordComes(h, 50);
    // The VAD closes the segment on the same silence: nothing changes; the final commits the turn.
    h.advance(50);
    h.send({ type: 'vad.speechEnd', atMs: endedAt, speechMs: 800, closedAtMs: h.clock.now() });
    expect(h.matches({ reply: { preparing: 'transcribing' } })).toBe(true);
    h.advance(300);
    h.send({ type: 'stt.final', text: 'What are your hours?', atMs: h.clock.now() });
    expect(h.commands.find((c) => c.type === 'out.turn')).toMatchObject({ generation: g, endOfTurn: { kind: 'complete', windowMs: 250 }, prepared: true });
    expect(h.matches({ reply: 'speaking' })).toBe(true);

    // Words sent before the caller fell silent may be one short: even finished-looking ones wait for the close.
    const settled = createCallHarness();
    connect(settled);
    talkThenPause(settled, 'what are your hours', -30);
    expect(settled.matches({ listening: 'paused' })).toBe(true);
    settled.advance(100);
    settled.send({ type: 'vad.speechEnd', atMs: settled.clock.now() - 200, speechMs: 800, closedAtMs: settled.clock.now() });
    expect(settled.agentInputs.map((i) => i.transcript)).toEqual(['what are your hours']);

    // Finished words sent after the caller fell silent start the reply at the pause; if they were
    // one short after all, the whole words start it again.
    const early = createCallHarness({ agent: [{ text: 'Yes, we see cats every day.', delayMs: 300 }] });
    connect(early);
    talkThenPause(early, 'do you see', 60);
    expect(early.matches({ reply: { preparing: 'transcribing' } })).toBe(true);
    const first = early.state().context.reply!.generation;
    early.advance(50);
    early.send({ type: 'stt.partial', text: 'do you see cats', atMs: early.clock.now() });
    expect(early.agentInputs.map((i) => i.transcript)).toEqual(['do you see', 'do you see cats']);
    expect(early.commands.find((c) => c.type === 'out.discard')).toEqual({ type: 'out.discard', generation: first, reason: 'transcriptChanged' });
    expect(early.agentStopped).toEqual([first]);
    expect(early.matches({ reply: { preparing: 'transcribing' } })).toBe(true);
    // The same words again (case, punctuation) change nothing; the final keeps the second reply.
    early.send({ type: 'stt.partial', text: 'Do you see cats?' });
    expect(early.agentInputs).toHaveLength(2);
    early.advance(350);
    early.send({ type: 'vad.speechEnd', atMs: early.clock.now() - 500, speechMs: 800, closedAtMs: early.clock.now() - 300 });
    early.send({ type: 'stt.final', text: 'Do you see cats?', atMs: early.clock.now() });
    expect(early.commands.find((c) => c.type === 'out.turn')).toMatchObject({ generation: first + 1, transcript: 'Do you see cats?', prepared: true });

    // The caller goes on before the segment closes: the prepared reply is thrown away, nothing was said.
    const resumed = createCallHarness({ agent: [{ text: 'We are open nine to five.', delayMs: 300 }] });
    connect(resumed);
    talkThenPause(resumed, null);
    resumed.send({ type: 'stt.partial', text: 'what are your hours', atMs: resumed.clock.now() });
    const r = resumed.state().context.reply!.generation;
    resumed.advance(50);
    resumed.send({ type: 'vad.resume', atMs: resumed.clock.now() });
    expect(resumed.matches({ listening: 'hearing' })).toBe(true);
    expect(about(resumed, r)).toEqual(['out.discard']);
    expect(resumed.commands.find((c) => c.type === 'out.discard')).toEqual({ type: 'out.discard', generation: r, reason: 'callerResumed' });
    expect(resumed.agentStopped).toEqual([r]);

    // Trailing words at a pause prepare nothing; the caller going on is just more of the turn.
    const open = createCallHarness();
    connect(open);
    talkThenPause(open, 'my dog is', 20);
    expect(open.matches({ listening: 'paused' })).toBe(true);
    open.send({ type: 'vad.resume', atMs: open.clock.now() });
    expect(open.matches({ listening: 'hearing' })).toBe(true);
    expect(open.agentInputs).toHaveLength(0);
    expect(open.state().context.counts.discardedReplies).toBe(0);
  });

  it('waits out the window when the final comes early, then plays held audio at once', () => {
    const h = createCallHarness({ agent: [{ text: 'Sure.' }] });
    connect(h);
    // "Bella" reads as open: the normal 600 ms window (test clinic), 200 ms of it spent by the VAD.
    h.speak('Bella', { finalAfterMs: 50 });
    expect(h.matches({ reply: { preparing: 'pausing' } })).toBe(true);
    expect(h.commands.some((c) => c.type === 'out.turn')).toBe(false);
    h.advance(340);
    expect(h.commands.some((c) => c.type === 'out.turn')).toBe(false);
    h.advance(20);
    expect(h.commands.find((c) => c.type === 'out.turn')).toMatchObject({ endOfTurn: { kind: 'open', windowMs: 600 } });
    expect(h.matches({ reply: 'speaking' })).toBe(true);
  });

  it('the caller going on throws the prepared reply away: nothing played, cleared or kept, the agent stopped', () => {
    const h = createCallHarness({ agent: [{ text: 'We are open nine to five.', delayMs: 400 }] });
    connect(h);
    h.speak('what are your hours', { final: null });
    const g = h.state().context.reply!.generation;
    h.advance(100);
    h.send({ type: 'vad.speechStart', atMs: h.clock.now() });
    expect(h.matches({ listening: 'hearing' })).toBe(true);
    expect(about(h, g)).toEqual(['out.discard']);
    expect(h.commands.find((c) => c.type === 'out.discard')).toEqual({ type: 'out.discard', generation: g, reason: 'callerResumed' });
    expect(h.agentStopped).toEqual([g]);
    expect(h.state().context.counts.discardedReplies).toBe(1);
    // The first segment's final comes while they talk; the rest of the turn follows.
    h.send({ type: 'stt.final', text: 'what are your hours', atMs: h.clock.now() });
    h.advance(600);
    h.send({ type: 'stt.partial', text: 'on saturday' });
    h.send({ type: 'vad.speechEnd', atMs: h.clock.now() - 200, speechMs: 600, closedAtMs: h.clock.now() });
    expect(h.agentInputs.at(-1)?.transcript).toBe('what are your hours on saturday');
    h.advance(300);
    h.send({ type: 'stt.final', text: 'on Saturday?', atMs: h.clock.now() });
    h.advance(1_000);
    expect(h.commands.filter((c) => c.type === 'out.turn')).toHaveLength(1);
    expect(h.state().context.history[0]).toEqual({ role: 'caller', text: 'what are your hours on Saturday?' });
    expect(h.commands.some((c) => c.type === 'out.clear')).toBe(false);
  });

  it('a final transcript that means something else starts over; after the clinic bound the turn just waits', () => {
    const h = createCallHarness({ tenant: testTenant({ timing: { ...testTenant().timing, maxPreemptsPerTurn: 2 } }) });
    connect(h);
    h.speak('what are your hours', { final: 'what are your prices', finalAfterMs: 20 });
    const [first, second] = h.agentInputs.slice(-2);
    expect(first?.transcript).toBe('what are your hours');
    expect(second?.transcript).toBe('what are your prices');
    expect(h.commands.find((c) => c.type === 'out.discard')).toEqual({ type: 'out.discard', generation: first!.generation, reason: 'transcriptChanged' });
    h.advance(500);
    expect(h.commands.find((c) => c.type === 'out.turn')).toMatchObject({ generation: second!.generation, transcript: 'what are your prices', prepared: true });
    // A final that comes after the window closed: the new reply starts committed.
    const late = createCallHarness();
    connect(late);
    late.speak('what are your hours', { final: 'what are your prices', finalAfterMs: 300 });
    expect(late.commands.find((c) => c.type === 'out.turn')).toMatchObject({ transcript: 'what are your prices', prepared: false });

    // Twice thrown away in one turn (the bound): the third try waits for the window to close.
    const b = createCallHarness();
    connect(b);
    b.speak('what are your hours', { final: null });
    b.send({ type: 'vad.speechStart', atMs: b.clock.now() });
    b.speak('on saturday', { final: null });
    b.send({ type: 'vad.speechStart', atMs: b.clock.now() });
    expect(b.state().context.counts.discardedReplies).toBe(2);
    const asked = b.agentInputs.length;
    b.speak('and sunday please', { final: 'and sunday please' });
    expect(b.agentInputs).toHaveLength(asked);
    expect(b.matches({ listening: 'pausing' })).toBe(true);
    b.advance(300);
    expect(b.agentInputs).toHaveLength(asked + 1);
    expect(b.commands.find((c) => c.type === 'out.turn')).toMatchObject({ prepared: false });
  });

  it('trailing-off words get the long window and no early reply; the reply is prepared only within the lead', () => {
    const h = createCallHarness();
    connect(h);
    h.speak('I need an appointment for my', { finalAfterMs: 300 });
    expect(h.matches({ listening: 'pausing' })).toBe(true);
    expect(h.state().context.turn.end).toMatchObject({ kind: 'incomplete', windowMs: 1800 });
    expect(h.agentInputs).toHaveLength(0);
    // 1800 − 500 spent − 700 lead: 600 ms more before preparing; the caller pausing 400 ms costs nothing.
    h.advance(400);
    h.speak('dog Rex.', { finalAfterMs: 100 });
    expect(h.state().context.counts.discardedReplies).toBe(0);
    expect(h.agentInputs).toHaveLength(1);
    expect(h.agentInputs[0]?.transcript).toBe('I need an appointment for my dog Rex.');

    // Silence after the trailing words: the reply is prepared 700 ms before the window closes.
    const s = createCallHarness();
    connect(s);
    s.speak('my dog is', { finalAfterMs: 300 });
    s.advance(590);
    expect(s.agentInputs).toHaveLength(0);
    s.advance(20);
    expect(s.matches({ reply: { preparing: 'pausing' } })).toBe(true);
    s.advance(680);
    expect(s.commands.some((c) => c.type === 'out.turn')).toBe(false);
    s.advance(30);
    expect(s.commands.find((c) => c.type === 'out.turn')).toMatchObject({ endOfTurn: { kind: 'incomplete', windowMs: 1800 }, prepared: true });
  });

  it('emergency words while preparing go to the emergency script; the prepared reply is dropped', () => {
    const h = createCallHarness({ agent: [{ text: 'Let me check.', delayMs: 500 }] });
    connect(h);
    h.speak('my dog ate something', { final: null });
    const g = h.state().context.reply!.generation;
    h.send({ type: 'stt.final', text: 'my dog ate poison', atMs: h.clock.now() });
    expect(h.matches('emergency')).toBe(true);
    expect(about(h, g)).toEqual(['out.discard']);
    expect(h.agentStopped).toEqual([g]);
    expect(h.state().context.history).toEqual([]);
  });

  it('an agent failure while preparing is apologised for only once the turn is committed', () => {
    const failing = createCallHarness({ agent: [{ error: 'boom' }] });
    connect(failing);
    failing.speak('what are your hours', { final: null });
    expect(failing.matches({ reply: { preparing: 'transcribing' } })).toBe(true);
    expect(failing.clips).not.toContain('apology');
    failing.advance(300);
    failing.send({ type: 'stt.final', text: 'what are your hours', atMs: failing.clock.now() });
    expect(failing.matches({ listening: 'apologizing' })).toBe(true);

    // The caller going on: no apology at all.
    const resumed = createCallHarness({ agent: [{ error: 'boom' }] });
    connect(resumed);
    resumed.speak('what are your hours', { final: null });
    resumed.send({ type: 'vad.speechStart', atMs: resumed.clock.now() });
    expect(resumed.matches({ listening: 'hearing' })).toBe(true);
    expect(resumed.clips).not.toContain('apology');
  });

  it('a synthesis failure after audio was held: the turn is committed, the held audio never sent, then the apology', () => {
    const h = createCallHarness({ agent: [{ text: 'We are open nine to five, Monday to Friday.', delayMs: 50 }] });
    connect(h);
    h.speak('what are your hours', { final: null });
    const g = h.state().context.reply!.generation;
    h.advance(150);
    expect(h.state().context.playback.held?.length).toBeGreaterThan(0);
    h.send({ type: 'tts.error', generation: g, message: 'vendor down' });
    // Still the caller's window: nothing said yet.
    expect(h.matches({ reply: 'preparing' })).toBe(true);
    h.send({ type: 'stt.final', text: 'what are your hours', atMs: h.clock.now() });
    h.advance(300);
    expect(h.matches({ listening: 'apologizing' })).toBe(true);
    // The caller's words are kept; not one byte of the failed reply reached Twilio, so nothing to clear.
    expect(about(h, g)).toEqual(['out.turn']);
    expect(h.state().context.history).toEqual([{ role: 'caller', text: 'what are your hours' }]);
    expect(h.clips).toContain('apology');
  });

  it('the agent expectation of a prepared reply applies only once its turn is committed', () => {
    const h = createCallHarness();
    connect(h);
    h.speak('what are your hours', { final: null });
    const g = h.state().context.reply!.generation;
    h.send({ type: 'agent.expect', generation: g, answer: 'long' });
    expect(h.state().context.turn.expect).toBe('normal');
    h.send({ type: 'vad.speechStart', atMs: h.clock.now() });
    expect(h.state().context.turn.expect).toBe('normal');
  });

  it('a clinic with preemptLeadMs 0 never prepares early', () => {
    const h = createCallHarness({ tenant: testTenant({ timing: { ...testTenant().timing, preemptLeadMs: 0 } }) });
    connect(h);
    h.speak('what are your hours', { final: null });
    expect(h.matches({ listening: 'transcribing' })).toBe(true);
    h.send({ type: 'stt.final', text: 'what are your hours', atMs: h.clock.now() });
    // The final came with 50 ms of the 250 ms window left: the reply starts when it closes.
    expect(h.agentInputs).toHaveLength(0);
    h.advance(50);
    expect(h.agentInputs).toHaveLength(1);
    expect(h.commands.find((c) => c.type === 'out.turn')).toMatchObject({ prepared: false, endOfTurn: { kind: 'complete', windowMs: 250 } });
  });
});
