/** Regressions: bugs found while writing the conversation suite (each fixed; these keep them fixed). */
import { describe, it } from 'vitest';
import { localAgent } from '../../src/providers/agent/local.js';
import { createLocalStt } from '../../src/providers/stt/local.js';
import { synthesizeUlaw } from '../../src/providers/tts/local.js';
import { clipTexts } from '../../src/providers/tts/prompt-cache.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { energyVad } from '../../src/providers/vad/energy.js';
import { loadTenants } from '../../src/config/tenants.js';
import { FakeTwilio } from '../support/fake-twilio.js';
import { restRecorder } from '../support/rest-recorder.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN } from '../support/engine.js';
import { CPS, QUICK_VET, TENANTS, outboundOf, rigFor, speechMs, tone, untilState, warmPrompts } from './conversation-kit.js';

describe('engine regressions', () => {
  it('the opening prompt is sent whole (no frame before the stream counts as started)', async (ctx) => {
    const quickVet = (await loadTenants(TENANTS)).byId('quick-vet')!;
    const r = await rigFor(ctx, { agent: localAgent });
    const call = await r.dial(QUICK_VET);
    await untilState(r, call, 'listening.waiting', 5_000);
    const sentMs = outboundOf(call, 'media').reduce((ms, m) => ms + m.bytes / 8, 0);
    ctx.expect(r.logs(undefined, 'outbound frame dropped')).toEqual([]); // got 4 × { reason: 'notStarted' }
    ctx.expect(sentMs).toBe(speechMs(clipTexts(quickVet).greeting)); // got 320, want 520
  });

  for (const which of ['local', 'fake, synchronous'] as const) {
    it(`a recognizer that answers inside speechEnded() (${which}) does not cost the turn sttFinalTimeout`, async (ctx) => {
      const prompts = await warmPrompts();
      const stt = which === 'local' ? await createLocalStt() : createFakeStt({ script: ['what are your hours'] });
      const engine = await startEngine({
        providers: { vad: energyVad, stt, tts: createFakeTts({ charsPerSecond: CPS }), agent: localAgent },
        prompts, rest: restRecorder().rest, env: { TENANTS_DIR: TENANTS },
      });
      const call = await FakeTwilio.call({ serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: '+15557654321' });
      ctx.onTestFinished(async () => { await call.dispose(); await engine.close(); });
      const state = () => engine.registry.list().find((c) => c.callSid === call.callSid)?.state ?? 'ended';
      await call.waitFor(() => state() === 'listening.waiting', 5_000);
      await call.say(which === 'local' ? await synthesizeUlaw('what are your hours') : tone(400));
      const stoppedAt = call.now();
      await call.waitFor(() => state() === 'reply.speaking', 8_000);
      const turn = engine.registry.session(call.callSid)!.record.turns[0]!;
      ctx.expect(turn.sttMs).not.toBeNull(); // got null: the final came before vad.speechEnd
      ctx.expect(call.now() - stoppedAt).toBeLessThan(1_200); // got ~2 500 ms
      ctx.expect(turn.endOfSpeechToAudioMs).toBeLessThan(800); // got ~2 600 ms
    }, 30_000);
  }
});
