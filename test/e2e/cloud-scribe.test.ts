/**
 * Calls recognized by ElevenLabs Scribe Realtime, over the real Media Streams protocol: the Scribe
 * adapter speaking its wire protocol to the Scribe fake (partials while the caller talks, one word
 * per 300 ms of speech, committed transcript 300 ms after the commit), OpenAI chat and ElevenLabs
 * synthesis behind it, as `STT_PROVIDER=auto` deploys them with both keys set.
 *
 * What only a streaming recognizer makes possible is checked end to end: an emergency keyword said
 * mid-sentence acts while the caller is still talking (and a negated one does not), and the one
 * socket per call is open from the greeting to the hang-up. Then the fallback when it drops, and
 * the per-clinic choice.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'vitest';
import type { FakeChatBody } from '../fakes/openai-chat-server.js';
import { callerSpeech } from '../support/caller-speech.js';
import { ELEVENLABS_KEY, OPENAI_KEY, startCloudEngine, type CloudRig } from '../support/cloud-engine.js';
import { FIXTURE_TENANTS_DIR, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN } from '../support/engine.js';
import { FakeTwilio } from '../support/fake-twilio.js';
import { restRecorder } from '../support/rest-recorder.js';
import { CONSENT_VET, QUICK_VET, tone } from './conversation-kit.js';

function receptionist(body: FakeChatBody) {
  const last = [...body.messages].reverse().find((m) => m.role === 'user');
  const said = typeof last?.content === 'string' ? last.content : '';
  if (said.includes('hours')) return { text: 'We are open Monday to Friday, eight to six. Anything else?' };
  if (said.includes('checkup')) return { text: 'Of course, what day suits you for the checkup?' };
  return { text: 'Sorry, could you say that again?' };
}

/**
 * The test's own engine and fake vendors (its tests run concurrently: nothing here is shared), closed
 * with its calls when the test finishes.
 */
async function start(ctx: Pick<TestContext, 'onTestFinished'>, opts: Parameters<typeof startCloudEngine>[0] = {}) {
  const rest = restRecorder();
  const calls: FakeTwilio[] = [];
  let rig: CloudRig | null = null;
  ctx.onTestFinished(async () => {
    await Promise.all(calls.map((c) => c.dispose()));
    await rig?.close();
  });
  rig = await startCloudEngine({ responder: receptionist, rest: rest.rest, ...opts });
  const started = rig;
  rig.openai.chat.faults.setDefault({ firstByteMs: 250, chunkDelayMs: 15 });
  rig.elevenlabs.faults.setDefault({ firstByteMs: 200, chunkDelayMs: 20 });
  return { rig, rest, dial: (to?: string) => dialOn(started, calls, to) };
}

async function dialOn(rig: CloudRig, calls: FakeTwilio[], to = QUICK_VET) {
  const call = await FakeTwilio.call({
    serverUrl: rig.engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to, from: '+15557654321', playbackSpeed: 4,
  });
  calls.push(call);
  return call;
}

const stateOf = (rig: CloudRig, callSid: string) => rig.engine.registry.list().find((c) => c.callSid === callSid)?.state ?? 'ended';
const recordOf = (rig: CloudRig, callSid: string) => rig.engine.registry.session(callSid)?.record ?? rig.engine.registry.recentCalls().find((r) => r.callSid === callSid);

