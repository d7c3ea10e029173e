import { describe, expect, it } from 'vitest';
import { createCallHarness, testTenant, type AgentScript } from '../support/call-harness.js';

const connect = (h: ReturnType<typeof createCallHarness>) => {
  h.start();
  h.send({ type: 'twilio.start', streamSid: 'MZ1' });
};

/** "when are you open" answered; a second into the answer the caller talks over it for 300 ms and stops (no words yet). */
function talkOverReply(later: AgentScript[] = []) {
  const h = createCallHarness({ agent: [{ text: 'We are open from nine in the morning until five in the evening on weekdays.' }, ...later] });
  connect(h);
  h.advance(2_000);
  h.say('when are you open');
  h.advance(600 + 1_000);
  h.send({ type: 'vad.speechStart', atMs: 0 });
  h.advance(300);
  h.send({ type: 'vad.speechEnd', atMs: 0, speechMs: 300 });
  return h;
}

describe('call machine on a simulated clock', () => {
  it('greets, answers a question, and says goodbye when asked', async () => {
    const h = createCallHarness({
      agent: [{ text: 'We are open nine to five. Anything else?' }, { text: 'Goodbye!', action: { type: 'end', reason: 'caller' } }],
    });
    connect(h);
    expect(h.matches('greeting')).toBe(true);
    h.advance(2_000);
    expect(h.matches({ listening: 'waiting' })).toBe(true);
    expect(h.commands.some((c) => c.type === 'out.startRecording')).toBe(true);
    h.say('what are your hours');
    // A finished question: the reply is prepared while the short end-of-turn window runs.
    expect(h.matches({ reply: { preparing: 'pausing' } })).toBe(true);
    h.advance(600);
    expect(h.matches({ reply: 'speaking' })).toBe(true);
    h.advance(10_000);
    expect(h.matches({ listening: 'waiting' })).toBe(true);
    expect(h.state().context.history).toEqual([
      { role: 'caller', text: 'what are your hours' },
      { role: 'agent', text: 'We are open nine to five. Anything else?' },
    ]);
    h.say('no thanks bye');
    h.advance(600);
    h.advance(5_000);
    await h.settle();
    expect(h.restCalls).toEqual(['hangup:completed']);
    expect(h.state().status).toBe('done');
    expect(h.commands.at(-1)).toEqual({ type: 'out.ended', outcome: 'completed' });
  });

  it('barge-in clears at once and cuts the reply to what was heard', () => {
    const h = createCallHarness({ agent: [{ text: 'Our clinic offers vaccinations, dental care, surgery and boarding for cats and dogs.' }, { text: 'Sure.' }] });
    connect(h);
    h.advance(2_000);
    h.say('what services do you have');
    h.advance(600);
    expect(h.matches({ reply: 'speaking' })).toBe(true);
    h.advance(1_200);
    const before = h.commands.length;
    h.send({ type: 'vad.speechStart', atMs: 0 });
    expect(h.commands.slice(before)).toEqual([{ type: 'out.clear', generation: expect.any(Number) as number }]);
    expect(h.matches({ reply: { interrupted: 'callerTalking' } })).toBe(true);
    h.send({ type: 'stt.partial', text: 'how much is dental' });
    expect(h.matches({ listening: 'hearing' })).toBe(true);
    const agentLine = h.state().context.history.at(-1);
    expect(agentLine?.role).toBe('agent');
    expect(agentLine?.text.length).toBeGreaterThan(0);
    expect(agentLine?.text.length).toBeLessThan(40);
  });

  it('a backchannel while we speak resumes the reply from the heard position', () => {
    const h = talkOverReply();
    h.send({ type: 'stt.final', text: 'mm-hmm', atMs: 0 });
    expect(h.matches({ reply: 'speaking' })).toBe(true);
    const resume = h.commands.find((c) => c.type === 'out.resume');
    expect(resume).toMatchObject({ type: 'out.resume', fromMs: expect.any(Number) as number });
    expect(h.state().context.counts.falseInterruptions).toBe(1);
    h.advance(10_000);
    expect(h.matches({ listening: 'waiting' })).toBe(true);
  });

  it('words over the reply that a slow recognizer sends a second after the caller stopped still end it and become the turn', () => {
    const h = talkOverReply([{ text: 'Simba, got it.' }]);
    // The reply stays paused while the segment's final is owed (it used to resume after 600 ms and
    // then drop the late words).
    h.advance(1_000);
    expect(h.matches({ reply: { interrupted: 'judging' } })).toBe(true);
    expect(h.commands.some((c) => c.type === 'out.resume')).toBe(false);
    h.send({ type: 'stt.final', text: 'his name is simba', atMs: 0 });
    h.advance(5_000);
    expect(h.state().context.history.filter((t) => t.role === 'caller').map((t) => t.text)).toEqual(['when are you open', 'his name is simba']);
    expect(h.state().context.counts.falseInterruptions).toBe(0);
  });

  it('no final at all within the recognizer budget: the reply resumes', () => {
    const h = talkOverReply();
    h.advance(1_900);
    expect(h.matches({ reply: { interrupted: 'judging' } })).toBe(true);
    h.advance(200);
    expect(h.matches({ reply: 'speaking' })).toBe(true);
    expect(h.state().context.counts.falseInterruptions).toBe(1);
  });

  it('a clear emergency preempts even the greeting, then transfers to the emergency line', () => {
    const h = createCallHarness();
    connect(h);
    h.send({ type: 'stt.final', text: "my cat can't breathe", atMs: 0, confidence: 0.9 });
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    expect(h.commands).toContainEqual({
      type: 'out.emergency',
      source: { via: 'speech', keyword: "can't breathe", certainty: 'clear', basis: 'phrase', transcript: 'final', confidence: 0.9 },
      check: null,
    });
    h.send({ type: 'vad.speechStart', atMs: 0 });
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    h.advance(5_000);
    expect(h.restCalls).toEqual(['transfer:emergency']);
  });

  it('"not an emergency" does not trigger the emergency path', () => {
    const h = createCallHarness();
    connect(h);
    h.send({ type: 'stt.partial', text: "it's not an emergency" });
    expect(h.matches('greeting')).toBe(true);
  });

  it('consent: nothing is recorded before a yes', () => {
    const h = createCallHarness({ tenant: testTenant({ consent: { required: true, onRefusal: 'continue' } }) });
    connect(h);
    h.advance(2_000);
    expect(h.matches({ consent: 'asking' })).toBe(true);
    expect(h.commands.some((c) => c.type === 'out.startRecording')).toBe(false);
    h.advance(3_000);
    expect(h.matches({ consent: 'waiting' })).toBe(true);
    h.say('yes that is fine');
    expect(h.matches('listening')).toBe(true);
    expect(h.commands.filter((c) => c.type === 'out.startRecording')).toHaveLength(1);
  });

  it('silence ladder: two nudges, then goodbye and hang-up', async () => {
    const h = createCallHarness();
    connect(h);
    h.advance(2_000);
    h.advance(15_000);
    expect(h.matches({ listening: 'nudging' })).toBe(true);
    h.advance(2_000 + 15_000);
    h.advance(2_000 + 15_000);
    h.advance(3_000);
    await h.settle();
    expect(h.state().status).toBe('done');
    expect(h.state().context.outcome).toBe('silence');
  });

  it('DTMF 0 mid-reply clears playback and transfers; a failed transfer apologises and keeps listening', async () => {
    const h = createCallHarness({ transferFails: true, agent: [{ text: 'Let me tell you a long story about our clinic and its history.' }] });
    connect(h);
    h.advance(2_000);
    h.say('tell me about you');
    h.advance(600 + 500);
    h.send({ type: 'twilio.dtmf', digit: '0' });
    expect(h.commands.some((c) => c.type === 'out.clear')).toBe(true);
    expect(h.matches({ transferring: 'announcing' })).toBe(true);
    h.advance(3_000);
    expect(h.restCalls).toEqual(['transfer:frontDesk']);
    await h.settle();
    expect(h.matches({ transferring: 'failed' })).toBe(true);
    h.advance(3_000);
    expect(h.matches('listening')).toBe(true);
  });

  it('caller hang-up mid-reply ends the call cleanly', () => {
    const h = createCallHarness({ agent: [{ text: 'A long answer that will be cut off.' }] });
    connect(h);
    h.advance(2_000);
    h.say('hello');
    h.advance(700);
    h.send({ type: 'twilio.stop' });
    expect(h.state().status).toBe('done');
    expect(h.state().context.outcome).toBe('callerHungUp');
    expect(h.restCalls).toEqual([]);
  });

  it('a slow agent gets a filler after the configured delay', () => {
    const h = createCallHarness({ agent: [{ text: 'Here you go.', delayMs: 3_000 }] });
    connect(h);
    h.advance(2_000);
    h.say('question');
    h.advance(600);
    expect(h.matches({ reply: 'thinking' })).toBe(true);
    h.advance(1_500);
    expect(h.matches({ reply: 'speaking' })).toBe(true);
    h.advance(8_000);
    expect(h.matches({ listening: 'waiting' })).toBe(true);
    expect(h.state().context.history.at(-1)).toEqual({ role: 'agent', text: 'Here you go.' });
  });
});

