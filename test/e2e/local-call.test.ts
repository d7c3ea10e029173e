/**
 * Acceptance, with no keys and no network: a caller simulated over the real Twilio protocol talks
 * to the engine running on its embedded providers (energy VAD, offline recognizer, rule-based
 * receptionist, offline synthesizer). The caller's lines are synthesized with the same local voice
 * (silence trimmed, as `npm run simulate` sends them). Times are checked against the bounds of the
 * matching scripted callers in scenarios/ (hours, emergency, press-zero), measured from the end of
 * the caller's last frame, the key press or the hang-up; test/sim checks the runner itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callerSpeech } from '../support/caller-speech.js';
import { FakeTwilio, testNumbersIn } from '../support/fake-twilio.js';
import { restRecorder } from '../support/rest-recorder.js';
import { startLocalEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';

let engine: TestEngine;
const twilioRest = restRecorder();
const calls: FakeTwilio[] = [];

const dial = async (to = '+15550109000') => {
  const call = await FakeTwilio.call({ serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to, from: '+15557654321' });
  calls.push(call);
  return call;
};

const untilQuiet = (call: FakeTwilio, ms?: number, timeoutMs?: number) => call.untilQuiet(ms, timeoutMs);

const stateOf = (callSid: string) => engine.registry.list().find((c) => c.callSid === callSid)?.state ?? 'ended';

/** Milliseconds from `since` (the call's clock) to when the call first is in `state` (prefix match). */
async function msUntilState(call: FakeTwilio, since: number, state: string, timeoutMs: number): Promise<number> {
  const at = (s: string) => s === state || s.startsWith(`${state}.`);
  await call.waitFor(() => at(stateOf(call.callSid)), timeoutMs, `state ${state}`);
  return call.now() - since;
}

/** Milliseconds from `since` to the first engine audio after it. */
const msUntilAudio = (call: FakeTwilio, since: number) =>
  (call.outbound.find((r) => r.message?.event === 'media' && r.atMs > since)?.atMs ?? Infinity) - since;

/** The longest silence from `since` to the end of the last audio heard (dead air). */
const longestSilence = (call: FakeTwilio, since: number) => Math.max(0, ...call.silenceGaps(0, { fromMs: since }).map((g) => g.ms));

beforeAll(async () => {
  engine = await startLocalEngine({
    rest: twilioRest.rest,
  });
}, 60_000);

afterAll(async () => {
  await Promise.all(calls.map((c) => c.dispose()));
  await engine?.close();
});

