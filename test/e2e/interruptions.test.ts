/**
 * End to end over the real Media Streams protocol, part 2: the caller talking over the engine
 * (barge-in with real words, a backchannel), emergencies that preempt a reply (keyword in an interim
 * transcript, the emergency key), and a transfer Twilio refuses. The caller's voice is a tone the
 * real energy VAD hears; a scripted recognizer supplies the words; a scripted agent the replies.
 * Every call is on a phone line (test/support/fake-line.ts): the engine's voice echoes back into
 * the caller's frames, frames arrive up to 60 ms late and in bursts, marks come back late.
 */
import { beforeAll, describe, it, type TestContext } from 'vitest';
import { createFakeAgent, type FakeAgentProvider } from '../../src/providers/agent/fake.js';
import { clipTexts } from '../../src/providers/tts/prompt-cache.js';
import { loadTenants } from '../../src/config/tenants.js';
import type { Tenant } from '../../src/config/tenant.schema.js';
import type { FakeSttUtterance } from '../../src/providers/stt/fake.js';
import { PHONE_LINE, withSeed } from '../support/fake-line.js';
import {
  QUICK_VET, TENANTS, answeredInOrder, lastGeneration, outboundOf, playedOf, replyMs, rigFor, speechMs, tone, untilState, visitedInOrder, warmPrompts,
} from './conversation-kit.js';

/** A reply long enough to talk over: four sentences, 3.6 s of audio (first sentence 1.3 s). */
const LONG =
  'We offer vaccinations, dental care and surgery for dogs and cats. Our team also does grooming on weekdays. ' +
  'We can board your pet while you travel. Ask me about any of these services.';
const SHORT_ANSWER = 'Surgery starts at two hundred dollars.';
const ASK = 'tell me about your services';
/** Echo guard while we speak: the tenant's bargeInMinSpeechMs (default 150) of caller speech. */
const BARGE_IN_MIN_MS = 150;
/** The line delivers the caller's frames and keys up to this late (PHONE_LINE's jitter). */
const LINE_LATE_MS = 60;
/**
 * Measured on the caller's wall clock, a clear also waits for the fake's frame timers and the
 * engine's event loop, which a busy 2-core test host (the other suites running) runs this much
 * late. "At once" stays distinguishable: a clear a turn later would come 500 ms or more after it.
 * Speed itself is the benchmarks' to check (docs/performance.md).
 */
const HOST_LATE_MS = 150;

let quickVet: Tenant;

beforeAll(async () => {
  await warmPrompts();
  quickVet = (await loadTenants(TENANTS)).byId('quick-vet')!;
});

/**
 * Dial quick-vet, ask a question once listening, and wait until `intoReplyMs` of the reply has been
 * heard. Returns the reply's playback generation and how much the caller had heard before it.
 */
async function untilMidReply(ctx: TestContext, agent: FakeAgentProvider, stt: FakeSttUtterance[], intoReplyMs: number, seed: number) {
  const r = await rigFor(ctx, { agent, stt: [ASK, ...stt], line: withSeed(PHONE_LINE, seed) });
  const call = await r.dial(QUICK_VET);
  await untilState(r, call, 'listening.waiting', 5_000);
  const greeting = lastGeneration(call);
  await call.say(tone(400));
  await untilState(r, call, 'reply.speaking', 4_000);
  await call.waitFor((c) => lastGeneration(c) > greeting, 1_000, 'the reply\'s first mark');
  const replyGeneration = lastGeneration(call);
  await call.waitFor((c) => playedOf(c, replyGeneration) >= intoReplyMs, 6_000, `${intoReplyMs} ms of the reply heard`);
  return { r, call, replyGeneration };
}

