/**
 * End to end over the real Media Streams protocol, part 1: consent before recording, and a booking
 * taken over several turns by the local receptionist. Real server, energy VAD on the caller's audio,
 * scripted recognizer, fake synthesizer; Twilio REST recorded in one timeline with the call's states.
 * Every call is on a phone line (test/support/fake-line.ts): echo, late and bunched frames, late marks.
 */
import { beforeAll, describe, it } from 'vitest';
import { localAgent } from '../../src/providers/agent/local.js';
import { clipTexts } from '../../src/providers/tts/prompt-cache.js';
import { loadTenants } from '../../src/config/tenants.js';
import type { Tenant } from '../../src/config/tenant.schema.js';
import { PHONE_LINE, withSeed } from '../support/fake-line.js';
import type { FakeTwilio } from '../support/fake-twilio.js';
import {
  CONSENT_VET, QUICK_VET, TENANTS, generationAudioMs, answeredInOrder, indexOf, replyMs, rigFor, speechMs, tone, untilState, visitedInOrder, warmPrompts, type Rig,
} from './conversation-kit.js';

let consentVet: Tenant;

beforeAll(async () => {
  await warmPrompts();
  const tenants = await loadTenants(TENANTS);
  consentVet = tenants.byId('consent-vet')!;
});

/** The caller says something (a tone; the scripted recognizer supplies the words) once we listen. */
async function answer(r: Rig, call: FakeTwilio, ms = 300): Promise<void> {
  await untilState(r, call, 'listening.waiting', 10_000);
  await call.say(tone(ms));
}

describe.concurrent('consent before recording (consent-vet)', () => {
  it('greets, asks consent, records only after "yes", then answers a question', async (ctx) => {
    const { expect } = ctx;
    const r = await rigFor(ctx, { agent: localAgent, stt: ['yes', 'what are your hours'], line: withSeed(PHONE_LINE, 21) });
    const call = await r.dial(CONSENT_VET);
    const sid = call.callSid;
    // Every spoken item is a playback generation: greeting 1, consent disclosure 2.
    const disclosureMs = speechMs(clipTexts(consentVet).consent);
    const disclosurePlayedAt = () => call.marksEchoed.find((m) => m.name === `2:0:${disclosureMs}` && m.cause === 'played')?.atMs ?? null;
    let disclosureDoneAtRecord: number | null = null;
    r.onRest = (e) => {
      if (e.op === 'record') disclosureDoneAtRecord = disclosurePlayedAt();
    };

    await untilState(r, call, 'consent.waiting', 6_000);
    // The disclosure was played to its last mark, and nothing was asked of Twilio yet.
    expect(generationAudioMs(call, 2)).toBe(disclosureMs);
    expect(disclosurePlayedAt()).not.toBeNull();
    expect(call.clears).toEqual([]);
    expect(r.rest).toEqual([]);

    await call.say(tone(300));
    await untilState(r, call, 'listening.waiting', 3_000);
    await call.waitFor(() => r.rest.length > 0, 2_000, 'the recording request');
    expect(r.rest.map((e) => [e.op, e.callSid])).toEqual([['record', sid]]);
    expect(r.rest[0]?.callbackUrl).toBe('https://voice.test/twilio/recording');
    // Order: consent prompt settled (waiting for an answer) → "yes" → record. Nothing before.
    const waiting = indexOf(r, sid, 'state', 'consent.waiting');
    const recordAt = indexOf(r, sid, 'rest', 'record');
    expect(waiting).toBeGreaterThanOrEqual(0);
    expect(recordAt).toBeGreaterThan(waiting);
    expect(r.timeline.slice(0, recordAt).some((e) => e.kind === 'rest')).toBe(false);
    expect(disclosureDoneAtRecord).not.toBeNull();

    const beforeAnswerMs = call.heardMs();
    await call.say(tone(400));
    await untilState(r, call, (s) => s.startsWith('reply'), 4_000);
    await untilState(r, call, 'listening.waiting', 8_000);
    const session = r.engine.registry.session(sid);
    expect(session?.history).toEqual([
      { role: 'caller', text: 'what are your hours' },
      { role: 'agent', text: 'Our hours are Every day, 9 to 5. Anything else I can help with?' },
    ]);
    // The answer was played in full as audio.
    expect(call.heardMs() - beforeAnswerMs).toBeGreaterThanOrEqual(replyMs('Our hours are Every day, 9 to 5. Anything else I can help with?') - 1);
    const trace = r.trace(sid);
    expect(answeredInOrder(
      trace,
      ['connecting', 'greeting', 'consent.asking', 'consent.waiting', 'listening.waiting', 'listening.hearing', 'listening.transcribing'],
      ['reply.speaking', 'listening.waiting'],
    ), trace.join(' → ')).toBe(true);
    expect(r.rest.filter((e) => e.op === 'record')).toHaveLength(1);
    expect(call.protocolErrors).toEqual([]);
    // One turn (the consent answer is not one): end of speech to first reply audio inside the
    // project's 800 ms budget (VAD close 200 ms, then the 250 ms window a finished question gets,
    // the reply prepared meanwhile).
    const [turn] = session!.record.turns;
    expect(session!.record.turns).toHaveLength(1);
    expect(turn!.sttMs).not.toBeNull();
    expect(turn!.endOfSpeechToAudioMs).toBeLessThan(800);

    await call.hangUp();
    await untilState(r, call, 'ended', 3_000);
    expect(r.engine.registry.recentCalls().find((c) => c.callSid === sid)?.outcome).toBe('callerHungUp');
  }, 20_000);

  it('"no" continues the call without any recording request', async (ctx) => {
    const { expect } = ctx;
    const r = await rigFor(ctx, { agent: localAgent, stt: ['no', 'where are you located'], line: withSeed(PHONE_LINE, 22) });
    const call = await r.dial(CONSENT_VET);
    const sid = call.callSid;

    await untilState(r, call, 'consent.waiting', 6_000);
    await call.say(tone(300));
    await untilState(r, call, 'listening.waiting', 3_000);
    expect(r.rest).toEqual([]);

    await call.say(tone(400));
    await untilState(r, call, (s) => s.startsWith('reply'), 4_000);
    await untilState(r, call, 'listening.waiting', 8_000);
    expect(r.engine.registry.session(sid)?.history.at(-1)).toEqual({ role: 'agent', text: "We're at 2 Test Street. Anything else I can help with?" });
    expect(visitedInOrder(r.trace(sid), ['greeting', 'consent.asking', 'consent.waiting', 'listening.waiting', 'reply.speaking', 'listening.waiting'])).toBe(true);

    await call.hangUp();
    await untilState(r, call, 'ended', 3_000);
    expect(r.rest).toEqual([]);
    const record = r.engine.registry.recentCalls().find((c) => c.callSid === sid);
    expect(record?.recordings).toEqual([]);
    expect(record?.outcome).toBe('callerHungUp');
  }, 20_000);
});

