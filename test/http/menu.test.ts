import { describe, expect, it } from 'vitest';
import { ACCOUNT, attr, callSid, CLINIC_A_NUMBER, CLINIC_B_NUMBER, clinicA, clinicB, FRONT_DESK_A, signed, tagSequence, useTestApps } from './edge-fixtures.js';
import { menuPrompt } from '../../src/twilio/twiml.js';
import type { FormParams } from '../support/twilio-sign.js';

const start = useTestApps();

const gatherParams = (over: FormParams = {}): FormParams => ({
  CallSid: callSid(7), AccountSid: ACCOUNT, To: CLINIC_A_NUMBER, From: '+15550001111', ...over,
});
const says = (xml: string) => [...xml.matchAll(/<Say[^>]*>([^<]*)<\/Say>/g)].map((m) => m[1]);

describe('fallback menu prompt', () => {
  it('is built from the tenant menu labels, emergency first, keypad order', () => {
    expect(menuPrompt(clinicA)).toBe(
      'If this is an emergency, press 9. For appointments, press 1. For the front desk, press 0. To hear these options again, press star.',
    );
    expect(menuPrompt(clinicB)).toBe('If this is an emergency, press 9. For the emergency line, press 2. To end this call, press 8.');
  });
});

describe('POST /twilio/dtmf', () => {
  it('shows the menu as attempt 1 when entered without digits or attempt', async () => {
    const { app } = await start();
    const res = await app.inject(signed('/twilio/dtmf', gatherParams()));
    expect(res.statusCode).toBe(200);
    expect(attr(res.body, 'Gather', 'action')).toBe('https://voice.test/twilio/dtmf?attempt=1');
    expect(res.body).toContain('<Redirect method="POST">https://voice.test/twilio/dtmf?attempt=1</Redirect>');
  });

  it('counts failed prompts (no key, unknown key) and dials the front desk after the third', async () => {
    const { app } = await start();
    const two = await app.inject(signed('/twilio/dtmf?attempt=1', gatherParams()));
    expect(attr(two.body, 'Gather', 'action')).toBe('https://voice.test/twilio/dtmf?attempt=2');
    const three = await app.inject(signed('/twilio/dtmf?attempt=2', gatherParams({ Digits: '7' })));
    expect(attr(three.body, 'Gather', 'action')).toBe('https://voice.test/twilio/dtmf?attempt=3');
    const last = await app.inject(signed('/twilio/dtmf?attempt=3', gatherParams()));
    expect(tagSequence(last.body)).not.toContain('Gather');
    expect(says(last.body)[0]).toMatch(/connect you to the front desk/);
    expect(last.body).toContain(`<Number>${FRONT_DESK_A}</Number>`);
    expect(attr(last.body, 'Dial', 'action')).toBe('https://voice.test/twilio/dial?last=1');
  });

  it('the attempt query is signed like the rest of the URL', async () => {
    const { app } = await start();
    const forged = await app.inject({ ...signed('/twilio/dtmf?attempt=1', gatherParams()), url: '/twilio/dtmf?attempt=3' });
    expect(forged.statusCode).toBe(403);
  });

  it('transfer → <Say> then <Dial> the front desk with an absolute action', async () => {
    const { app } = await start();
    const res = await app.inject(signed('/twilio/dtmf?attempt=1', gatherParams({ Digits: '0' })));
    expect(says(res.body)).toEqual(['Connecting you to the front desk. Please hold.']);
    expect(res.body).toContain(`<Number>${FRONT_DESK_A}</Number>`);
    expect(attr(res.body, 'Dial', 'action')).toBe('https://voice.test/twilio/dial');
    expect(attr(res.body, 'Dial', 'callerId')).toBe(CLINIC_A_NUMBER);
    expect(attr(res.body, 'Dial', 'timeout')).toBe('20');
  });

  it('agent intent → front desk (no receptionist without the stream)', async () => {
    const { app } = await start();
    const res = await app.inject(signed('/twilio/dtmf?attempt=1', gatherParams({ Digits: '1' })));
    expect(res.body).toContain(`<Number>${FRONT_DESK_A}</Number>`);
  });

  it('emergency without an emergency line → the script twice, then hang up', async () => {
    const { app } = await start();
    const res = await app.inject(signed('/twilio/dtmf?attempt=1', gatherParams({ Digits: '9' })));
    expect(says(res.body)).toEqual([clinicA.emergency.script, clinicA.emergency.script]);
    expect(tagSequence(res.body)).toContain('Hangup');
    expect(tagSequence(res.body)).not.toContain('Dial');
  });

  it('emergency with an emergency line → the script, then <Dial> the emergency number', async () => {
    const { app } = await start();
    const res = await app.inject(signed('/twilio/dtmf', gatherParams({ To: CLINIC_B_NUMBER, AccountSid: clinicB.accountSid ?? '', Digits: '9' })));
    expect(says(res.body)).toEqual([clinicB.emergency.script]);
    expect(res.body).toContain('<Number>+15550007777</Number>');
    expect(attr(res.body, 'Dial', 'timeout')).toBe('25');
    const viaMenu = await app.inject(signed('/twilio/dtmf', gatherParams({ To: CLINIC_B_NUMBER, AccountSid: clinicB.accountSid ?? '', Digits: '2' })));
    expect(viaMenu.body).toContain('<Number>+15550007777</Number>');
  });

  it('repeat → the menu again; hangup → goodbye', async () => {
    const { app } = await start();
    const repeat = await app.inject(signed('/twilio/dtmf?attempt=2', gatherParams({ Digits: '*' })));
    expect(attr(repeat.body, 'Gather', 'action')).toBe('https://voice.test/twilio/dtmf?attempt=1');
    const bye = await app.inject(signed('/twilio/dtmf', gatherParams({ To: CLINIC_B_NUMBER, AccountSid: clinicB.accountSid ?? '', Digits: '8' })));
    expect(says(bye.body)[0]).toMatch(/Goodbye/);
    expect(tagSequence(bye.body)).toEqual(['Response', 'Say', '/Say', 'Hangup', '/Hangup', '/Response']);
  });

  it('picks the tenant from the signed To only', async () => {
    const { app } = await start();
    const res = await app.inject(signed('/twilio/dtmf?tenant=clinic-b', gatherParams({ Digits: '0' }), { headers: { 'x-tenant-id': 'clinic-b' } }));
    expect(res.body).toContain(`<Number>${FRONT_DESK_A}</Number>`);
  });
});

