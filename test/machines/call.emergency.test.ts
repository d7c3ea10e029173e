/**
 * The two-step emergency check on XState's simulated clock (docs/design/conversation.md §4): clear
 * triggers go straight to the script; uncertain ones ask "Is your pet in danger right now?" first,
 * and every way out of that question is taken here, with its recorded trigger and answer.
 */
import { describe, expect, it } from 'vitest';
import { BUDGETS } from '../../machines/call/budgets.js';
import type { CallCommand } from '../../machines/call/call.types.js';
import { createCallHarness, testTenant, type CallHarness, type HarnessOptions } from '../support/call-harness.js';

/** Connected and listening (the greeting played). */
const listening = (options: HarnessOptions = {}) => {
  const h = createCallHarness(options);
  h.start();
  h.send({ type: 'twilio.start', streamSid: 'MZ1' });
  h.advance(2_000);
  expect(h.matches({ listening: 'waiting' })).toBe(true);
  return h;
};

const emergencies = (h: CallHarness) => h.commands.filter((c): c is Extract<CallCommand, { type: 'out.emergency' }> => c.type === 'out.emergency');

/** The misheard "sore ear": one keyword in an interim transcript. */
const partialSeizure = (h: CallHarness) => h.send({ type: 'stt.partial', text: 'my rabbit had a seizure' });
const PARTIAL_TRIGGER = { via: 'speech', keyword: 'seizure', certainty: 'uncertain', basis: 'partial', transcript: 'partial', confidence: null } as const;

/** The question asked and heard (the harness plays the clip in 1 s). */
const asked = (h: CallHarness) => {
  expect(h.matches({ emergency: { checking: 'asking' } })).toBe(true);
  expect(h.clips.at(-1)).toBe('emergencyCheck');
  h.advance(1_100);
  expect(h.matches({ emergency: { checking: 'waiting' } })).toBe(true);
};

