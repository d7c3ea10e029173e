/**
 * The clinic's maximum call length (`limits.maxCallSeconds` → the machine's `maxCallDuration`
 * timer), on XState's simulated clock: the conversation wraps up politely, then the front desk
 * (open) or goodbye (closed), outcome `timeLimit`; never during the emergency script or a
 * transfer; every state on the way keeps its timeout.
 */
import { describe, expect, it } from 'vitest';
import { createCallHarness, testTenant, type HarnessOptions } from '../support/call-harness.js';

const LIMIT_MS = 60_000;
/** Silence prompts far apart, so a quiet caller is still on the line when the limit comes. */
const quietTiming = { ...testTenant().timing, silencePromptMs: 100_000 };

function call(options: HarnessOptions & { openNow?: boolean } = {}) {
  const h = createCallHarness({
    ...options,
    tenant: testTenant({ openNow: options.openNow ?? true, timing: quietTiming, limits: { maxCallMs: LIMIT_MS } }),
  });
  h.start();
  h.send({ type: 'twilio.start', streamSid: 'MZ1' });
  h.advance(2_000); // the greeting
  return h;
}

describe('maximum call length', () => {
  it('open clinic: at the limit the caller hears the wrap-up, then is handed to the front desk', async () => {
    const h = call();
    h.advance(LIMIT_MS - 2_010);
    expect(h.matches({ listening: 'waiting' })).toBe(true);
    expect(h.state().context.timeLimitReached).toBe(false);
    h.advance(10);
    expect(h.matches('wrappingUp')).toBe(true);
    expect(h.clips.at(-1)).toBe('timeLimit');
    h.advance(1_100); // the clip plays to its end
    await h.settle();
    expect(h.matches({ handingOff: 'handedOff' })).toBe(true);
    expect(h.restCalls).toEqual(['handoff:timeLimit']);
    h.send({ type: 'twilio.stop' });
    expect(h.state().status).toBe('done');
    expect(h.commands.at(-1)).toEqual({ type: 'out.ended', outcome: 'timeLimit' });
  });

  it('closed clinic: the wrap-up says goodbye and the call is hung up, with no second farewell', async () => {
    const h = call({ openNow: false });
    h.advance(LIMIT_MS - 2_000);
    expect(h.matches('wrappingUp')).toBe(true);
    h.advance(1_100);
    await h.settle();
    expect(h.clips.filter((c) => c === 'timeLimitClosed')).toHaveLength(1);
    expect(h.clips).not.toContain('goodbye');
    expect(h.restCalls).toEqual(['hangup:timeLimit']);
    expect(h.state().status).toBe('done');
    expect(h.commands.at(-1)).toEqual({ type: 'out.ended', outcome: 'timeLimit' });
  });

  it('a reply in progress is cut short (its queued audio cleared) for the wrap-up', () => {
    const h = call({ agent: [{ text: 'We offer vaccinations, dental care, surgery, boarding, grooming and a great deal more besides that.' }] });
    h.advance(LIMIT_MS - 6_000);
    h.say('what services do you have');
    h.advance(700);
    expect(h.matches({ reply: 'speaking' })).toBe(true);
    const replyGeneration = h.state().context.playback.generation;
    h.advance(LIMIT_MS - h.clock.now());
    expect(h.matches('wrappingUp')).toBe(true);
    expect(h.commands).toContainEqual({ type: 'out.clear', generation: replyGeneration });
    expect(h.clips.at(-1)).toBe('timeLimit');
  });

  it('never interrupts the emergency script or its transfer: the call goes to the emergency line', async () => {
    const h = call();
    h.advance(LIMIT_MS - 2_100);
    h.send({ type: 'stt.final', text: "my dog can't breathe", atMs: 0 });
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    h.advance(1_000); // the limit passes while the script plays (4 s)
    expect(h.state().context.timeLimitReached).toBe(true);
    expect(h.matches('emergency')).toBe(true);
    h.advance(4_000);
    await h.settle();
    expect(h.matches({ transferring: 'handedOff' })).toBe(true);
    expect(h.clips).not.toContain('timeLimit');
    expect(h.restCalls).toEqual(['transfer:emergency']);
    h.send({ type: 'twilio.stop' });
    expect(h.commands.at(-1)).toEqual({ type: 'out.ended', outcome: 'emergency' });
  });

  it('a transfer in progress finishes first; when it fails and the call comes back, the wrap-up follows', async () => {
    const h = call({ transferFails: true });
    h.advance(LIMIT_MS - 2_500);
    h.send({ type: 'twilio.dtmf', digit: '0' });
    expect(h.matches({ transferring: 'announcing' })).toBe(true);
    h.advance(1_000);
    await h.settle();
    expect(h.state().context.timeLimitReached).toBe(true);
    expect(h.matches({ transferring: 'failed' })).toBe(true); // not cut off by the limit
    h.advance(1_100); // "nobody could take the call", then back to the conversation: wrap-up at once
    expect(h.matches('wrappingUp')).toBe(true);
    expect(h.clips.slice(-3)).toEqual(['transfer', 'transferFailed', 'timeLimit']);
  });

  it('an emergency during the wrap-up still preempts it', () => {
    const h = call();
    h.advance(LIMIT_MS - 2_000);
    expect(h.matches('wrappingUp')).toBe(true);
    h.send({ type: 'twilio.dtmf', digit: '9' });
    expect(h.matches('emergency')).toBe(true);
  });

  it('keys do nothing during the wrap-up; its waiting states keep their timeouts when marks never come', async () => {
    const h = call({ noMarks: true, transferFails: true });
    h.advance(LIMIT_MS - 2_000);
    expect(h.matches('wrappingUp')).toBe(true);
    h.send({ type: 'twilio.dtmf', digit: '0' });
    expect(h.matches('wrappingUp')).toBe(true);
    h.advance(45_010); // promptTimeout: on without the clip's last mark
    await h.settle();
    // The hand-off REST update fails: the actor ends, and Twilio plays the key menu after </Connect>.
    expect(h.restCalls).toEqual(['handoff:timeLimit']);
    expect(h.state().status).toBe('done');
    expect(h.commands.at(-1)).toEqual({ type: 'out.ended', outcome: 'timeLimit' });
  });

  it('before the stream starts the limit waits: the stream timeout ends the call as before', () => {
    const h = createCallHarness({ tenant: testTenant({ limits: { maxCallMs: 30_000 } }) });
    h.start();
    h.advance(30_000);
    expect(h.state().context.timeLimitReached).toBe(true);
    expect(h.matches('connecting')).toBe(true);
    h.advance(30_000);
    expect(h.state().status).toBe('done');
    expect(h.commands.at(-1)).toEqual({ type: 'out.ended', outcome: 'noStream' });
  });
});
