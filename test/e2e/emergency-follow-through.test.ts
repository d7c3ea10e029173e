/**
 * The emergency follow-up of the two-step check (docs/follow-ups.md, docs/design/conversation.md §4),
 * end to end: calls over the real Media Streams protocol (a scripted recognizer, the local
 * receptionist) into an engine on a real SQLite store. What staff get says how the emergency was
 * triggered and how the caller confirmed it; a no leaves no emergency follow-up but the summary says
 * what was heard; a call that ended during the question is a possible emergency to call back.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'vitest';
import { clinicDeliveries } from '../../src/delivery/clinics.js';
import { createOutbox } from '../../src/delivery/outbox.js';
import { createLogger } from '../../src/observability/logger.js';
import { localAgent } from '../../src/providers/agent/local.js';
import { openStore } from '../../src/store/index.js';
import type { FollowUp, FollowUpStore } from '../../src/store/types.js';
import type { FakeSttUtterance } from '../../src/providers/stt/fake.js';
import { QUICK_VET, startRig, tone, untilState, type Rig } from './conversation-kit.js';

/** One keyword in a partial (uncertain): every call but the key press opens with it. */
const BLEEDING = { partials: ['my dog is bleeding'], final: 'my dog is bleeding' };

/**
 * An engine of its own on a SQLite store of its own for each test (the recognizer's script is one
 * call's), so the four calls run at once: each waits on audio played in real time, not on the CPU.
 */
async function emergencyRig(ctx: TestContext, stt: FakeSttUtterance[]): Promise<{ rig: Rig; store: FollowUpStore }> {
  const store = await openStore(`sqlite:${join(mkdtempSync(join(tmpdir(), 'vetline-emergency-')), 'calls.db')}`);
  const rig = await startRig({
    agent: localAgent,
    stt,
    engine: {
      followUps: (tenants) => {
        const clinic = clinicDeliveries(tenants, { smtp: false, sms: false });
        const outbox = createOutbox({ store, clinic, logger: createLogger({ level: 'silent' }), senders: { email: null, sms: null } });
        return { store, outbox, clinicDelivery: clinic };
      },
    },
  });
  // The engine first (the end of its calls writes to the store), then the store.
  ctx.onTestFinished(async () => {
    await rig.close();
    await store.close();
  });
  return { rig, store };
}

/** The call's summary once written (the end of the call writes it after any emergency follow-up). */
async function finished(ctx: TestContext, store: FollowUpStore, sid: string): Promise<{ summary: string; emergency: FollowUp | undefined }> {
  const end = Date.now() + 5_000;
  for (;;) {
    const summary = await store.getCallSummary(sid);
    if (summary) {
      const emergencies = (await store.listFollowUps({ clinicId: null, type: 'emergency' })).filter((f) => f.callSid === sid);
      ctx.expect(emergencies.length).toBeLessThanOrEqual(1);
      return { summary: summary.summary, emergency: emergencies[0] };
    }
    if (Date.now() > end) throw new Error(`no call summary for ${sid}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Dials, says the uncertain keyword and waits for the question to have been heard. */
async function askedCall(rig: Rig) {
  const call = await rig.dial(QUICK_VET);
  await untilState(rig, call, 'listening.waiting', 8_000);
  await call.say(tone(600));
  await untilState(rig, call, 'emergency.checking.waiting', 10_000);
  return call;
}

describe.concurrent('the emergency follow-up records the check', () => {
  it('"yes": an emergency follow-up, uncertain, confirmed by the caller; the summary says so', async (ctx) => {
    const { expect } = ctx;
    const { rig, store } = await emergencyRig(ctx, [BLEEDING, 'yes']);
    const call = await askedCall(rig);
    await call.say(tone(300));
    await untilState(rig, call, 'transferring.handedOff', 10_000);
    await call.stop();
    await untilState(rig, call, 'ended', 3_000);
    const { summary, emergency } = await finished(ctx, store, call.callSid);
    expect(emergency?.emergency).toMatchObject({
      trigger: 'speech', detail: 'bleeding', script: 'emergency', sentTo: 'emergencyLine', certainty: 'uncertain', confirmation: 'saidYes',
    });
    expect(summary).toContain('EMERGENCY: the caller said "bleeding" ("bleeding" was unclear; asked, the caller said the pet was in danger)');
  }, 40_000);

  it('"no": no emergency follow-up; the summary says what was heard and that the caller said no', async (ctx) => {
    const { expect } = ctx;
    const { rig, store } = await emergencyRig(ctx, [BLEEDING, 'no']);
    const call = await askedCall(rig);
    await call.say(tone(300));
    await untilState(rig, call, 'listening.waiting', 6_000);
    await call.hangUp();
    await untilState(rig, call, 'ended', 3_000);
    const { summary, emergency } = await finished(ctx, store, call.callSid);
    expect(emergency).toBeUndefined();
    expect(summary).toContain('The assistant heard "bleeding" but was not sure; asked, the caller said the pet was not in danger right now.');
    expect(summary).not.toContain('EMERGENCY');
  }, 40_000);

  it('a hang-up during the question: a possible emergency to call back, nothing played', async (ctx) => {
    const { expect } = ctx;
    const { rig, store } = await emergencyRig(ctx, [BLEEDING]);
    const call = await askedCall(rig);
    await call.hangUp();
    await untilState(rig, call, 'ended', 3_000);
    const { summary, emergency } = await finished(ctx, store, call.callSid);
    expect(emergency?.emergency).toEqual({
      trigger: 'speech', detail: 'bleeding', script: 'none', sentTo: null, connected: null, certainty: 'uncertain', confirmation: 'callEnded',
    });
    expect(summary).toContain('POSSIBLE EMERGENCY: the assistant heard "bleeding" and the call ended while it asked whether the pet was in danger');
  }, 40_000);

  it('the emergency key: clear, not asked', async (ctx) => {
    const { expect } = ctx;
    const { rig, store } = await emergencyRig(ctx, []);
    const call = await rig.dial(QUICK_VET);
    await untilState(rig, call, 'listening.waiting', 8_000);
    call.dtmf('9');
    await untilState(rig, call, 'transferring.handedOff', 10_000);
    await call.stop();
    await untilState(rig, call, 'ended', 3_000);
    const { emergency } = await finished(ctx, store, call.callSid);
    expect(emergency?.emergency).toMatchObject({ trigger: 'dtmf', detail: '9', certainty: 'clear', confirmation: 'notAsked' });
  }, 40_000);
});