describe('an uncertain emergency trigger asks first', () => {
  it('a lone keyword in a partial asks; "yes" starts the script and the transfer', async () => {
    const h = listening();
    partialSeizure(h);
    expect(h.state().context.emergencyCheck).toEqual({ trigger: PARTIAL_TRIGGER, answer: null });
    expect(h.state().context.emergency).toBeNull();
    expect(emergencies(h)).toEqual([]);
    asked(h);
    // The rest of the same utterance is not an answer.
    h.send({ type: 'stt.final', text: 'my rabbit had a seizure', atMs: 0, confidence: 0.88 });
    expect(h.matches({ emergency: { checking: 'waiting' } })).toBe(true);
    h.send({ type: 'stt.final', text: 'yes', atMs: 0, confidence: 0.9 });
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    expect(h.clips.at(-1)).toBe('emergency');
    expect(emergencies(h)).toEqual([{ type: 'out.emergency', source: PARTIAL_TRIGGER, check: 'saidYes' }]);
    expect(h.state().context.emergency).toEqual(PARTIAL_TRIGGER);
    expect(h.state().context.emergencyCheck?.answer).toBe('saidYes');
    h.advance(5_000);
    await h.settle();
    expect(h.restCalls).toEqual(['transfer:emergency']);
    expect(h.state().context.outcome).toBe('emergency');
  });

  it('"no" acknowledges, returns to the conversation, records the check, and is not asked again', () => {
    const h = listening({ agent: [{ text: 'Sorry to hear that. Let me take a message.' }] });
    partialSeizure(h);
    asked(h);
    h.send({ type: 'stt.final', text: 'no', atMs: 0, confidence: 0.9 });
    expect(h.matches({ emergency: 'dismissed' })).toBe(true);
    expect(h.clips.at(-1)).toBe('emergencyCheckNo');
    h.advance(1_100);
    expect(h.matches({ listening: 'waiting' })).toBe(true);
    const c = h.state().context;
    expect(c.emergency).toBeNull();
    expect(c.emergencyCheck).toEqual({ trigger: PARTIAL_TRIGGER, answer: 'saidNo' });
    expect(c.transfer).toBeNull();
    expect(c.outcome).toBeNull();
    // Neither the misheard words nor the answer became a turn.
    expect(c.turn.text).toBe('');
    expect(c.history).toEqual([]);
    expect(emergencies(h)).toEqual([]);

    // Later uncertain keywords are the caller's words for the receptionist, not a second question.
    h.send({ type: 'stt.partial', text: 'she had a seizure' });
    expect(h.matches('listening')).toBe(true);
    h.say('she had a seizure last year');
    // The end-of-turn window runs with the reply prepared on those words; nothing is committed yet.
    expect(h.matches({ reply: 'preparing' })).toBe(true);
    expect(h.state().context.history).toEqual([]);
    h.advance(700);
    expect(h.matches('reply')).toBe(true);
    expect(h.state().context.history).toEqual([{ role: 'caller', text: 'she had a seizure last year' }]);
    expect(h.agentInputs.at(-1)?.transcript).toBe('she had a seizure last year');
    expect(h.clips.filter((clip) => clip === 'emergencyCheck')).toHaveLength(1);
  });

  it('after a no, a clear keyword still starts the script at once', () => {
    const h = listening();
    partialSeizure(h);
    asked(h);
    h.send({ type: 'twilio.dtmf', digit: '2' });
    expect(h.state().context.emergencyCheck?.answer).toBe('pressedNo');
    h.advance(1_100);
    h.send({ type: 'stt.final', text: "she can't breathe", atMs: 0, confidence: 0.9 });
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    expect(emergencies(h)).toEqual([
      {
        type: 'out.emergency',
        source: { via: 'speech', keyword: "can't breathe", certainty: 'clear', basis: 'phrase', transcript: 'final', confidence: 0.9 },
        check: 'pressedNo',
      },
    ]);
  });

  it('key 1 is yes, key 2 is no', () => {
    const yes = listening();
    partialSeizure(yes);
    asked(yes);
    yes.send({ type: 'twilio.dtmf', digit: '1' });
    expect(yes.matches({ emergency: 'instructing' })).toBe(true);
    expect(emergencies(yes)).toEqual([{ type: 'out.emergency', source: PARTIAL_TRIGGER, check: 'pressedYes' }]);

    const no = listening();
    partialSeizure(no);
    asked(no);
    no.send({ type: 'twilio.dtmf', digit: '2' });
    expect(no.matches({ emergency: 'dismissed' })).toBe(true);
    no.advance(1_100);
    expect(no.matches({ listening: 'waiting' })).toBe(true);
    // Key 1 and 2 answered the question: no menu entry was raised.
    expect(no.agentInputs).toEqual([]);
  });

  it('no answer within emergencyAnswerMs of the question counts as yes', () => {
    const h = listening();
    partialSeizure(h);
    asked(h);
    h.advance(BUDGETS.emergencyAnswerMs - 200);
    expect(h.matches({ emergency: { checking: 'waiting' } })).toBe(true);
    h.advance(200);
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    expect(emergencies(h)).toEqual([{ type: 'out.emergency', source: PARTIAL_TRIGGER, check: 'noAnswer' }]);
  });

  it('a question whose playback never completes still ends in the script after emergencyCheckMaxMs', () => {
    const h = createCallHarness({ noMarks: true });
    h.start();
    h.send({ type: 'twilio.start', streamSid: 'MZ1' });
    partialSeizure(h); // during the greeting, whose marks never come back either
    expect(h.matches({ emergency: { checking: 'asking' } })).toBe(true);
    h.advance(BUDGETS.emergencyCheckMaxMs - 10);
    expect(h.matches({ emergency: { checking: 'asking' } })).toBe(true);
    h.advance(10);
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    expect(h.state().context.emergencyCheck?.answer).toBe('noAnswer');
  });

  it('an answer over the question acts at once and stops the question', () => {
    const h = listening();
    partialSeizure(h);
    h.advance(300);
    const before = h.commands.length;
    h.send({ type: 'stt.final', text: 'yes please hurry', atMs: 0, confidence: 0.9 });
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    expect(h.commands.slice(before).some((c) => c.type === 'out.clear')).toBe(true);
  });

  it('during the check the emergency key, or a clear keyword, goes straight to the script', () => {
    const key = listening();
    partialSeizure(key);
    key.advance(300);
    key.send({ type: 'twilio.dtmf', digit: '9' });
    expect(key.matches({ emergency: 'instructing' })).toBe(true);
    expect(emergencies(key)).toEqual([{ type: 'out.emergency', source: { via: 'dtmf', digit: '9', certainty: 'clear' }, check: 'emergencyKey' }]);
    expect(key.state().context.emergencyCheck).toEqual({ trigger: PARTIAL_TRIGGER, answer: 'emergencyKey' });

    const words = listening();
    partialSeizure(words);
    asked(words);
    words.send({ type: 'stt.final', text: "no he can't breathe", atMs: 0, confidence: 0.9 });
    // "no" right before the keyword negates it (the negation rule): this is a no.
    expect(words.matches({ emergency: 'dismissed' })).toBe(true);
    const clear = listening();
    partialSeizure(clear);
    asked(clear);
    clear.send({ type: 'stt.final', text: "he can't breathe", atMs: 0, confidence: 0.9 });
    expect(clear.matches({ emergency: 'instructing' })).toBe(true);
    expect(emergencies(clear)[0]?.check).toBe('clearKeyword');
    expect(emergencies(clear)[0]?.source).toMatchObject({ keyword: "can't breathe", certainty: 'clear' });
  });

  it('a caller hanging up during the check ends the call; the open check stays recorded', () => {
    const h = listening();
    partialSeizure(h);
    asked(h);
    h.send({ type: 'twilio.stop' });
    expect(h.state().status).toBe('done');
    expect(h.state().context.outcome).toBe('callerHungUp');
    expect(h.state().context.emergency).toBeNull();
    expect(h.state().context.emergencyCheck).toEqual({ trigger: PARTIAL_TRIGGER, answer: null });
    expect(h.restCalls).toEqual([]);
  });

  it('a drain hand-off does not cut the question', () => {
    const h = listening();
    partialSeizure(h);
    h.send({ type: 'call.handoff', reason: 'shutdown' });
    h.send({ type: 'call.hangup', reason: 'drain' });
    expect(h.matches({ emergency: { checking: 'asking' } })).toBe(true);
  });

  it('a low-confidence final asks even for a phrase', () => {
    const h = listening();
    h.send({ type: 'stt.final', text: "my dog can't breathe", atMs: 0, confidence: 0.4 });
    expect(h.matches({ emergency: 'checking' })).toBe(true);
    expect(h.state().context.emergencyCheck?.trigger).toEqual({
      via: 'speech', keyword: "can't breathe", certainty: 'uncertain', basis: 'lowConfidence', transcript: 'final', confidence: 0.4,
    });
  });

  it('with consent still pending, a no goes back to the consent question', () => {
    const h = createCallHarness({ tenant: testTenant({ consent: { required: true, onRefusal: 'continue' } }) });
    h.start();
    h.send({ type: 'twilio.start', streamSid: 'MZ1' });
    h.advance(2_000);
    expect(h.matches('consent')).toBe(true);
    partialSeizure(h);
    asked(h);
    h.send({ type: 'stt.final', text: 'no', atMs: 0 });
    h.advance(1_100);
    expect(h.matches({ consent: 'asking' })).toBe(true);
    expect(h.state().context.consent).toBe('pending');
  });
});