describe.concurrent('barge-in', () => {
  it('real words over a long answer: clear at once, history cut to what was heard, then a new answer', async (ctx) => {
    const { expect } = ctx;
    const agent = createFakeAgent({ script: [LONG, SHORT_ANSWER] });
    const { r, call, replyGeneration } = await untilMidReply(
      ctx,
      agent,
      [{ partials: ['how much does surgery'], final: 'how much does surgery cost for a cat' }],
      1_400, // + 150 ms of echo guard: the clear lands in the second sentence
      1,
    );
    const sid = call.callSid;

    const onsetMs = call.now();
    // Long enough for the recognizer to have heard "how much does surgery" (four words, ~1.2 s
    // after the VAD opened) while the caller still talks: the partial confirms the interruption.
    const spoken = call.say(tone(2_000));
    await call.waitFor((c) => c.clears.length > 0, 2_000, 'clear');
    const clearLatencyMs = call.clears[0]! - onsetMs;
    // The echo guard needs 150 ms of speech; the clear follows in the same tick, not a turn later.
    expect(clearLatencyMs).toBeGreaterThanOrEqual(BARGE_IN_MIN_MS - 50);
    expect(clearLatencyMs).toBeLessThan(BARGE_IN_MIN_MS + 150 + LINE_LATE_MS + HOST_LATE_MS);
    // Confirmed by the partial, while the caller still talks (~1.5 s after the clear).
    let stillTalking = true;
    void spoken.then(() => (stillTalking = false));
    await untilState(r, call, (s) => s.startsWith('listening.'), 2_500);
    expect(stillTalking).toBe(true);
    await spoken;

    await untilState(r, call, 'reply.speaking', 5_000);
    await untilState(r, call, 'listening.waiting', 6_000);

    // What the caller heard of the long reply, and what the agent was told it said.
    const heardMs = playedOf(call, replyGeneration);
    expect(heardMs).toBeGreaterThan(1_400);
    expect(heardMs).toBeLessThan(replyMs(LONG) - 1_000);
    expect(agent.turns).toHaveLength(2);
    const told = agent.turns[1]!;
    expect(told.transcript).toBe('how much does surgery cost for a cat');
    const cut = told.history[1];
    expect(cut?.role).toBe('agent');
    expect(cut?.text.endsWith('…')).toBe(true);
    expect(LONG.startsWith(cut!.text.slice(0, -1))).toBe(true);
    // Cut where the caller stopped hearing: same share of the text as of the audio (± a mark or two).
    expect(Math.abs(cut!.text.length / LONG.length - heardMs / replyMs(LONG))).toBeLessThan(0.1);
    expect(r.engine.registry.session(sid)?.history).toEqual([
      { role: 'caller', text: ASK },
      cut,
      { role: 'caller', text: 'how much does surgery cost for a cat' },
      { role: 'agent', text: SHORT_ANSWER },
    ]);

    // Audio: nothing of the old reply after the clear; the new answer is a new generation, played in full.
    const afterClear = outboundOf(call, 'mark').filter((m) => m.atMs > call.clears[0]!);
    expect(afterClear.every((m) => m.mark!.generation > replyGeneration)).toBe(true);
    expect(playedOf(call, replyGeneration + 1)).toBe(replyMs(SHORT_ANSWER));
    expect(call.clears).toHaveLength(1);

    const session = r.engine.registry.session(sid);
    expect(session?.record.bargeIns).toHaveLength(1);
    expect(session!.record.bargeIns[0]!.clearLatencyMs).toBeLessThan(BARGE_IN_MIN_MS + 150 + LINE_LATE_MS);
    expect(r.logs(sid, 'caller interrupted').map((l) => l.confirmed)).toEqual([true]);
    // The answer is prepared while the end-of-turn window runs when the recognizer's interim words
    // are in at the end of speech (the fake vendor sends each 100-200 ms after its words, like
    // Scribe), and started on the final otherwise (reply.thinking): both are right.
    const trace = r.trace(sid);
    const before = ['reply.speaking', 'reply.interrupted.callerTalking', 'listening.hearing', 'listening.transcribing'];
    expect(answeredInOrder(trace, before, ['reply.speaking', 'listening.waiting']), trace.join(' → ')).toBe(true);
    expect(call.protocolErrors).toEqual([]);
  }, 25_000);

  it('"mm-hmm" over the answer is no interruption: playback resumes and the history keeps the whole reply', async (ctx) => {
    const { expect } = ctx;
    const agent = createFakeAgent({ script: [LONG] });
    const { r, call, replyGeneration } = await untilMidReply(ctx, agent, ['mm-hmm'], 1_000, 2);
    const sid = call.callSid;

    const spoken = call.say(tone(400));
    await call.waitFor((c) => c.clears.length > 0, 2_000, 'clear');
    await spoken;
    const stoppedTalkingMs = call.now();
    await untilState(r, call, 'reply.speaking', 2_000);
    // The same reply continues (same generation, next epoch), from about where the caller was.
    await call.waitFor(() => outboundOf(call, 'media').some((m) => m.atMs > call.clears[0]!), 2_000, 'audio after the clear');
    const resumedMs = outboundOf(call, 'media').find((m) => m.atMs > call.clears[0]!)!.atMs - stoppedTalkingMs;
    const resumedMarks = outboundOf(call, 'mark').filter((m) => m.atMs > call.clears[0]!);
    expect(resumedMarks.length).toBeGreaterThan(0);
    expect(resumedMarks.every((m) => m.mark!.generation === replyGeneration && m.mark!.epoch === 1)).toBe(true);
    // VAD needs 200 ms of quiet to close the segment, then the final transcript decides.
    expect(resumedMs).toBeLessThan(600);

    await untilState(r, call, 'listening.waiting', 8_000);
    expect(playedOf(call, replyGeneration)).toBe(replyMs(LONG));
    expect(r.engine.registry.session(sid)?.history).toEqual([
      { role: 'caller', text: ASK },
      { role: 'agent', text: LONG },
    ]);
    expect(agent.turns).toHaveLength(1);
    expect(call.clears).toHaveLength(1);
    expect(r.logs(sid, 'caller interrupted').map((l) => l.confirmed)).toEqual([false]);
    expect(r.engine.registry.session(sid)?.record.bargeIns).toHaveLength(1);
    expect(visitedInOrder(r.trace(sid), [
      'reply.speaking', 'reply.interrupted.callerTalking', 'reply.interrupted.judging', 'reply.speaking', 'listening.waiting',
    ])).toBe(true);
    expect(r.trace(sid).filter((s) => s === 'listening.hearing')).toHaveLength(1); // the question only
    expect(call.protocolErrors).toEqual([]);
  }, 25_000);
});

