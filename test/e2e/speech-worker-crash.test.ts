/**
 * A speech worker dies mid-call (tests/support/crashing-speech.ts plants the fault): the call on it
 * loses its recognizer through the machine's recognizer-error path (sttDown; the caller's next
 * words get "could you say that again?" instead of silence), goes on and ends normally, and the
 * next call is heard by the worker that replaced it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTenants } from '../../src/config/tenants.js';
import { localAgent } from '../../src/providers/agent/local.js';
import { SpeechPool } from '../../src/providers/speech/pool.js';
import { createLocalStt } from '../../src/providers/stt/local.js';
import type { SttProvider } from '../../src/providers/stt/types.js';
import { createLocalTts } from '../../src/providers/tts/local.js';
import { PromptCache } from '../../src/providers/tts/prompt-cache.js';
import { energyVad } from '../../src/providers/vad/energy.js';
import { callerSpeech } from '../support/caller-speech.js';
import { CRASH_WORD, CRASHING_SPEECH_WORKER } from '../support/crashing-speech.js';
import { startEngine, FIXTURE_TENANTS_DIR, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { FakeTwilio } from '../support/fake-twilio.js';
import { restRecorder } from '../support/rest-recorder.js';

const pool = new SpeechPool({ workers: 1, script: CRASHING_SPEECH_WORKER });
const stopped: string[] = [];
pool.onWorkerStopped((m) => stopped.push(m));
let engine: TestEngine;
let stt: SttProvider;
const calls: FakeTwilio[] = [];

beforeAll(async () => {
  const tts = createLocalTts({ pool });
  const prompts = new PromptCache(tts);
  await prompts.warm((await loadTenants(FIXTURE_TENANTS_DIR)).all());
  stt = await createLocalStt({ pool, onWarning: () => {} });
  engine = await startEngine({
    providers: { vad: energyVad, stt, tts, agent: localAgent },
    prompts,
    rest: restRecorder().rest,
    env: { TENANTS_DIR: FIXTURE_TENANTS_DIR },
  });
}, 60_000);

afterAll(async () => {
  await Promise.all(calls.map((c) => c.dispose()));
  await engine?.close();
  await pool.close();
});

const dial = async () => {
  const call = await FakeTwilio.call({ serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: '+15550109000', from: '+15557654321' });
  calls.push(call);
  return call;
};
const stateOf = (callSid: string) => engine.registry.list().find((c) => c.callSid === callSid)?.state ?? 'ended';
const answersHours = async (call: FakeTwilio) => {
  await call.say(await callerSpeech('what are your hours'));
  await call.waitFor(() => stateOf(call.callSid).startsWith('reply'), 8_000, 'the reply');
  await call.untilQuiet();
  expect(engine.registry.session(call.callSid)?.history.at(-1)?.text).toContain('Monday to Friday');
};

describe('a speech worker that dies mid-call', () => {
  it('fails that call over to its recognizer-error path, and the next call is heard again', async () => {
    const first = await dial();
    await first.untilQuiet();
    await answersHours(first);

    // The planted fault: a session opened with CRASH_WORD ends the (only) worker.
    const crashed: Error[] = [];
    stt.open({ language: 'en-US', vocabulary: [CRASH_WORD], signal: new AbortController().signal, onPartial() {}, onFinal() {}, onError: (e) => crashed.push(e) });
    await first.waitFor(() => crashed.length === 1, 10_000, 'the crash');
    await first.waitFor(() => engine.registry.session(first.callSid)?.context.sttDown === true, 5_000, 'the recognizer error');
    expect(stopped).toEqual([expect.stringMatching(/local speech worker stopped \(planted speech worker crash\)/)]);

    // The replacement worker recognizes and speaks for the next call, which comes in now: it runs
    // beside the rest of the first call (rather than after it), which needs no speech worker.
    const next = (async () => {
      const second = await dial();
      await second.untilQuiet();
      await answersHours(second);
      expect(engine.registry.session(second.callSid)?.context.sttDown).toBe(false);
      await second.hangUp();
    })();
    next.catch(() => undefined); // awaited below, after the first call's checks

    // The caller speaks again: nothing can transcribe it, so the machine asks again instead of waiting forever.
    const before = first.heardMs();
    await first.say(await callerSpeech('what are your hours'));
    await first.waitFor(() => stateOf(first.callSid) === 'listening.reprompting', 8_000, 'the reprompt');
    await first.untilQuiet();
    expect(first.heardMs() - before).toBeGreaterThan(1_000); // "Sorry, could you say that again?"
    await first.hangUp();
    await first.waitFor(() => stateOf(first.callSid) === 'ended', 5_000, 'the end of the call');
    expect(engine.registry.recentCalls().find((r) => r.callSid === first.callSid)?.outcome).toBe('callerHungUp');
    await next;
  }, 90_000);
});
