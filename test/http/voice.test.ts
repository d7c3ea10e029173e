import { describe, expect, it } from 'vitest';
import { buildApp } from '../../src/http/app.js';
import { formBody, signedForm } from '../support/twilio-sign.js';
import { ACCOUNT, attr, BASE, callSid, CLINIC_A_NUMBER, FRONT_DESK_A, signed, tagSequence, testDeps, TOKEN, useTestApps, voiceParams } from './edge-fixtures.js';

const start = useTestApps();

describe('POST /twilio/voice', () => {
  it('answers a signed call with <Connect><Stream> and the fallback menu after </Connect>', async () => {
    const { app, registry } = await start();
    const res = await app.inject(signed('/twilio/voice', voiceParams()));
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/xml/);
    // The stream token is the Stream URL's last path segment (Twilio forbids a query string there).
    expect(attr(res.body, 'Stream', 'url')).toBe('wss://voice.test/twilio/ws/tok-1');
    expect(attr(res.body, 'Stream', 'statusCallback')).toBe('https://voice.test/twilio/status');
    expect(res.body).not.toContain('callToken');
    expect(res.body).toContain('<Parameter name="tenantId" value="clinic-a"/>');
    expect(attr(res.body, 'Gather', 'action')).toBe('https://voice.test/twilio/dtmf?attempt=1');
    expect(attr(res.body, 'Gather', 'input')).toBe('dtmf');
    expect(attr(res.body, 'Gather', 'numDigits')).toBe('1');
    expect(attr(res.body, 'Gather', 'timeout')).toBe('6');
    expect(res.body).toContain('<Redirect method="POST">https://voice.test/twilio/dtmf?attempt=1</Redirect>');

    const tags = tagSequence(res.body);
    expect(tags.slice(0, 3)).toEqual(['Response', 'Connect', 'Stream']);
    const at = (t: string) => tags.indexOf(t);
    expect(at('/Connect')).toBeGreaterThan(at('Parameter'));
    expect(at('Gather')).toBeGreaterThan(at('/Connect'));
    expect(at('Redirect')).toBeGreaterThan(at('/Gather'));
    expect(tags).not.toContain('Start'); // never the receive-only <Start><Stream>
    expect(registry.opened).toEqual([{ callSid: callSid(1), tenantId: 'clinic-a' }]);
  });

  it.each([
    ['unsigned', () => ({ ...signed('/twilio/voice', voiceParams()), headers: { 'content-type': 'application/x-www-form-urlencoded' } })],
    ['tampered parameter', () => signedForm({ baseUrl: BASE, token: TOKEN, path: '/twilio/voice', params: voiceParams({ From: '+15550004444' }), signParams: voiceParams() })],
    ['extra parameter', () => signedForm({ baseUrl: BASE, token: TOKEN, path: '/twilio/voice', params: voiceParams({ Extra: '1' }), signParams: voiceParams() })],
    ['wrong token', () => signedForm({ baseUrl: BASE, token: 'another-token', path: '/twilio/voice', params: voiceParams() })],
    ['wrong URL', () => signedForm({ baseUrl: BASE, token: TOKEN, path: '/twilio/voice', params: voiceParams(), signUrl: `${BASE}/twilio/status` })],
    ['trailing slash', () => signedForm({ baseUrl: BASE, token: TOKEN, path: '/twilio/voice', params: voiceParams(), signUrl: `${BASE}/twilio/voice/` })],
    ['http instead of https', () => signedForm({ baseUrl: BASE, token: TOKEN, path: '/twilio/voice', params: voiceParams(), signUrl: 'http://voice.test/twilio/voice' })],
    ['forged X-Forwarded-Host', () => signedForm({
      baseUrl: 'https://evil.example', token: TOKEN, path: '/twilio/voice', params: voiceParams(),
      headers: { host: 'evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' },
    })],
    ['an upgrade (wss) signature', () => signedForm({ baseUrl: BASE, token: TOKEN, path: '/twilio/voice', params: voiceParams(), signUrl: 'wss://voice.test/twilio/voice' })],
  ])('%s → 403 with an empty body, no call opened', async (_name, make) => {
    const { app, registry } = await start();
    const res = await app.inject(make());
    expect(res.statusCode).toBe(403);
    expect(res.body).toBe('');
    expect(registry.opened).toHaveLength(0);
  });

  it('ignores a forged X-Forwarded-Host on a genuine request', async () => {
    const { app } = await start({ trustProxy: ['127.0.0.1'] });
    const res = await app.inject(signed('/twilio/voice', voiceParams(), { headers: { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http' } }));
    expect(res.statusCode).toBe(200);
    expect(attr(res.body, 'Stream', 'url')).toBe('wss://voice.test/twilio/ws/tok-1');
  });

  it('answers a repeated To (array) with 400 VET_E_BAD_REQUEST even when signed', async () => {
    const { app, registry } = await start();
    const res = await app.inject(signed('/twilio/voice', voiceParams({ To: [CLINIC_A_NUMBER, '+15550003333'] })));
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ code: 'VET_E_BAD_REQUEST' });
    expect(registry.opened).toHaveLength(0);
  });

  it('takes the tenant from the signed To only (?tenant= and X-Tenant-Id ignored)', async () => {
    const { app, registry } = await start();
    const res = await app.inject(signed('/twilio/voice?tenant=clinic-b', voiceParams(), { headers: { 'x-tenant-id': 'clinic-b' } }));
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('<Parameter name="tenantId" value="clinic-a"/>');
    expect(registry.opened[0]?.tenantId).toBe('clinic-a');
  });

  it('answers a repeated CallSid with the same token and opens no second call', async () => {
    const { app, registry } = await start();
    const first = await app.inject(signed('/twilio/voice', voiceParams()));
    const second = await app.inject(signed('/twilio/voice', voiceParams()));
    expect(second.body).toBe(first.body);
    expect(registry.opened).toHaveLength(1);
  });

  it('hangs up on a webhook for a call whose stream is already connected', async () => {
    const { app, registry } = await start();
    registry.connected.add(callSid(1));
    const res = await app.inject(signed('/twilio/voice', voiceParams()));
    expect(tagSequence(res.body)).toEqual(['Response', 'Hangup', '/Hangup', '/Response']);
  });

  it('dials the front desk when the registry refuses (draining or capacity), never 5xx', async () => {
    const { app, registry } = await start();
    registry.refuse = 'capacity';
    const res = await app.inject(signed('/twilio/voice', voiceParams()));
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain(`<Number>${FRONT_DESK_A}</Number>`);
    expect(attr(res.body, 'Dial', 'action')).toBe('https://voice.test/twilio/dial');
    expect(attr(res.body, 'Dial', 'callerId')).toBe(CLINIC_A_NUMBER);
    expect(res.body).not.toContain('<Stream');
  });

  it('dials the front desk when the registry throws', async () => {
    const { app, registry } = await start();
    registry.throwOnOpen = true;
    const res = await app.inject(signed('/twilio/voice', voiceParams()));
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain(`<Number>${FRONT_DESK_A}</Number>`);
  });

  it('answers an unknown To with neutral not-in-service TwiML (200), no call', async () => {
    const { app, registry } = await start();
    const res = await app.inject(signed('/twilio/voice', voiceParams({ To: '+15550006666' })));
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('not in service');
    expect(tagSequence(res.body)).toContain('Hangup');
    expect(registry.opened).toHaveLength(0);
  });

  it('refuses a foreign AccountSid (configured account, then the clinic account)', async () => {
    const { app } = await start({ accountSid: `AC${'c'.repeat(32)}` });
    const res = await app.inject(signed('/twilio/voice', voiceParams()));
    expect(res.statusCode).toBe(403);
    expect(res.json()).toEqual({ code: 'VET_E_ACCOUNT_MISMATCH' });
    await app.close();
    const t = await start({ accountSid: ACCOUNT });
    const b = await t.app.inject(signed('/twilio/voice', voiceParams({ To: '+15550003333' }))); // clinic-b names AC…bbb
    expect(b.statusCode).toBe(403);
    expect(t.registry.opened).toHaveLength(0);
  });
});

describe('development bypass', () => {
  it('serves unsigned webhooks without a token and says so on /twilio/health', async () => {
    const { app } = await start({ authToken: null, validation: 'off-development' });
    const res = await app.inject({
      method: 'POST', url: '/twilio/voice', payload: formBody(voiceParams()),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('<Stream');
    const health = (await app.inject('/twilio/health')).json<Record<string, unknown>>();
    expect(health.webhookValidation).toBe('off-development');
    expect(String(health.warning)).toMatch(/NOT validated/);
  });

  it('logs the bypass loudly at start-up', async () => {
    const { lines } = await start({ authToken: null, validation: 'off-development' });
    expect(lines.some((l) => l.includes('"level":40') && l.includes('NOT VALIDATED'))).toBe(true);
  });
});

describe('buildApp refuses unsafe wiring', () => {
  it.each([
    ['validation on without a token', { authToken: null }],
    ['trustProxy true', { trustProxy: true as unknown as string[] }],
    ['trustProxy hop count', { trustProxy: 1 as unknown as string[] }],
    ['a path on PUBLIC_BASE_URL', { publicBaseUrl: 'https://voice.test/base' }],
    ['plain http with validation on', { publicBaseUrl: 'http://voice.test' }],
  ])('%s → VET_E_CONFIG', async (_name, over) => {
    await expect(buildApp(testDeps(over))).rejects.toMatchObject({ code: 'VET_E_CONFIG' });
  });
});