describe.concurrent('emergencies preempt a reply', () => {
  const emergencyLine = '<Number>+15550109099</Number>';

  it('a keyword in an interim transcript mid-sentence: clear at once, "Is your pet in danger?", "yes", the uninterrupted script, then <Dial>', async (ctx) => {
    const { expect } = ctx;
    const agent = createFakeAgent({ script: [LONG] });
    const { r, call, replyGeneration } = await untilMidReply(
      ctx,
      agent,
      [{ partials: ['I think my dog is bleeding'], final: 'I think my dog is bleeding a lot' }, 'yes'],
      800,
      3,
    );
    const sid = call.callSid;
    const scriptMs = speechMs(clipTexts(quickVet).emergency);

    // Six words: the recognizer has heard "bleeding" ~1.8 s after the VAD opened (300 ms in).
    let stillTalking = true;
    const spoken = call.say(tone(2_800)).then(() => (stillTalking = false));
    await untilState(r, call, (state) => state.startsWith('emergency.checking.'), 3_500);
    const checkingSeenAt = call.now();
    expect(stillTalking).toBe(true); // acted on the interim, not the final
    expect(call.clears).toHaveLength(1);
    await spoken;
    // The question plays over the caller to its end; the rest of their sentence is no answer.
    await untilState(r, call, 'emergency.checking.waiting', 8_000);
    expect(playedOf(call, replyGeneration + 1)).toBe(speechMs(clipTexts(quickVet).emergencyCheck));
    await call.say(tone(300));

    await untilState(r, call, 'transferring.handedOff', 6_000);
    const update = r.rest.find((e) => e.op === 'update');
    expect(update?.callSid).toBe(sid);
    expect(update?.twiml).toContain(emergencyLine);
    expect(update?.twiml).toMatch(/<Dial [^>]*action="https:\/\/voice\.test\/twilio\/dial"/);
    // The question and the script, new generations, played in full although the caller talked over them.
    expect(playedOf(call, replyGeneration + 2)).toBe(scriptMs);
    expect(call.clears).toHaveLength(1);
    // The one clear is the barge-in's, at speech onset; "bleeding" is heard ~1.8 s later (the
    // recognizer is honest about when it knows a word), and the question follows it at once.
    const firstQuestionAudio = outboundOf(call, 'media').find((m) => m.atMs > call.clears[0]!)!;
    expect(firstQuestionAudio.atMs - checkingSeenAt).toBeLessThan(500);
    expect(r.engine.registry.session(sid)?.context.emergency).toEqual({
      via: 'speech', keyword: 'bleeding', certainty: 'uncertain', basis: 'partial', transcript: 'partial', confidence: null,
    });
    expect(r.engine.registry.session(sid)?.context.emergencyCheck?.answer).toBe('saidYes');
    expect(visitedInOrder(r.trace(sid), [
      'reply.speaking', 'reply.interrupted.callerTalking', 'emergency.checking.asking', 'emergency.checking.waiting', 'emergency.instructing',
      'transferring.dialing', 'transferring.handedOff',
    ])).toBe(true);

    await call.stop(); // Twilio runs the <Dial> and stops the stream
    await untilState(r, call, 'ended', 3_000);
    expect(r.engine.registry.recentCalls().find((c) => c.callSid === sid)?.outcome).toBe('emergency');
    expect(r.rest.filter((e) => e.op === 'hangup')).toEqual([]);
  }, 25_000);

  it('the emergency key while the engine speaks', async (ctx) => {
    const { expect } = ctx;
    const agent = createFakeAgent({ script: [LONG] });
    const { r, call, replyGeneration } = await untilMidReply(ctx, agent, [], 800, 4);
    const sid = call.callSid;

    const pressedMs = call.now();
    call.dtmf(quickVet.emergency.digit);
    await call.waitFor((c) => c.clears.length > 0, 1_000, 'clear');
    expect(call.clears[0]! - pressedMs).toBeLessThan(100 + LINE_LATE_MS + HOST_LATE_MS);
    await untilState(r, call, 'transferring.handedOff', 6_000);
    expect(r.rest.find((e) => e.op === 'update')?.twiml).toContain(emergencyLine);
    expect(playedOf(call, replyGeneration)).toBeLessThan(replyMs(LONG));
    expect(playedOf(call, replyGeneration + 1)).toBe(speechMs(clipTexts(quickVet).emergency));
    expect(r.engine.registry.session(sid)?.context.emergency).toEqual({ via: 'dtmf', digit: '9', certainty: 'clear' });
    expect(visitedInOrder(r.trace(sid), ['reply.speaking', 'emergency.instructing', 'transferring.dialing', 'transferring.handedOff'])).toBe(true);

    await call.stop();
    await untilState(r, call, 'ended', 3_000);
    expect(r.engine.registry.recentCalls().find((c) => c.callSid === sid)?.outcome).toBe('emergency');
    expect(r.rest.map((e) => e.op)).toEqual(['record', 'update']);
  }, 25_000);
});

