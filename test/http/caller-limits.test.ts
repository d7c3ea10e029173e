/**
 * Per-caller limits at /twilio/voice (`limits.concurrentCallsPerCaller`, `limits.callsPerCallerPerHour`):
 * a real engine (fake providers, real registry) answering Twilio-signed webhooks. Over a limit the
 * caller gets the front desk (open) or the key menu (closed), never the assistant and never a dead
 * line; withheld numbers are not limited; a refused call counts in the metric and the log, and
 * neither ever holds the number.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TenantFile } from '../../src/config/tenant.schema.js';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { signedForm, type FormParams } from '../support/twilio-sign.js';

const OPEN = '+15550107000';
const CLOSED = '+15550107100';
const OPEN_DESK = '+15550107001';
const CALLER = '+15557650001';
const OTHER = '+15557650002';

const clinic = (id: string, number: string, over: Partial<TenantFile>): TenantFile => ({
  id, name: `Clinic ${id}`, phoneNumbers: [number], greeting: 'Hello.',
  transfer: { frontDesk: number === OPEN ? OPEN_DESK : '+15550107101' },
  emergency: { script: 'Go to the emergency hospital now.' },
  info: { hours: 'weekdays', address: '1 Limit Lane' },
  limits: { concurrentCallsPerCaller: 1, callsPerCallerPerHour: 2 },
  ...over,
});

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vetline-caller-limits-'));
  await writeFile(join(dir, 'open.json'), JSON.stringify(clinic('open-vet', OPEN, {})));
  // No opening interval on any day: always closed.
  await writeFile(join(dir, 'closed.json'), JSON.stringify(clinic('closed-vet', CLOSED, { hours: { timeZone: 'UTC', weekly: {} } })));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const engines: TestEngine[] = [];
afterEach(async () => {
  for (const e of engines.splice(0)) await e.close();
});

async function engine(env: Record<string, string> = {}) {
  const e = await startEngine({
    providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts(), agent: createFakeAgent() },
    prompts: { get: () => new Uint8Array(1600) },
    env: { TENANTS_DIR: dir, ...env },
  });
  engines.push(e);
  return e;
}

let sids = 0;
const newSid = () => `CA${(++sids).toString(16).padStart(32, '0')}`;
const post = (e: TestEngine, path: string, params: FormParams) =>
  e.app.inject(signedForm({ baseUrl: TEST_BASE_URL, token: TEST_TOKEN, path, params: { AccountSid: TEST_ACCOUNT, ...params } }));
const ring = async (e: TestEngine, from: string, to = OPEN, sid = newSid()) => {
  const res = await post(e, '/twilio/voice', { CallSid: sid, From: from, To: to, CallStatus: 'ringing', Direction: 'inbound' });
  expect(res.statusCode).toBe(200);
  return { sid, twiml: res.body };
};
const hangUp = (e: TestEngine, sid: string) => post(e, '/twilio/status', { CallSid: sid, CallStatus: 'completed', SequenceNumber: '1' });
const toAssistant = (twiml: string) => twiml.includes('<Connect><Stream');

describe('per-caller limits at /twilio/voice', () => {
  it('concurrent: a second call from the same number goes to the front desk while the first is live; other callers are not affected', async () => {
    const e = await engine();
    const first = await ring(e, CALLER);
    expect(toAssistant(first.twiml)).toBe(true);
    const second = await ring(e, CALLER);
    expect(toAssistant(second.twiml)).toBe(false);
    expect(second.twiml).toContain(`<Dial timeout="20" action="${TEST_BASE_URL}/twilio/dial" method="POST" callerId="${OPEN}"><Number>${OPEN_DESK}</Number></Dial>`);
    expect(second.twiml).toContain('Please hold while we connect you to the front desk.');
    expect(toAssistant((await ring(e, OTHER)).twiml)).toBe(true);
    // Twilio repeating the first call's webhook is the same call, not a second one.
    expect(toAssistant((await ring(e, CALLER, OPEN, first.sid)).twiml)).toBe(true);
    expect(e.registry.activeCount).toBe(2);
    await hangUp(e, first.sid);
    expect(toAssistant((await ring(e, CALLER)).twiml)).toBe(true);
  });

  it('hourly: past callsPerCallerPerHour the caller gets the front desk, even with no call live', async () => {
    const e = await engine();
    for (let i = 0; i < 2; i++) {
      const call = await ring(e, CALLER);
      expect(toAssistant(call.twiml)).toBe(true);
      await hangUp(e, call.sid);
    }
    const third = await ring(e, CALLER);
    expect(toAssistant(third.twiml)).toBe(false);
    expect(third.twiml).toContain(`<Number>${OPEN_DESK}</Number>`);
    // Refused calls take no slot and the window is per clinic: the closed clinic still answers.
    expect(toAssistant((await ring(e, CALLER, CLOSED)).twiml)).toBe(true);
  });

  it('closed clinic: over the limit the caller gets the key menu, never a dead line', async () => {
    const e = await engine();
    expect(toAssistant((await ring(e, CALLER, CLOSED)).twiml)).toBe(true);
    const over = await ring(e, CALLER, CLOSED);
    expect(toAssistant(over.twiml)).toBe(false);
    expect(over.twiml).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?><Response><Say language="en-US">Sorry, our assistant cannot take this call.<\/Say><Gather /);
    expect(over.twiml).toContain(`<Redirect method="POST">${TEST_BASE_URL}/twilio/dtmf?attempt=1</Redirect>`);
    expect(over.twiml).not.toContain('<Hangup');
  });

  it('withheld and missing numbers are never limited (those callers cannot be told apart)', async () => {
    const e = await engine();
    for (const from of ['+266696687', '+266696687', '+266696687', 'anonymous', 'anonymous', 'client:alice']) {
      expect(toAssistant((await ring(e, from)).twiml)).toBe(true);
    }
    const none = await post(e, '/twilio/voice', { CallSid: newSid(), To: OPEN, CallStatus: 'ringing' });
    expect(toAssistant(none.body)).toBe(true);
  });

  it('a call the registry refuses (capacity) gives its hourly slot back', async () => {
    const e = await engine({ MAX_CALLS: '1' });
    const a = await ring(e, OTHER);
    const refused = await ring(e, CALLER);
    expect(toAssistant(refused.twiml)).toBe(false); // capacity: straight to the front desk
    await hangUp(e, a.sid);
    for (let i = 0; i < 2; i++) {
      const call = await ring(e, CALLER);
      expect(toAssistant(call.twiml), `call ${i + 1} of the hour`).toBe(true);
      await hangUp(e, call.sid);
    }
  });

  it('counts refusals per clinic and limit in the metric; logs say which limit, never the number', async () => {
    const e = await engine();
    const live = await ring(e, CALLER);
    await ring(e, CALLER); // concurrent
    await hangUp(e, live.sid);
    await hangUp(e, (await ring(e, CALLER)).sid);
    await ring(e, CALLER); // hourly
    const text = (await e.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toContain('vetline_caller_limited_total{clinic="open-vet",limit="concurrent"} 1');
    expect(text).toContain('vetline_caller_limited_total{clinic="open-vet",limit="hourly"} 1');
    const lines = e.logs.join('').split('\n').filter((l) => l.includes('per-caller limit'));
    expect(lines.map((l) => (JSON.parse(l) as { limit: string }).limit)).toEqual(['concurrent', 'hourly']);
    const all = e.logs.join('');
    expect(all).not.toContain(CALLER);
    expect(all).not.toContain(CALLER.slice(1));
  });
});
