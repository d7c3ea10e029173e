/**
 * A whole call on the cloud providers, over the real Media Streams protocol: OpenAI Realtime
 * transcription, OpenAI chat with tools and ElevenLabs streaming synthesis, each adapter speaking
 * its wire protocol to a local fake server with realistic latencies (STT final 300 ms, first token
 * 250 ms, TTS first byte 200 ms). Then the same call with each provider failing: the caller must
 * hear an answer anyway (the embedded provider takes over) and the journal must say so.
 *
 * The caller's voice is a tone the energy VAD hears; the fake transcription server decides what
 * was said (scripted per utterance), except where the embedded recognizer takes over. The same
 * call on ElevenLabs Scribe (partials while the caller talks): test/e2e/cloud-scribe.test.ts.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'vitest';
import { parseJournal, replayJournal } from '../../src/replay/replay.js';
import { fakeAudio } from '../fakes/elevenlabs-server.js';
import type { FakeChatBody } from '../fakes/openai-chat-server.js';
import { callerSpeech } from '../support/caller-speech.js';
import { ELEVENLABS_KEY, OPENAI_KEY, startCloudEngine, type CloudRig } from '../support/cloud-engine.js';
import { TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN } from '../support/engine.js';
import { FakeTwilio } from '../support/fake-twilio.js';
import { restRecorder } from '../support/rest-recorder.js';
import { Player } from '../../src/twilio/player.js';
import { QUICK_VET, lastGeneration, tone } from './conversation-kit.js';

const lastUserText = (body: FakeChatBody) => {
  const last = [...body.messages].reverse().find((m) => m.role === 'user');
  return typeof last?.content === 'string' ? last.content : '';
};

/** The receptionist the chat fake plays: hours, a long services answer, a transfer on request. */
function receptionist(body: FakeChatBody) {
  const said = lastUserText(body);
  if (said.includes('hours')) return { text: 'We are open Monday to Friday, eight to six. Anything else?' };
  if (said.includes('services')) {
    return { text: 'We offer vaccinations and dental care. We also see puppies and kittens for their first checkups. Our team can advise you on diet and behaviour as well.' };
  }
  if (said.includes('someone')) return { toolCalls: [{ name: 'transfer_to_staff', arguments: { reason: 'caller asked for a person' } }] };
  return { text: 'Sorry, could you say that again?' };
}

/**
 * The test's own engine and fake vendors (its tests run concurrently: nothing here is shared), closed
 * with its calls and journal when the test finishes.
 */
async function start(ctx: Pick<TestContext, 'onTestFinished'>, opts: Parameters<typeof startCloudEngine>[0] = {}) {
  const rest = restRecorder();
  const journalDir = mkdtempSync(join(tmpdir(), 'vetline-cloud-'));
  const calls: FakeTwilio[] = [];
  let rig: CloudRig | null = null;
  ctx.onTestFinished(async () => {
    await Promise.all(calls.map((c) => c.dispose()));
    await rig?.close();
    rmSync(journalDir, { recursive: true, force: true });
  });
  rig = await startCloudEngine({ responder: receptionist, rest: rest.rest, journalDir, stt: 'openai', ...opts });
  const started = rig;
  // Realistic provider latencies for every request that has no fault scripted.
  rig.openai.chat.faults.setDefault({ firstByteMs: 250, chunkDelayMs: 15 });
  rig.elevenlabs.faults.setDefault({ firstByteMs: 200, chunkDelayMs: 20 });
  return { rig, rest, journalDir, dial: () => dialOn(started, calls) };
}

async function dialOn(rig: CloudRig, calls: FakeTwilio[]) {
  const call = await FakeTwilio.call({
    serverUrl: rig.engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: '+15557654321', playbackSpeed: 4,
  });
  calls.push(call);
  await call.untilQuiet();
  return call;
}

const stateOf = (rig: CloudRig, callSid: string) => rig.engine.registry.list().find((c) => c.callSid === callSid)?.state ?? 'ended';
const recordOf = (rig: CloudRig, callSid: string) => rig.engine.registry.session(callSid)?.record ?? rig.engine.registry.recentCalls().find((r) => r.callSid === callSid);

/** The μ-law the engine sent for playback generation `generation`, in order (each media message is followed by its mark). */
function audioOf(call: FakeTwilio, generation: number): Buffer {
  const parts: Buffer[] = [];
  let pending: Buffer | null = null;
  for (const r of call.outbound) {
    if (r.message?.event === 'media') pending = Buffer.from(r.message.media.payload, 'base64');
    else if (r.message?.event === 'mark' && pending) {
      if (Player.parseMark(r.message.mark.name)?.generation === generation) parts.push(pending);
      pending = null;
    }
  }
  return Buffer.concat(parts);
}