describe('clear triggers go straight to the script', () => {
  it('a multi-word keyword, or two keywords, in a confident final', () => {
    for (const text of ["my cat can't breathe", 'my dog is bleeding, this is an emergency']) {
      const h = listening();
      h.send({ type: 'stt.final', text, atMs: 0, confidence: 0.92 });
      expect(h.matches({ emergency: 'instructing' }), text).toBe(true);
      expect(h.clips).not.toContain('emergencyCheck');
      expect(emergencies(h)[0]?.source).toMatchObject({ certainty: 'clear', transcript: 'final' });
    }
  });

  it('a final without a confidence (cloud recognizers report none) is not held to the threshold', () => {
    const h = listening();
    h.send({ type: 'stt.final', text: "he can't breathe", atMs: 0 });
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    expect(emergencies(h)[0]?.source).toMatchObject({ confidence: null, certainty: 'clear' });
  });

  it('the emergency key', () => {
    const h = listening();
    h.send({ type: 'twilio.dtmf', digit: '9' });
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    expect(emergencies(h)).toEqual([{ type: 'out.emergency', source: { via: 'dtmf', digit: '9', certainty: 'clear' }, check: null }]);
  });

  it("the agent's emergency action, after its line was heard", () => {
    const h = listening({ agent: [{ text: 'This sounds like an emergency.', action: { type: 'emergency', reason: 'collapsed' } }] });
    h.say('my dog collapsed and is not moving');
    h.advance(700);
    expect(h.matches('reply')).toBe(true);
    h.advance(3_000);
    expect(h.matches({ emergency: 'instructing' })).toBe(true);
    expect(h.clips).not.toContain('emergencyCheck');
    expect(emergencies(h)).toEqual([{ type: 'out.emergency', source: { via: 'agent', reason: 'collapsed', certainty: 'clear' }, check: null }]);
  });
});