describe('clinic hours in the call (openNow at the call start)', () => {
  const closed = () => testTenant({ openNow: false, menu: { '0': { action: 'transfer', target: 'frontDesk', label: 'the front desk' } } });

  it('greets with the closed variant after hours and the usual greeting in hours', () => {
    const open = createCallHarness();
    connect(open);
    expect(open.clips[0]).toBe('greeting');
    const h = createCallHarness({ tenant: closed() });
    connect(h);
    expect(h.clips[0]).toBe('greetingClosed');
  });

  it('after hours the front-desk key goes to the receptionist (a message), not to a transfer', () => {
    const h = createCallHarness({ tenant: closed(), agent: [{ text: "We're closed right now. I can take a message. What is your name?" }] });
    connect(h);
    h.advance(2_000);
    h.send({ type: 'twilio.dtmf', digit: '0' });
    expect(h.matches('reply')).toBe(true);
    expect(h.agentInputs.at(-1)?.transcript).toBe('caller pressed 0: front desk');
    h.advance(10_000);
    expect(h.restCalls).toEqual([]);
    // In hours the same key transfers.
    const open = createCallHarness({ tenant: testTenant({ menu: { '0': { action: 'transfer', target: 'frontDesk', label: 'the front desk' } } }) });
    connect(open);
    open.advance(2_000);
    open.send({ type: 'twilio.dtmf', digit: '0' });
    expect(open.matches('transferring')).toBe(true);
  });

  it('after hours an emergency with a line skips the long script and goes straight to the line', async () => {
    const h = createCallHarness({ tenant: closed() });
    connect(h);
    h.advance(2_000);
    h.send({ type: 'stt.final', text: 'my dog is bleeding, it is an emergency', atMs: 0 });
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    expect(h.clips.at(-1)).toBe('emergencyAfterHours');
    h.advance(5_000);
    await h.settle();
    expect(h.restCalls).toEqual(['transfer:emergency']);
    // Without a line, after hours too, the clinic's script is the help the caller gets.
    const noLine = createCallHarness({ tenant: testTenant({ openNow: false, emergency: { keywords: ['bleeding'], digit: '9', hasLine: false } }) });
    connect(noLine);
    noLine.advance(2_000);
    noLine.send({ type: 'twilio.dtmf', digit: '9' });
    expect(noLine.clips.at(-1)).toBe('emergency');
  });
});