/** Chunk sizes for the vendor: odd, tiny, and never a whole number of 20 ms frames in a row. */
const ODD_CHUNKS = [1, 161, 7, 319, 999, 3, 479, 80];

function journalEvents(dir: string): { type: string; [k: string]: unknown }[] {
  const file = readdirSync(dir).find((f) => f.endsWith('.jsonl'));
  if (!file) return [];
  return readFileSync(join(dir, file), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string });
}

describe.concurrent('a call on the cloud providers (fake vendor servers)', () => {
  it('greets in the cloud voice, answers, is interrupted, and transfers by tool call', async (ctx) => {
    const { expect } = ctx;
    const { rig, rest, journalDir, dial } = await start(ctx, { transcripts: ['what are your hours', 'tell me about your services', 'actually can i speak to someone'] });
    expect(rig.elevenlabs.requests.length).toBeGreaterThan(0); // clips were rendered by ElevenLabs at start-up
    const call = await dial();
    const record = recordOf(rig, call.callSid)!;
    expect(record.providers).toEqual({ vad: 'energy', stt: 'openai', agent: 'openai', tts: 'elevenlabs' });

    // Question → streamed answer, spoken by ElevenLabs.
    const heardBefore = call.heardMs();
    await call.say(tone(700));
    await call.waitFor(() => rig.elevenlabs.requests.some((r) => r.text.includes('Monday to Friday')), 5_000, 'the answer to be synthesized');
    await call.untilQuiet();
    expect(call.heardMs() - heardBefore).toBeGreaterThan(1_000);
    const session = rig.engine.registry.session(call.callSid)!;
    expect(session.history.map((h) => h.text)).toEqual(['what are your hours', 'We are open Monday to Friday, eight to six. Anything else?']);
    expect(rig.openai.transcription.sessions).toHaveLength(1); // one Realtime session for the call
    expect(record.turns[0]?.endOfSpeechToAudioMs).toBeGreaterThan(0);

    // A long answer, interrupted while it plays: the player is cleared, the caller is heard.
    await call.say(tone(700));
    await call.waitFor(() => stateOf(rig, call.callSid) === 'reply.speaking' && call.heardMs() > heardBefore + 2_500, 8_000, 'the long answer to play');
    const clearsBefore = call.clears.length;
    await call.say(tone(900));
    await call.waitFor(() => call.clears.length > clearsBefore, 3_000, 'a clear');

    // The interruption asked for a person: the chat model calls transfer_to_staff → <Dial>.
    await call.waitFor(() => rest.calls.some((c) => c.op === 'update' && (c.twiml ?? '').includes('<Dial')), 20_000, 'the transfer');
    const third = rig.openai.chat.requests.at(-1)!.body;
    const assistantLines = third.messages.filter((m) => m.role === 'assistant').map((m) => (typeof m.content === 'string' ? m.content : ''));
    expect(assistantLines[1]).not.toContain('diet and behaviour'); // history is cut to what was heard
    await call.waitFor(() => stateOf(rig, call.callSid) === 'ended' || stateOf(rig, call.callSid).startsWith('transferring.handedOff'), 10_000, 'the hand-off');

    // Nothing of the keys anywhere in the logs or the journal.
    const everything = [...rig.startupLogs, ...rig.engine.logs, readFileSync(join(journalDir, readdirSync(journalDir)[0]!), 'utf8')].join('\n');
    for (const key of [OPENAI_KEY, ELEVENLABS_KEY, OPENAI_KEY.slice(-8), ELEVENLABS_KEY.slice(-8)]) expect(everything).not.toContain(key);
    expect(record.usage.agentInputTokens).toBeGreaterThan(0);
    expect(record.usage.ttsCharacters).toBeGreaterThan(50);
    expect(record.fallbacks).toEqual([]);
  }, 60_000);

  it('answers from the local receptionist when the chat model stalls, within the silence budget', async (ctx) => {
    const { expect } = ctx;
    const { rig, journalDir, dial } = await start(ctx, { transcripts: ['what are your hours'] });
    const call = await dial();
    rig.openai.chat.faults.push({ stallAfterChunks: 0 });
    await call.say(tone(700));
    await call.waitFor(() => rig.engine.registry.session(call.callSid)!.history.length >= 2, 15_000, 'an answer');
    await call.untilQuiet();
    const session = rig.engine.registry.session(call.callSid)!;
    expect(session.history[1]?.text).toContain('Monday to Friday, 8 am to 6 pm'); // the local receptionist's facts
    // The caller heard something (the filler, then the answer) within the 2.5 s silence budget.
    expect(session.record.turns[0]?.endOfSpeechToAudioMs).toBeLessThan(2_500);
    expect(session.record.fallbacks).toEqual([{ kind: 'agent', from: 'openai', to: 'local' }]);
    expect(rig.openai.chat.requests[0]?.clientDisconnected).toBe(true); // the stalled request was cancelled
    await call.hangUp();
    await call.waitFor(() => stateOf(rig, call.callSid) === 'ended', 3_000, 'the end');
    await rig.engine.journal!.flushAll();
    expect(journalEvents(journalDir).filter((e) => e.type === 'provider.fallback')).toMatchObject([{ kind: 'agent', from: 'openai', to: 'local' }]);
    // A call with cloud partials and a fallback in it replays exactly like any other.
    const replay = replayJournal(parseJournal(readFileSync(join(journalDir, readdirSync(journalDir)[0]!), 'utf8')));
    expect(replay.divergences).toEqual([]);
    expect(replay.outcome).toBe('callerHungUp');
    expect(replay.outcome).toBe(replay.recordedOutcome);
  }, 40_000);

  it('speaks with the local voice when ElevenLabs fails, and keeps the call going', async (ctx) => {
    const { expect } = ctx;
    const { rig, dial } = await start(ctx, { transcripts: ['what are your hours'] });
    const call = await dial();
    rig.elevenlabs.faults.setDefault({ status: 500 });
    await call.say(tone(700));
    await call.waitFor(() => rig.engine.registry.session(call.callSid)!.record.fallbacks.length > 0, 6_000, 'a fallback');
    // The quiet right after the fallback is not the end of the answer: the local voice may not have
    // started yet. The call is back to listening once the answer has been played.
    const session = rig.engine.registry.session(call.callSid)!;
    await call.waitFor(() => session.history.length >= 2 && stateOf(rig, call.callSid) === 'listening.waiting', 8_000, 'the answer in the local voice');
    await call.untilQuiet();
    expect(session.history[1]?.text).toContain('Monday to Friday');
    expect(session.record.fallbacks.every((f) => f.kind === 'tts' && f.to === 'local')).toBe(true);
    expect(stateOf(rig, call.callSid)).toBe('listening.waiting');
  }, 40_000);

  it('moves recognition to the embedded recognizer when the Realtime session drops, without losing the utterance', async (ctx) => {
    const { expect } = ctx;
    const { rig, dial } = await start(ctx);
    rig.openai.transcription.faults.push({ dropAfterChunks: 2 });
    const call = await dial();
    await call.say(await callerSpeech('what are your hours'));
    await call.waitFor(() => rig.engine.registry.session(call.callSid)!.history.length >= 2, 15_000, 'an answer');
    const session = rig.engine.registry.session(call.callSid)!;
    expect(session.history[0]?.text).toBe('what are your hours');
    expect(session.record.fallbacks).toEqual([{ kind: 'stt', from: 'openai', to: 'local' }]);
  }, 40_000);

  for (const transport of ['http', 'websocket'] as const) {
    it(`plays ElevenLabs audio cut into odd-sized chunks (${transport}) as whole 20 ms frames, every byte in order`, async (ctx) => {
      const { expect } = ctx;
      const { rig, dial } = await start(ctx, {
        transcripts: ['what are your hours'],
        env: { ELEVENLABS_TRANSPORT: transport },
        elevenlabsChunkBytes: (i) => ODD_CHUNKS[i % ODD_CHUNKS.length]!,
      });
      const call = await dial();
      const before = rig.elevenlabs.requests.length;
      await call.say(tone(700));
      await call.waitFor(() => (rig.engine.registry.session(call.callSid)?.history.length ?? 0) >= 2, 10_000, 'an answer');
      await call.waitFor(() => stateOf(rig, call.callSid) === 'listening.waiting', 10_000, 'the answer to end');
      await call.untilQuiet();
      const session = rig.engine.registry.session(call.callSid)!;
      expect(session.record.fallbacks).toEqual([]); // ElevenLabs spoke it, not the local voice
      const requests = rig.elevenlabs.requests.slice(before);
      expect(requests.length).toBeGreaterThan(0);
      expect(requests.reduce((n, r) => n + r.chunks, 0)).toBeGreaterThan(ODD_CHUNKS.length);
      // Every byte the vendor sent, in order, then μ-law silence to the end of the last 20 ms frame.
      const vendor = Buffer.concat(requests.map((r) => fakeAudio(r.text)));
      const sent = audioOf(call, lastGeneration(call));
      expect(sent.length % 160).toBe(0);
      expect(sent.length - vendor.length).toBeLessThan(160);
      expect(sent.subarray(0, vendor.length).equals(vendor)).toBe(true);
      expect(sent.subarray(vendor.length).every((b) => b === 0xff)).toBe(true);
      expect(call.protocolErrors).toEqual([]); // every media message a whole number of frames
      expect(call.heardMs()).toBeGreaterThanOrEqual(sent.length / 8);
    }, 40_000);
  }
});