describe('a call on embedded providers, over the real Media Streams protocol', () => {
  it('greets, hears a question about hours and answers it as speech', async () => {
    const call = await dial();
    await untilQuiet(call);
    const greetingMs = call.heardMs();
    expect(greetingMs).toBeGreaterThan(800);
    expect(stateOf(call.callSid)).toBe('listening.waiting');

    await call.say(await callerSpeech('what are your hours'));
    const spoke = call.now();
    expect(await msUntilState(call, spoke, 'reply', 5_000)).toBeLessThan(1_200);
    // The answer's first audio, then its end. Under the silence budget, not the turn-speed target:
    // with the speech workers shared by the other suites the recognizer's final can hold a prepared
    // answer past 1.2 s; the turn's speed is `npm run bench -- --providers local`'s to hold.
    await call.waitFor(() => msUntilAudio(call, spoke) < Infinity, 5_000, "the answer's first audio");
    expect(msUntilAudio(call, spoke)).toBeLessThan(2_000);
    await untilQuiet(call);
    expect(call.heardMs() - greetingMs).toBeGreaterThan(1_500);
    expect(longestSilence(call, spoke)).toBeLessThanOrEqual(2_000);
    const session = engine.registry.session(call.callSid);
    expect(session?.record.turns.length).toBe(1);
    expect(session?.history[0]).toEqual({ role: 'caller', text: 'what are your hours' });
    expect(session?.history[1]?.text).toContain('Monday to Friday, 8 am to 6 pm');
    expect(call.protocolErrors).toEqual([]);
    const history = engine.logs.join('').includes('"turn latency"');
    expect(history).toBe(true);

    await call.hangUp();
    expect(await msUntilState(call, call.now(), 'ended', 3_000)).toBeLessThan(1_000);
    expect(engine.registry.recentCalls().find((r) => r.callSid === call.callSid)?.outcome).toBe('callerHungUp');
  }, 40_000);

  it('"my dog is bleeding" asks "Is your pet in danger right now?"; "yes" plays the emergency script, then a transfer to the emergency line', async () => {
    const yes = await callerSpeech('yes'); // ready before the question, whose answer window is short
    const call = await dial();
    await untilQuiet(call);
    await call.say(await callerSpeech('my dog is bleeding'));
    const spoke = call.now();
    // A lone keyword is uncertain: the question comes first, as fast as the script used to.
    expect(await msUntilState(call, spoke, 'emergency.checking', 5_000)).toBeLessThan(1_500);
    await untilQuiet(call);
    expect(msUntilAudio(call, spoke)).toBeLessThan(1_500);
    expect(stateOf(call.callSid)).toBe('emergency.checking.waiting');
    await call.say(yes);
    const answered = call.now();
    expect(await msUntilState(call, answered, 'emergency.instructing', 5_000)).toBeLessThan(1_500);
    const context = engine.registry.session(call.callSid)?.context;
    expect(context?.emergency).toMatchObject({ via: 'speech', keyword: 'bleeding', certainty: 'uncertain' });
    // Uncertain either way: heard in the interim words while the caller talked, or, when the speech
    // workers were too busy to send a partial with it in time, as the lone keyword of the final.
    const trigger = context?.emergency;
    expect(trigger?.via === 'speech' ? trigger.basis : null).toMatch(/^(partial|singleKeyword)$/);
    expect(context?.emergencyCheck?.answer).toBe('saidYes');
    await call.waitFor(() => stateOf(call.callSid) === 'transferring.handedOff', 15_000, 'the transfer');
    expect(msUntilAudio(call, answered)).toBeLessThan(1_500);
    expect(call.audioSince(answered).length / 8).toBeGreaterThan(1_000);
    expect(longestSilence(call, answered)).toBeLessThanOrEqual(2_000);
    const update = twilioRest.calls.find((c) => c.callSid === call.callSid && c.op === 'update');
    expect(update?.twiml).toContain('<Number>+15550109099</Number>');
    // Twilio stops the stream once it runs the <Dial>; the engine must not hang up on it.
    await call.stop();
    expect(await msUntilState(call, call.now(), 'ended', 3_000)).toBeLessThan(1_000);
    expect(engine.registry.recentCalls().find((r) => r.callSid === call.callSid)?.outcome).toBe('emergency');
    expect(twilioRest.calls.filter((c) => c.callSid === call.callSid && c.op === 'hangup')).toEqual([]);
  }, 40_000);

  it('"my rabbit has a sore ear", misheard as a seizure, asks first; "no" returns to the conversation', async () => {
    const no = await callerSpeech('no');
    const call = await dial();
    await untilQuiet(call);
    await call.say(await callerSpeech('my rabbit has a sore ear'));
    const spoke = call.now();
    expect(await msUntilState(call, spoke, 'emergency.checking', 5_000)).toBeLessThan(1_500);
    await untilQuiet(call);
    const check = engine.registry.session(call.callSid)?.context.emergencyCheck;
    // The closed grammar forced the sentence onto "…had a seizure": one keyword, so not acted on.
    expect(check).toMatchObject({ trigger: { via: 'speech', keyword: 'seizure', certainty: 'uncertain' }, answer: null });
    await call.say(no);
    const answered = call.now();
    // Back to listening once the dismissal is said: its first audio within 1.5 s of the answer (as
    // for "yes"), and listening right after its last (the clip's length is the clip's, not the engine's).
    const toListening = await msUntilState(call, answered, 'listening', 8_000);
    const firstAudio = msUntilAudio(call, answered);
    expect(firstAudio).toBeLessThan(1_500);
    expect(toListening).toBeLessThan(firstAudio + call.audioSince(answered).length / 8 + 1_000);
    const session = engine.registry.session(call.callSid);
    expect(session?.context.emergency).toBeNull();
    expect(session?.context.emergencyCheck?.answer).toBe('saidNo');
    expect(twilioRest.calls.filter((c) => c.callSid === call.callSid && c.op === 'update')).toEqual([]);
    // The conversation goes on: a question gets its answer.
    await untilQuiet(call);
    await call.say(await callerSpeech('what are your hours'));
    const asked = call.now();
    expect(await msUntilState(call, asked, 'reply', 5_000)).toBeLessThan(1_500);
    await untilQuiet(call);
    expect(session?.history.at(-1)?.text).toContain('Monday to Friday, 8 am to 6 pm');
    await call.hangUp();
    expect(await msUntilState(call, call.now(), 'ended', 3_000)).toBeLessThan(1_000);
    expect(engine.registry.recentCalls().find((r) => r.callSid === call.callSid)?.outcome).toBe('callerHungUp');
  }, 60_000);

  it('pressing 0 asks for a transfer to the front desk', async () => {
    const call = await dial();
    await untilQuiet(call);
    const pressed = call.now();
    call.dtmf('0');
    expect(await msUntilState(call, pressed, 'transferring', 2_000)).toBeLessThan(500);
    await call.waitFor(() => stateOf(call.callSid) === 'transferring.handedOff', 8_000, 'the transfer');
    expect(msUntilAudio(call, pressed)).toBeLessThan(800);
    const update = twilioRest.calls.find((c) => c.callSid === call.callSid && c.op === 'update');
    expect(update?.twiml).toContain('<Number>+15550109001</Number>');
    expect(update?.twiml).toContain('action="https://voice.test/twilio/dial"');
    await call.hangUp();
    expect(await msUntilState(call, call.now(), 'ended', 3_000)).toBeLessThan(1_000);
    expect(engine.registry.recentCalls().find((r) => r.callSid === call.callSid)?.outcome).toBe('transferred');
  }, 30_000);

  it('never logs the auth token, stream tokens, signatures or any phone number', () => {
    const logs = engine.logs.join('');
    expect(logs.length).toBeGreaterThan(1_000);
    expect(logs).toContain('"callSid"');
    expect(logs).not.toContain(TEST_TOKEN);
    for (const call of calls) {
      const streamToken = /\/twilio\/ws\/([^/]+)$/.exec(call.twiml.stream?.url ?? '')?.[1];
      expect(streamToken).toBeTruthy();
      for (const part of streamToken?.split('.') ?? []) expect(logs).not.toContain(part);
    }
    // Caller, clinic and staff numbers alike: E.164 or bare digits.
    expect(testNumbersIn(logs)).toEqual([]);
    expect(logs).not.toMatch(/x-twilio-signature"\s*:\s*"[A-Za-z0-9+/=]{20,}/i);
  });
});