describe.concurrent('a booking over several turns with the local receptionist (quick-vet)', () => {
  it('collects pet, owner, reason and time, reads back, and stores a complete request', async (ctx) => {
    const { expect } = ctx;
    const r = await rigFor(ctx, {
      agent: localAgent,
      stt: ['I want to book an appointment', 'Rex', 'my name is Jane Smith', 'his vaccinations', 'tomorrow at 10 am', '555 010 0200', 'yes'],
      line: withSeed(PHONE_LINE, 23),
    });
    const call = await r.dial(QUICK_VET);
    const sid = call.callSid;
    // Recording needs no consent at quick-vet: requested as the greeting ends.
    await untilState(r, call, 'listening.waiting', 5_000);
    expect(r.rest.map((e) => e.op)).toEqual(['record']);

    const agentSaid: string[] = [];
    for (let turn = 0; turn < 7; turn++) {
      const replies = r.engine.registry.session(sid)?.history.length ?? 0;
      await answer(r, call);
      await call.waitFor(() => (r.engine.registry.session(sid)?.history.length ?? 0) >= replies + 2, 8_000, `reply ${turn + 1}`);
      await untilState(r, call, 'listening.waiting', 8_000);
      agentSaid.push(r.engine.registry.session(sid)?.history.at(-1)?.text ?? '');
    }
    expect(agentSaid.slice(0, 6)).toEqual([
      "Sure, I can help with an appointment. What's your pet's name?",
      'And your name, please?',
      "What's the visit for?",
      'When would you like to come in?',
      // quick-vet does not store caller numbers: the caller is asked for one, and hears it read back.
      "What's the best number for the team to call you back on?",
      "Let me read that back. An appointment for Rex, from Jane Smith. Reason: vaccinations. Time: tomorrow at 10 am. We'll call you back at 5 5 5, 0 1 0, 0 2 0 0. Is that right?",
    ]);
    expect(agentSaid[6]).toBe("Great. I've sent your request to the team. They'll call you to confirm. Anything else I can help with?");

    const session = r.engine.registry.session(sid);
    expect(session?.context.requests).toEqual([{
      id: expect.any(String) as string, kind: 'appointment', petName: 'Rex', petSpecies: null, ownerName: 'Jane Smith', reason: 'vaccinations',
      preferredTime: 'tomorrow at 10 am', message: null, recipient: null, callback: { kind: 'spoken' }, urgency: 'routine',
    }]);
    expect(session?.record.turns).toHaveLength(7);
    const replies = r.trace(sid).filter((s) => s === 'reply.speaking');
    expect(replies).toHaveLength(7);
    expect(call.clears).toEqual([]); // nobody interrupted anybody
    expect(call.protocolErrors).toEqual([]);

    await call.hangUp();
    await untilState(r, call, 'ended', 3_000);
    const record = r.engine.registry.recentCalls().find((c) => c.callSid === sid);
    expect(record?.final?.requests).toHaveLength(1);
    expect(r.engine.logs.join('')).not.toContain('Jane Smith'); // names stay out of the logs
  }, 30_000);
});
