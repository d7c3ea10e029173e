/**
 * Regression: with a recognizer that answers synchronously, a backchannel over a reply must be judged
 * as soon as its transcript arrives (the reply resumes), not after a timeout.
 */
import { it } from 'vitest';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { energyVad } from '../../src/providers/vad/energy.js';
import { FakeTwilio } from '../support/fake-twilio.js';
import { restRecorder } from '../support/rest-recorder.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN } from '../support/engine.js';
import { CPS, QUICK_VET, TENANTS, tone, warmPrompts, playedOf, outboundOf } from './conversation-kit.js';
const LONG = 'We offer vaccinations, dental care and surgery for dogs and cats. Our team also does grooming on weekdays. We can board your pet while you travel.';
it('a backchannel over a reply resumes it promptly with a synchronous recognizer', async (ctx) => {
  const prompts = await warmPrompts();
  const engine = await startEngine({ providers: { vad: energyVad, stt: createFakeStt({ script: ['tell me about your services', 'mm-hmm'] }), tts: createFakeTts({ charsPerSecond: CPS }), agent: createFakeAgent({ script: [LONG] }) }, prompts, rest: restRecorder().rest, env: { TENANTS_DIR: TENANTS } });
  const call = await FakeTwilio.call({ serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: '+15557654321' });
  ctx.onTestFinished(async () => { await call.dispose(); await engine.close(); });
  const state = () => engine.registry.list().find((c) => c.callSid === call.callSid)?.state ?? 'ended';
  await call.waitFor(() => state() === 'listening.waiting', 5_000);
  await call.say(tone(400));
  await call.waitFor(() => playedOf(call, 2) >= 1000, 8_000);
  await call.say(tone(400));
  const stoppedAt = call.now();
  await call.waitFor(() => call.clears.length > 0 && outboundOf(call, 'media').some((m) => m.atMs > call.clears[0]!), 3_000);
  const resumed = outboundOf(call, 'media').find((m) => m.atMs > call.clears[0]!)!.atMs - stoppedAt;
  ctx.expect(resumed).toBeLessThan(400);
}, 20_000);
