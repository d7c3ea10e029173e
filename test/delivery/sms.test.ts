/**
 * SMS confirmations through the real Twilio client (createTwilioRest → twilio package) against the
 * fake Twilio REST server on loopback, driven by the outbox on the real SQLite store.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createOutbox, type Outbox } from '../../src/delivery/outbox.js';
import { callSummaryPayload, followUpPayload } from '../../src/delivery/payload.js';
import { createSmsSender, smsBody } from '../../src/delivery/sms.js';
import type { ClinicDelivery } from '../../src/delivery/types.js';
import { openStore } from '../../src/store/index.js';
import type { Delivery, FollowUp, FollowUpStore } from '../../src/store/types.js';
import { createTwilioRest, TWILIO_REST_BREAKER, TwilioRestError } from '../../src/twilio/rest.js';
import { start, type FakeTwilioRest } from '../fakes/twilio-rest-server.js';
import { CALLER, CLINIC_SMS_FROM, SECOND, T0, capturedLogger, finishedCall, followUp, manualClock, summaryOf } from './kit.js';

let fake: FakeTwilioRest;
let store: FollowUpStore;
let clinic: ClinicDelivery;
let clock: ReturnType<typeof manualClock>;
let log: ReturnType<typeof capturedLogger>;
const outboxes: Outbox[] = [];

const rest = () => createTwilioRest({ accountSid: fake.accountSid, authToken: fake.authToken, baseUrl: fake.url, timeoutMs: 2_000 });

function outbox(): Outbox {
  const o = createOutbox({
    store,
    clinic: (id) => (id === 'riverside' ? clinic : null),
    logger: log.logger,
    now: clock.now,
    random: () => 0.5,
    senders: { sms: createSmsSender(rest()) },
  });
  outboxes.push(o);
  return o;
}

const rowOf = async (subjectId: string): Promise<Delivery> => (await store.deliveriesFor(subjectId))[0]!;
const asFollowUp = (over: Partial<FollowUp> = {}): FollowUp => ({ ...followUp(), status: 'new', handledBy: null, notes: [], updatedAt: T0, ...over });

beforeEach(async () => {
  fake = await start();
  store = await openStore('sqlite::memory:');
  clock = manualClock(T0 + 30 * SECOND);
  log = capturedLogger();
  clinic = { name: 'Riverside Vet', webhook: null, email: null, sms: { from: CLINIC_SMS_FROM } };
});

afterEach(async () => {
  for (const o of outboxes.splice(0)) await o.stop({ graceMs: 0 });
  await fake.close();
  await store.close();
});

describe('SMS confirmation to the caller', () => {
  it("posts To/From/Body to Messages.json: only the caller's number, only the clinic and pet names", async () => {
    const { followUp: f } = await finishedCall(store, ['sms']);
    await outbox().kick();

    expect(await rowOf(f.id)).toMatchObject({ status: 'delivered', attempts: 1 });
    expect(fake.requests).toHaveLength(1);
    const [req] = fake.requests;
    expect(req).toMatchObject({
      method: 'POST',
      path: `/2010-04-01/Accounts/${fake.accountSid}/Messages.json`,
      route: 'message.create',
      authorized: true,
      status: 201,
      form: { To: CALLER, From: CLINIC_SMS_FROM, Body: "Riverside Vet received your appointment request for Bella; we'll call you back." },
    });
    expect(Object.keys(req!.form).sort()).toEqual(['Body', 'From', 'To']);
    for (const leak of ['limping', 'Thursday', 'Ana', 'dog']) expect(req!.form.Body).not.toContain(leak);
    expect(log.text()).not.toContain(CALLER);
  });

  it('a refusal from Twilio (400, invalid number) is permanent', async () => {
    const { followUp: f } = await finishedCall(store, ['sms']);
    fake.script({ route: 'message.create', status: 400, twilioCode: 21211 });
    const o = outbox();
    await o.kick();
    expect(await rowOf(f.id)).toMatchObject({ status: 'failed', attempts: 1, lastError: 'sendSms failed: HTTP 400 21211' });
    clock.advance(3_600_000);
    await o.kick();
    expect(fake.requests).toHaveLength(1);
  });

  it('a Twilio outage (503) is retried, then delivered', async () => {
    const { followUp: f } = await finishedCall(store, ['sms']);
    fake.script({ route: 'message.create', status: 503 });
    const o = outbox();
    await o.kick();
    const row = await rowOf(f.id);
    expect(row).toMatchObject({ status: 'pending', attempts: 1, lastError: 'sendSms failed: HTTP 503 20503', nextAttemptAt: clock.now() + 5 * SECOND });
    clock.set(row.nextAttemptAt);
    await o.kick();
    expect(await rowOf(f.id)).toMatchObject({ status: 'delivered', attempts: 2 });
  });

  it('fails without a request when there is no caller number, and never sends a call summary by SMS', async () => {
    const { followUp: f } = await finishedCall(store, ['sms'], { followUp: { callerNumber: null } });
    const g = followUp();
    await store.recordFollowUp(g, []);
    await store.finishCall(
      summaryOf(g),
      [{ id: crypto.randomUUID(), clinicId: g.clinicId, callSid: g.callSid, channel: 'sms', kind: 'call_summary', subjectId: g.callSid, createdAt: T0, holdUntil: null, expiresAt: T0 + 86_400_000 }],
      T0,
    );
    await outbox().kick();
    expect(await rowOf(f.id)).toMatchObject({ status: 'failed', lastError: 'no caller number to send the confirmation to' });
    expect(await rowOf(g.callSid)).toMatchObject({ status: 'failed', lastError: 'a call_summary is not sent by SMS' });
    expect(fake.requests).toHaveLength(0);
  });

  it('fails when the clinic has no SMS sender number any more, or there are no Twilio credentials', async () => {
    const a = await finishedCall(store, ['sms']);
    clinic = { ...clinic, sms: null };
    await outbox().kick();
    expect(await rowOf(a.followUp.id)).toMatchObject({ status: 'failed', lastError: 'the clinic no longer has SMS configured' });

    clinic = { ...clinic, sms: { from: CLINIC_SMS_FROM } };
    const b = await finishedCall(store, ['sms']);
    const bare = createOutbox({ store, clinic: () => clinic, logger: log.logger, now: clock.now });
    outboxes.push(bare);
    await bare.kick();
    expect(await rowOf(b.followUp.id)).toMatchObject({ status: 'failed', lastError: 'SMS delivery needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, which are not set' });
  });
});

describe('sendSms (src/twilio/rest.ts)', () => {
  it('refuses bad numbers and bodies without a request, naming neither number', async () => {
    const r = rest();
    const signal = new AbortController().signal;
    for (const [to, from, body, why] of [
      ['5550100123', CLINIC_SMS_FROM, 'hi', 'invalid To number'],
      [CALLER, 'Riverside', 'hi', 'invalid From number'],
      [CALLER, CLINIC_SMS_FROM, '  ', 'empty body'],
      [CALLER, CLINIC_SMS_FROM, 'x'.repeat(1601), 'body over 1600 characters'],
    ] as const) {
      const err = await r.sendSms(to, from, body, signal).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TwilioRestError);
      expect(err).toMatchObject({ code: 'VET_E_TWILIO_REST', message: `sendSms failed: ${why}`, retryable: false, status: null });
    }
    expect(fake.requests).toHaveLength(0);
  });

  it('returns the Message SID Twilio assigned', async () => {
    await expect(rest().sendSms(CALLER, CLINIC_SMS_FROM, 'hello', new AbortController().signal)).resolves.toEqual({ messageSid: `SM${'1'.padStart(32, '0')}` });
  });

  it('has its own breaker: an SMS outage never opens the one live calls use', async () => {
    const r = rest();
    const signal = new AbortController().signal;
    fake.script({ route: 'message.create', status: 503, times: Infinity });
    for (let i = 0; i < TWILIO_REST_BREAKER.consecutiveFailures + 1; i++) await r.sendSms(CALLER, CLINIC_SMS_FROM, 'hello', signal).catch(() => {});
    const open = await r.sendSms(CALLER, CLINIC_SMS_FROM, 'hello', signal).catch((e: unknown) => e);
    expect(open).toMatchObject({ message: 'sendSms failed: circuit open', retryable: true });
    await expect(r.hangup(`CA${'ab'.repeat(16)}`, signal)).resolves.toBeUndefined();
  });
});

describe('smsBody', () => {
  it('says what was received, for which pet, and nothing the caller said', () => {
    const body = (over: Partial<FollowUp>) => smsBody(followUpPayload(asFollowUp(over), null), 'Riverside Vet');
    expect(body({ type: 'refill_request' })).toBe("Riverside Vet received your refill request for Bella; we'll call you back.");
    expect(body({ type: 'message', message: 'Please call about the bill', recipient: 'Dr. Lee' })).toBe("Riverside Vet received your message; we'll call you back.");
    expect(body({ petName: null })).toBe("Riverside Vet received your appointment request; we'll call you back.");
    expect(body({ type: 'emergency', urgency: 'emergency' })).toBe("Riverside Vet received your call about Bella; we'll call you back.");
    expect(body({ petName: 'Bella http://evil.example/x?y=1 <b>' })).toBe("Riverside Vet received your appointment request for Bella http evil example x y 1 b; we'll call you back.");
    expect(smsBody(callSummaryPayload(summaryOf(followUp())), 'Riverside Vet')).toBeNull();
  });
});
