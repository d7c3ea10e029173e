import { describe, expect, it } from 'vitest';
import type { InjectOptions } from 'fastify';
import { SERVER_TIMEOUTS } from '../../src/http/edge.js';
import { formBody } from '../support/twilio-sign.js';
import { ACCOUNT, callSid, signed, useTestApps, voiceParams } from './edge-fixtures.js';

const start = useTestApps();

const status = (n: number, remoteAddress: string): InjectOptions =>
  signed('/twilio/status', { CallSid: callSid(n), AccountSid: ACCOUNT, CallStatus: 'completed', SequenceNumber: String(n) }, { remoteAddress });
const forged = (remoteAddress: string): InjectOptions => ({
  ...status(1, remoteAddress),
  headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': `${'B'.repeat(27)}=` },
});

describe('failed-signature rate limiting', () => {
  it('403 for the first failures, then 429, then a 403 ban; other addresses unaffected', async () => {
    const { app, lines } = await start({ rateLimit: { maxFailuresPerMinute: 3, banMinutes: 15 } });
    const ip = '203.0.113.7';
    const answers = [];
    for (let i = 0; i < 8; i++) answers.push(await app.inject(forged(ip)));
    expect(answers.slice(0, 3).map((r) => [r.statusCode, r.body])).toEqual(Array(3).fill([403, '']));
    for (const r of answers.slice(3, 6)) {
      expect(r.statusCode).toBe(429);
      expect(r.json()).toEqual({ code: 'VET_E_RATE_LIMITED' });
      expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    }
    for (const r of answers.slice(6)) {
      expect(r.statusCode).toBe(403);
      expect(r.json()).toEqual({ code: 'VET_E_RATE_LIMITED' });
      expect(r.headers['retry-after']).toBe(String(15 * 60));
    }
    expect(lines.filter((l) => l.includes('address banned'))).toHaveLength(1);
    const other = await app.inject(forged('198.51.100.9'));
    expect([other.statusCode, other.body]).toEqual([403, '']);
  });

  it('never throttles valid traffic: 300 signed webhooks from a banned address all pass', async () => {
    const { app, registry } = await start({ rateLimit: { maxFailuresPerMinute: 2, banMinutes: 15 } });
    const ip = '203.0.113.8';
    for (let i = 0; i < 10; i++) await app.inject(forged(ip));
    expect((await app.inject(forged(ip))).json()).toEqual({ code: 'VET_E_RATE_LIMITED' }); // banned
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => app.inject(status(i + 1, ip))));
    expect(results.filter((r) => r.statusCode !== 200)).toHaveLength(0);
    expect(registry.statuses).toHaveLength(300);
    const call = await app.inject(signed('/twilio/voice', voiceParams(), { remoteAddress: ip }));
    expect(call.body).toContain('<Stream');
  });

  it('does not limit health or sessions', async () => {
    const { app } = await start({ rateLimit: { maxFailuresPerMinute: 1, banMinutes: 1 } });
    for (let i = 0; i < 5; i++) await app.inject(forged('127.0.0.1'));
    const res = await Promise.all(Array.from({ length: 100 }, (_, i) => app.inject(i % 2 ? '/twilio/health' : '/twilio/sessions')));
    expect(res.every((r) => r.statusCode === 200)).toBe(true);
  });
});

describe('request hygiene', () => {
  it.each([
    ['application/json', JSON.stringify(voiceParams())],
    ['text/plain', formBody(voiceParams())],
    ['multipart/form-data; boundary=x', '--x--'],
  ])('%s on a webhook → 415 before the body is read', async (type, payload) => {
    const { app, registry } = await start();
    const res = await app.inject({ method: 'POST', url: '/twilio/voice', payload, headers: { 'content-type': type, 'x-twilio-signature': 'x' } });
    expect(res.statusCode).toBe(415);
    expect(res.json()).toEqual({ code: 'VET_E_BAD_REQUEST' });
    expect(registry.opened).toHaveLength(0);
  });

  it('accepts a form content type with a charset', async () => {
    const { app } = await start();
    const req = signed('/twilio/voice', voiceParams());
    const res = await app.inject({ ...req, headers: { ...req.headers, 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8' } });
    expect(res.statusCode).toBe(200);
  });

  it('refuses a body over 16 KiB with 413', async () => {
    const { app } = await start();
    const res = await app.inject(signed('/twilio/voice', voiceParams({ Padding: 'x'.repeat(17 * 1024) })));
    expect(res.statusCode).toBe(413);
    expect(res.json()).toEqual({ code: 'VET_E_BODY_TOO_LARGE' });
  });

  it('answers an unexpected error with 500 { code } only: no message, no stack', async () => {
    const { app, registry, lines } = await start();
    registry.throwOnList = true;
    const res = await app.inject('/twilio/sessions');
    expect(res.statusCode).toBe(500);
    expect(res.body).toBe('{"code":"VET_E_INTERNAL"}');
    expect(lines.some((l) => l.includes('"level":50') && l.includes('VET_E_INTERNAL'))).toBe(true);
  });

  it('answers unknown routes with 404 { code }', async () => {
    const { app } = await start();
    const res = await app.inject({ method: 'POST', url: '/twilio/nope?x=1' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ code: 'VET_E_NOT_FOUND' });
  });

  it('logs paths without query strings and does not log health probes', async () => {
    const { app, lines } = await start();
    await app.inject(signed('/twilio/dtmf?attempt=2&secret=s3cr3t', { CallSid: callSid(3), AccountSid: ACCOUNT, To: '+15550002222' }));
    await app.inject('/twilio/nope?token=abc');
    await app.inject('/twilio/health?probe=1');
    expect(lines.some((l) => l.includes('"path":"/twilio/dtmf"') && l.includes('request completed'))).toBe(true);
    expect(lines.filter((l) => /s3cr3t|token=abc|\?attempt|probe=1/.test(l))).toEqual([]);
    expect(lines.filter((l) => l.includes('/twilio/health'))).toEqual([]);
  });

  it('builds the server with the F6 timeouts and never listens', async () => {
    const { app } = await start();
    const server = app.server as typeof app.server & { connectionsCheckingInterval?: number };
    expect(server.listening).toBe(false);
    expect(server.requestTimeout).toBe(SERVER_TIMEOUTS.requestTimeoutMs);
    expect(server.headersTimeout).toBe(SERVER_TIMEOUTS.headersTimeoutMs);
    expect(server.timeout).toBe(SERVER_TIMEOUTS.connectionTimeoutMs);
    expect(server.connectionsCheckingInterval).toBe(SERVER_TIMEOUTS.connectionsCheckingIntervalMs);
    expect(app.initialConfig.bodyLimit).toBe(16 * 1024);
  });
});