describe('POST /twilio/dial', () => {
  it('completed → <Hangup/> and the registry hears the result', async () => {
    const { app, registry } = await start();
    const res = await app.inject(signed('/twilio/dial', gatherParams({ DialCallStatus: 'completed' })));
    expect(tagSequence(res.body)).toEqual(['Response', 'Hangup', '/Hangup', '/Response']);
    expect(registry.dials).toEqual([{ callSid: callSid(7), dialStatus: 'completed' }]);
  });

  it.each(['busy', 'no-answer', 'failed'])('%s → apology and the menu, never silence', async (status) => {
    const { app } = await start();
    const res = await app.inject(signed('/twilio/dial', gatherParams({ DialCallStatus: status })));
    expect(says(res.body)[0]).toMatch(/^Sorry/);
    expect(attr(res.body, 'Gather', 'action')).toBe('https://voice.test/twilio/dtmf?attempt=1');
    expect(tagSequence(res.body)).toContain('Redirect');
  });

  it('after the last-resort dial fails → apology and goodbye, no endless loop', async () => {
    const { app } = await start();
    const res = await app.inject(signed('/twilio/dial?last=1', gatherParams({ DialCallStatus: 'no-answer' })));
    expect(says(res.body)[0]).toMatch(/^Sorry.*Goodbye\.$/);
    expect(tagSequence(res.body)).not.toContain('Gather');
    expect(tagSequence(res.body)).toContain('Hangup');
  });
});