describe.concurrent('a call recognized by ElevenLabs Scribe (fake vendor servers)', () => {
  it('opens one Scribe socket at the greeting and keeps it for the whole call', async (ctx) => {
    const { expect } = ctx;
    const { rig, dial } = await start(ctx, { transcripts: ['what are your hours', 'that is all thank you'] });
    const call = await dial();
    // Connected before the caller says anything: the greeting is still playing.
    await call.waitFor(() => rig.scribe.sessions.length === 1, 3_000, 'the Scribe session');
    expect(rig.scribe.sessions[0]!.chunks).toBe(0);
    await call.untilQuiet();
    const record = recordOf(rig, call.callSid)!;
    expect(record.providers).toEqual({ vad: 'energy', stt: 'elevenlabs', agent: 'openai', tts: 'elevenlabs' });

    await call.say(tone(900));
    await call.waitFor(() => rig.engine.registry.session(call.callSid)!.history.length >= 2, 8_000, 'the answer');
    await call.untilQuiet();
    await call.say(tone(900));
    await call.waitFor(() => rig.engine.registry.session(call.callSid)!.history.length >= 4, 8_000, 'the second answer');
    const session = rig.engine.registry.session(call.callSid)!;
    expect(session.history.filter((h) => h.role === 'caller').map((h) => h.text)).toEqual(['what are your hours', 'that is all thank you']);
    expect(rig.scribe.sessions).toHaveLength(1); // one socket for both turns
    expect(rig.scribe.sessions[0]!.commits).toHaveLength(2);
    expect(rig.openai.transcription.sessions).toHaveLength(0);
    expect(record.turns[0]?.endOfSpeechToAudioMs).toBeGreaterThan(0);

    await call.hangUp();
    await call.waitFor(() => rig.scribe.sessions[0]!.closedBy !== null, 3_000, 'the socket to close with the call');
    expect(rig.scribe.sessions[0]!.closedBy).toBe('client');
    const everything = [...rig.startupLogs, ...rig.engine.logs].join('\n');
    for (const key of [OPENAI_KEY, ELEVENLABS_KEY, ELEVENLABS_KEY.slice(-8)]) expect(everything).not.toContain(key);
    expect(record.fallbacks).toEqual([]);
  }, 60_000);

  it('an emergency keyword said mid-sentence acts while the caller is still talking', async (ctx) => {
    const { expect } = ctx;
    const { rig, rest, dial } = await start(ctx, { transcripts: ['my dog is bleeding and he will not stop shaking'] });
    const call = await dial();
    await call.untilQuiet();
    let stillTalking = true;
    const spoken = call.say(tone(3_000)).then(() => (stillTalking = false));
    await call.waitFor(() => stateOf(rig, call.callSid).startsWith('emergency') || stateOf(rig, call.callSid).startsWith('transferring'), 4_000, 'the emergency');
    expect(stillTalking).toBe(true); // "bleeding" came in a partial, ~1.3 s into three seconds of speech
    const partials = rig.scribe.sessions[0]!.partials;
    expect(partials).toContain('my dog is bleeding');
    expect(partials).not.toContain('my dog is bleeding and he will not stop shaking');
    await spoken;
    // A keyword in a partial is uncertain: "Is your pet in danger right now?" first; key 1 is yes.
    expect(stateOf(rig, call.callSid)).toMatch(/^emergency\.checking/);
    call.dtmf('1');
    await call.waitFor(() => rest.calls.some((c) => c.op === 'update' && (c.twiml ?? '').includes('+15550109099')), 10_000, 'the transfer to the emergency line');
    expect(rig.engine.registry.session(call.callSid)?.context.emergency).toMatchObject({ via: 'speech', keyword: 'bleeding', basis: 'partial' });
    expect(rig.openai.chat.requests).toHaveLength(0); // no turn went to the receptionist
  }, 40_000);

  it('a negated keyword ("not bleeding") never triggers, in any partial or the final', async (ctx) => {
    const { expect } = ctx;
    const { rig, dial } = await start(ctx, { transcripts: ['it is not bleeding anymore but I would like a checkup'] });
    const call = await dial();
    await call.untilQuiet();
    const seen = new Set<string>();
    const watch = setInterval(() => seen.add(stateOf(rig, call.callSid)), 10);
    try {
      await call.say(tone(3_300));
      await call.waitFor(() => rig.engine.registry.session(call.callSid)!.history.length >= 2, 8_000, 'the answer');
    } finally {
      clearInterval(watch);
    }
    expect(rig.scribe.sessions[0]!.partials).toContain('it is not bleeding');
    expect([...seen].some((s) => s.startsWith('emergency') || s.startsWith('transferring'))).toBe(false);
    const session = rig.engine.registry.session(call.callSid)!;
    expect(session.context.emergency).toBeNull();
    expect(session.history.map((h) => h.text)).toEqual(['it is not bleeding anymore but I would like a checkup', 'Of course, what day suits you for the checkup?']);
  }, 40_000);

  it('moves recognition to the embedded recognizer when the Scribe socket drops, without losing the utterance', async (ctx) => {
    const { expect } = ctx;
    // What Scribe would have heard is never delivered: the socket drops after its first partial.
    const { rig, dial } = await start(ctx, { transcripts: ['scribe never finished this'] });
    rig.scribe.faults.push({ dropAfterChunks: 2 }); // session_started and one partial
    const call = await dial();
    await call.untilQuiet();
    await call.say(await callerSpeech('what are your hours'));
    await call.waitFor(() => rig.engine.registry.session(call.callSid)!.history.length >= 2, 15_000, 'an answer');
    const session = rig.engine.registry.session(call.callSid)!;
    expect(session.history[0]?.text).toBe('what are your hours'); // the embedded recognizer, from the replayed buffer
    expect(session.record.fallbacks).toEqual([{ kind: 'stt', from: 'elevenlabs', to: 'local' }]);
    expect(rig.scribe.sessions[0]!.partials[0]).toBe('scribe'); // the caller was heard by Scribe before the drop
    expect(rig.scribe.sessions[0]!.closedBy).toBe('server');
  }, 40_000);

  it('each clinic chooses its recognizer: providers.stt "openai" in one file, the deployment\'s Scribe in the other', async (ctx) => {
    const { expect } = ctx;
    const dir = mkdtempSync(join(tmpdir(), 'vetline-stt-choice-'));
    ctx.onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    for (const name of ['quick-vet.json', 'consent-vet.json']) {
      const clinic = JSON.parse(readFileSync(join(FIXTURE_TENANTS_DIR, name), 'utf8')) as Record<string, unknown>;
      delete clinic.$schema;
      if (name === 'quick-vet.json') clinic.providers = { stt: 'openai' };
      writeFileSync(join(dir, name), JSON.stringify(clinic));
    }
    const { rig, dial } = await start(ctx, { tenantsDir: dir });
    const openaiCall = await dial(QUICK_VET);
    await openaiCall.waitFor(() => rig.openai.transcription.sessions.length === 1, 3_000, 'the OpenAI session');
    const scribeCall = await dial(CONSENT_VET);
    await scribeCall.waitFor(() => rig.scribe.sessions.length === 1, 3_000, 'the Scribe session');
    expect(recordOf(rig, openaiCall.callSid)!.providers.stt).toBe('openai');
    expect(recordOf(rig, scribeCall.callSid)!.providers.stt).toBe('elevenlabs');
    expect(rig.openai.transcription.sessions).toHaveLength(1);
    expect(rig.scribe.sessions).toHaveLength(1);
  }, 40_000);
});
