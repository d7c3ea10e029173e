/**
 * Log canary (docs/design/reliability.md F17, recipe 7): a whole local call, an appointment request begun by
 * voice, with a unique string in every secret, a unique caller number in `From` (webhooks and
 * status callbacks) and the caller's and the pet's names spoken and transcribed. Every line
 * the engine logs, everything written to this process's stdout/stderr, and /metrics must contain
 * none of them, no E.164 number, no webhook signature and no part of the call's stream token (the
 * last segment of its Stream URL path). Unit-level redaction paths are in
 * test/observability/logger.test.ts; this is the end-to-end sweep.
 */
import twilio from 'twilio';
import { afterAll, beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest';
import { callerSpeech } from '../support/caller-speech.js';
import { startLocalEngine, TEST_ACCOUNT, TEST_BASE_URL, type TestEngine } from '../support/engine.js';
import { FakeTwilio } from '../support/fake-twilio.js';
import { restRecorder } from '../support/rest-recorder.js';
import { wsSignature } from '../support/twilio-sign.js';

const SECRETS = {
  TWILIO_AUTH_TOKEN: 'canary-twilio-4b1e9f27c3d8a650e1',
  OPENAI_API_KEY: 'sk-canary-openai-83fa2c91d7e4b5a6',
  ELEVENLABS_API_KEY: 'canary-eleven-5d2a7c9e1f3b8a04',
  INSPECTOR_TOKEN: 'canary-inspector-9e8d7c6b5a4f3e2d',
  STREAM_TOKEN_SECRET: 'canary-stream-secret-7a1c5e9b3d2f8064',
};
const CALLER = '+15557650123';
const CLINIC = '+15550109000';
/** In the local recognizer's vocabulary, so they really are transcribed (and read back). */
const PET = 'simba';
const OWNER = 'emily';

let engine: TestEngine;
let call: FakeTwilio | null = null;
const rest = restRecorder();
let stdout: MockInstance<typeof process.stdout.write>;
let stderr: MockInstance<typeof process.stderr.write>;

beforeAll(async () => {
  // Everything this process writes while the call runs (warnings, stray console output) is swept too.
  stdout = vi.spyOn(process.stdout, 'write');
  stderr = vi.spyOn(process.stderr, 'write');
  engine = await startLocalEngine({ rest: rest.rest, env: { ...SECRETS, LOG_LEVEL: 'debug' } });
}, 60_000);

afterAll(async () => {
  stdout?.mockRestore();
  stderr?.mockRestore();
  await call?.dispose();
  await engine?.close();
});

const stateOf = (callSid: string) => engine.registry.list().find((c) => c.callSid === callSid)?.state ?? 'ended';

/**
 * The caller says `text` once the receptionist listens; resolves once it has answered and gone
 * quiet. Quiet alone is not enough: on a loaded machine the embedded voice can leave a gap of more
 * than 700 ms between two sentences of one reply, and a line said into that gap barges in.
 */
async function turn(c: FakeTwilio, text: string): Promise<void> {
  await c.waitFor(() => stateOf(c.callSid).startsWith('listening'), 10_000, `the receptionist to listen before "${text}"`);
  const heard = c.heardMs();
  expect(await c.say(await callerSpeech(text))).toBe(true);
  await c.waitFor((x) => x.heardMs() > heard + 300, 8_000, `an answer to "${text}"`);
  await c.untilQuiet(700, 15_000);
}

const callerLines = (callSid: string) => engine.registry.session(callSid)?.history.filter((h) => h.role === 'caller').map((h) => h.text) ?? [];

/**
 * `turn`, said once more if the line did not reach the history, as a caller asked "could you say
 * that again?" would: on a loaded machine the embedded recognizer can miss its 2 s deadline. The
 * sweep below needs the names transcribed; how often that takes two tries is not what it tests.
 */
async function line(c: FakeTwilio, text: string): Promise<void> {
  await turn(c, text);
  if (!callerLines(c.callSid).includes(text)) await turn(c, text);
}

describe('log canary', () => {
  it('a full call with canary secrets, caller number and names leaves none of them in logs or metrics', async () => {
    call = await FakeTwilio.call({
      serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: SECRETS.TWILIO_AUTH_TOKEN, accountSid: TEST_ACCOUNT, to: CLINIC, from: CALLER,
    });
    const c = call;
    await c.untilQuiet();
    for (const text of ['i need an appointment', `his name is ${PET}`, `my name is ${OWNER}`]) await line(c, text);
    const said = callerLines(c.callSid);
    // If a line is missing, the states the call went through say where it went.
    const trail = engine.logs.join('').split('\n').filter((l) => l.includes('"state changed"')).map((l) => (JSON.parse(l) as { to: string }).to);
    expect(said, `states: ${trail.join(' → ')}`).toEqual(expect.arrayContaining([`his name is ${PET}`, `my name is ${OWNER}`]));

    await c.recordingCallback({ status: 'completed', durationS: 20 });
    await c.hangUp();
    await c.waitFor(() => stateOf(c.callSid) === 'ended', 3_000, 'the call to end');
    expect((await c.statusCallback('completed', 1)).status).toBe(200); // carries From and To again

    const metrics = await engine.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${SECRETS.INSPECTOR_TOKEN}` } });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toContain('quick-vet'); // the call was counted
    expect(metrics.body).not.toContain(c.callSid);

    const streamPath = new URL(c.twiml.stream?.url ?? 'wss://x/').pathname;
    const [payload = '', mac = ''] = /^\/twilio\/ws\/([^/]+)$/.exec(streamPath)?.[1]?.split('.') ?? [];
    expect(payload.length).toBeGreaterThan(40);
    expect(mac.length).toBeGreaterThan(40);
    const signatures = [
      wsSignature(TEST_BASE_URL, SECRETS.TWILIO_AUTH_TOKEN, streamPath),
      twilio.getExpectedTwilioSignature(SECRETS.TWILIO_AUTH_TOKEN, `${TEST_BASE_URL}/twilio/voice`, {
        CallSid: c.callSid, AccountSid: TEST_ACCOUNT, From: CALLER, To: CLINIC, CallStatus: 'ringing', Direction: 'inbound', ApiVersion: '2010-04-01',
      }),
    ];
    const written = [...stdout.mock.calls, ...stderr.mock.calls].map(([chunk]) => (typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8')));
    const logs = engine.logs.join('');
    expect(logs.length).toBeGreaterThan(5_000);

    for (const [name, text] of [['engine log', logs], ['process output', written.join('')], ['/metrics', metrics.body]] as const) {
      const found = [
        ...Object.entries(SECRETS).filter(([, v]) => text.includes(v)).map(([k]) => k),
        ...(text.includes(CALLER.slice(2)) ? ['caller number'] : []),
        ...(text.match(/\+[1-9]\d{7,14}/g) ?? []),
        ...[PET, OWNER].filter((n) => text.toLowerCase().includes(n)),
        ...signatures.filter((s) => text.includes(s)).map(() => 'a webhook signature'),
        ...[payload, mac].filter((part) => text.includes(part)).map(() => 'the stream token'),
        ...(text.match(/"x-twilio-signature"\s*:\s*"[^"[]/gi) ?? []),
      ];
      expect([name, found]).toEqual([name, []]);
    }
  }, 55_000);
});
