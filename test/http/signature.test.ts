import Fastify from 'fastify';
import twilio from 'twilio';
import { describe, expect, it } from 'vitest';
import { upgradeSignatureHook, verifyUpgrade, verifyWebhook } from '../../src/twilio/signature.js';
import type { SignatureConfig } from '../../src/twilio/signature.js';
import { wsSignature } from '../support/twilio-sign.js';
import { BASE, TOKEN } from './edge-fixtures.js';

const on: SignatureConfig = { publicBaseUrl: BASE, authToken: TOKEN, validation: 'on' };

describe('twilio.md §2.1 known vector', () => {
  const params = { CallSid: 'CA1234567890ABCDE', Caller: '+14158675310', Digits: '1234', From: '+14158675310', To: '+18005551212' };
  const expected = 'L/OH5YylLD5NRKLltdqwSvS0BnU=';

  it('matches the documented signature', () => {
    expect(twilio.getExpectedTwilioSignature('12345', 'https://example.com/myapp.php?foo=1&bar=2', params)).toBe(expected);
  });

  it('validates through verifyWebhook with PUBLIC_BASE_URL + raw path', () => {
    const cfg: SignatureConfig = { publicBaseUrl: 'https://example.com', authToken: '12345', validation: 'on' };
    expect(verifyWebhook(cfg, { rawUrl: '/myapp.php?foo=1&bar=2', header: expected, params }))
      .toEqual({ ok: true, mode: 'validated', variant: 'exact' });
    expect(verifyWebhook(cfg, { rawUrl: '/myapp.php?foo=1&bar=2', header: expected, params: { ...params, Digits: '1235' } }))
      .toEqual({ ok: false, reason: 'mismatch' });
    expect(verifyWebhook({ ...cfg, authToken: '54321' }, { rawUrl: '/myapp.php?foo=1&bar=2', header: expected, params }))
      .toEqual({ ok: false, reason: 'mismatch' });
  });
});

describe('verifyWebhook reasons', () => {
  const req = { rawUrl: '/twilio/voice', params: {} };
  it('names missing, malformed and bad-url', () => {
    expect(verifyWebhook(on, { ...req, header: undefined })).toEqual({ ok: false, reason: 'missing' });
    expect(verifyWebhook(on, { ...req, header: '' })).toEqual({ ok: false, reason: 'missing' });
    expect(verifyWebhook(on, { ...req, header: 'not-a-signature' })).toEqual({ ok: false, reason: 'malformed' });
    expect(verifyWebhook(on, { ...req, header: ['a', 'b'] })).toEqual({ ok: false, reason: 'malformed' });
    const sig = twilio.getExpectedTwilioSignature(TOKEN, `${BASE}/twilio/voice`, {});
    expect(verifyWebhook(on, { ...req, rawUrl: 'https://evil.example/twilio/voice', header: sig })).toEqual({ ok: false, reason: 'bad-url' });
  });

  it('refuses rather than bypasses when validation is on without a token', () => {
    expect(verifyWebhook({ ...on, authToken: null }, { ...req, header: 'x' })).toEqual({ ok: false, reason: 'no-token' });
  });

  it('bypasses only in off-development mode', () => {
    expect(verifyWebhook({ ...on, authToken: null, validation: 'off-development' }, { ...req, header: undefined }))
      .toEqual({ ok: true, mode: 'bypassed' });
  });
});

describe('verifyUpgrade (WebSocket handshake)', () => {
  it('accepts the wss:// signature with empty params', () => {
    const header = wsSignature(BASE, TOKEN, '/twilio/ws');
    expect(verifyUpgrade(on, { rawUrl: '/twilio/ws', header })).toEqual({ ok: true, mode: 'validated', variant: 'exact' });
  });

  it('accepts a signature over the URL with a trailing slash and says so', () => {
    const header = wsSignature(BASE, TOKEN, '/twilio/ws/');
    expect(verifyUpgrade(on, { rawUrl: '/twilio/ws', header })).toEqual({ ok: true, mode: 'validated', variant: 'trailing-slash' });
  });

  it('rejects an https:// signature, a missing one and a query string', () => {
    const https = twilio.getExpectedTwilioSignature(TOKEN, `${BASE}/twilio/ws`, {});
    expect(verifyUpgrade(on, { rawUrl: '/twilio/ws', header: https })).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifyUpgrade(on, { rawUrl: '/twilio/ws', header: undefined })).toEqual({ ok: false, reason: 'missing' });
    const header = wsSignature(BASE, TOKEN, '/twilio/ws?x=1');
    expect(verifyUpgrade(on, { rawUrl: '/twilio/ws?x=1', header })).toEqual({ ok: false, reason: 'query-on-upgrade' });
  });
});

describe('upgradeSignatureHook', () => {
  const app = Fastify();
  app.get('/twilio/ws', { preValidation: upgradeSignatureHook(on) }, (_req, reply) => reply.send('upgraded'));

  it('lets a wss-signed handshake through and refuses an https-signed one with an empty 403', async () => {
    const ok = await app.inject({ url: '/twilio/ws', headers: { 'x-twilio-signature': wsSignature(BASE, TOKEN, '/twilio/ws') } });
    expect(ok.statusCode).toBe(200);
    const https = twilio.getExpectedTwilioSignature(TOKEN, `${BASE}/twilio/ws`, {});
    const bad = await app.inject({ url: '/twilio/ws', headers: { 'x-twilio-signature': https } });
    expect(bad.statusCode).toBe(403);
    expect(bad.body).toBe('');
    const forged = await app.inject({
      url: '/twilio/ws',
      headers: { host: 'evil.example', 'x-forwarded-host': 'evil.example', 'x-twilio-signature': wsSignature('https://evil.example', TOKEN, '/twilio/ws') },
    });
    expect(forged.statusCode).toBe(403);
    const query = await app.inject({ url: '/twilio/ws?tenant=b', headers: { 'x-twilio-signature': wsSignature(BASE, TOKEN, '/twilio/ws') } });
    expect(query.statusCode).toBe(400);
    await app.close();
  });
});