describe.concurrent('a transfer Twilio refuses', () => {
  it('apologises and goes back to listening, never leaving the caller in silence', async (ctx) => {
    const { expect } = ctx;
    const r = await rigFor(ctx, { agent: createFakeAgent(), stt: ['what are your hours'], failUpdate: true, line: withSeed(PHONE_LINE, 5) });
    const call = await r.dial(QUICK_VET);
    const sid = call.callSid;
    await untilState(r, call, 'listening.waiting', 5_000);

    const pressedMs = call.now();
    call.dtmf('0');
    await untilState(r, call, 'transferring.failed', 4_000);
    await untilState(r, call, 'listening.waiting', 8_000);
    const backMs = call.now();

    const texts = clipTexts(quickVet);
    const update = r.rest.find((e) => e.op === 'update');
    expect(update?.twiml).toContain('<Number>+15550109001</Number>');
    // Announcement (generation 2) and apology (generation 3) each played in full.
    expect(playedOf(call, 2)).toBe(speechMs(texts.transfer));
    expect(playedOf(call, 3)).toBe(speechMs(texts.transferFailed));
    // From the key press to listening again: no stretch of dead air. The gap between the two clips is
    // the refused REST call and the apology's start, measured at the caller (one full run: 539 ms).
    expect(call.silenceGaps(500 + HOST_LATE_MS, { fromMs: pressedMs, toMs: backMs })).toEqual([]);
    expect(visitedInOrder(r.trace(sid), [
      'listening.waiting', 'transferring.announcing', 'transferring.dialing', 'transferring.failed', 'listening.waiting',
    ])).toBe(true);
    expect(r.logs(sid).some((l) => l.level === 50)).toBe(false);

    // The conversation carries on.
    await call.say(tone(400));
    await untilState(r, call, 'reply.speaking', 4_000);
    await untilState(r, call, 'listening.waiting', 6_000);
    expect(r.engine.registry.session(sid)?.history.at(-1)).toEqual({ role: 'agent', text: 'Okay.' });

    await call.hangUp();
    await untilState(r, call, 'ended', 3_000);
    expect(r.rest.map((e) => e.op)).toEqual(['record', 'update']);
    expect(r.engine.registry.recentCalls().find((c) => c.callSid === sid)?.outcome).toBe('callerHungUp');
  }, 25_000);
});
