/**
 * TWILIO_ACCOUNT_SID is compared without regard to case everywhere: a SID pasted in upper case must
 * not pass the webhook and then fail every Media Stream (Twilio sends lower-case hex in both). And
 * another account is still refused at both doors.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadEnv } from '../../src/config/env.js';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { FakeTwilio } from '../support/fake-twilio.js';

const QUICK_VET = '+15550109000';
const UPPER = `AC${TEST_ACCOUNT.slice(2).toUpperCase()}`;

const engines: TestEngine[] = [];
const calls: FakeTwilio[] = [];
afterEach(async () => {
  await Promise.all(calls.splice(0).map((c) => c.dispose()));
  await Promise.all(engines.splice(0).map((e) => e.close()));
});

async function callWith(configured: string, sent: string, start?: { accountSid: string }) {
  const e = await startEngine({
    providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts(), agent: createFakeAgent() },
    prompts: { get: () => new Uint8Array(1600) },
    env: { TWILIO_ACCOUNT_SID: configured, TENANTS_DIR: new URL('../fixtures/tenants', import.meta.url).pathname },
  });
  engines.push(e);
  const call = await FakeTwilio.call({
    serverUrl: e.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: sent, to: QUICK_VET, from: '+15557654321',
    ...(start ? { start } : {}),
  });
  calls.push(call);
  return { e, call };
}

const streamed = (e: TestEngine, call: FakeTwilio) =>
  call.waitFor(() => e.registry.session(call.callSid)?.streamConnected === true, 3_000, 'the stream to be accepted').then(() => true, () => false);

describe('TWILIO_ACCOUNT_SID', () => {
  it('is canonical in the config: "AC" and lower-case hex, however it was pasted', () => {
    expect(loadEnv({ TWILIO_ACCOUNT_SID: UPPER }).twilio.accountSid).toBe(TEST_ACCOUNT);
    expect(loadEnv({ TWILIO_ACCOUNT_SID: `ac${TEST_ACCOUNT.slice(2)}` }).twilio.accountSid).toBe(TEST_ACCOUNT);
  });

  it('pasted in upper case: the webhook and the Media Stream of a genuine call are both accepted', async () => {
    const { e, call } = await callWith(UPPER, TEST_ACCOUNT);
    expect(call.twiml?.stream).toBeTruthy();
    expect(await streamed(e, call)).toBe(true);
    expect(e.logs.join('')).not.toContain('stream from another account');
  });

  it('a stream start naming the account in upper case is the same account', async () => {
    const { e, call } = await callWith(TEST_ACCOUNT, TEST_ACCOUNT, { accountSid: UPPER });
    expect(await streamed(e, call)).toBe(true);
  });

  it('another account is refused at the webhook and at the stream', async () => {
    const other = `AC${'b'.repeat(32)}`;
    const { call: byWebhook } = await callWith(UPPER, other);
    expect(byWebhook.twiml?.stream ?? null).toBeNull();
    const { e, call } = await callWith(UPPER, TEST_ACCOUNT, { accountSid: `AC${'B'.repeat(32)}` });
    expect(await streamed(e, call)).toBe(false);
    expect(e.logs.join('')).toContain('stream from another account');
  });
});
