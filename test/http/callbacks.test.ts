import { describe, expect, it } from 'vitest';
import { ACCOUNT, callSid, signed, TOKEN, useTestApps, voiceParams } from './edge-fixtures.js';
import type { FormParams } from '../support/twilio-sign.js';

const start = useTestApps();

const statusParams = (over: FormParams = {}): FormParams => ({
  CallSid: callSid(1), AccountSid: ACCOUNT, CallStatus: 'completed', CallDuration: '42', SequenceNumber: '0',
  Timestamp: 'Tue, 25 Nov 2025 15:00:00 +0000', To: '+15550002222', From: '+15550001111', ...over,
});

describe('POST /twilio/status', () => {
  it('passes the status through and answers 200 empty, repeats included (idempotency is the registry’s)', async () => {
    const { app, registry } = await start();
    await app.inject(signed('/twilio/voice', voiceParams()));
    const a = await app.inject(signed('/twilio/status', statusParams()));
    const b = await app.inject(signed('/twilio/status', statusParams()));
    for (const res of [a, b]) {
      expect(res.statusCode).toBe(200);
      expect(res.body).toBe('');
    }
    expect(registry.statuses).toEqual([
      { callSid: callSid(1), status: 'completed', sequenceNumber: 0 },
      { callSid: callSid(1), status: 'completed', sequenceNumber: 0 },
    ]);
  });

  it('acknowledges an unknown call with 200 and logs it at debug only', async () => {
    const { app, lines } = await start();
    const res = await app.inject(signed('/twilio/status', statusParams({ CallSid: callSid(99), SequenceNumber: 'x' })));
    expect(res.statusCode).toBe(200);
    const line = lines.find((l) => l.includes('VET_E_UNKNOWN_CALL'));
    expect(line).toContain('"level":20');
  });

  it('logs Stream status callbacks without touching the registry, except stream-error', async () => {
    const { app, registry } = await start();
    const stream = { CallSid: callSid(1), AccountSid: ACCOUNT, StreamSid: `MZ${'1'.repeat(32)}`, Timestamp: '2025-11-25T15:00:00Z' };
    const started = await app.inject(signed('/twilio/status', { ...stream, StreamEvent: 'stream-started', StreamName: 'x' }));
    expect(started.statusCode).toBe(200);
    expect(registry.statuses).toHaveLength(0);
    const failed = await app.inject(signed('/twilio/status', { ...stream, StreamEvent: 'stream-error', StreamError: 'Stream - WebSocket - Handshake Error' }));
    expect(failed.statusCode).toBe(200);
    expect(registry.statuses).toEqual([{ callSid: callSid(1), status: 'stream-error', sequenceNumber: null }]);
  });

  it('still validates the signature', async () => {
    const { app, registry } = await start();
    const res = await app.inject({ ...signed('/twilio/status', statusParams()), headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': 'A'.repeat(27) + '=' } });
    expect(res.statusCode).toBe(403);
    expect(registry.statuses).toHaveLength(0);
  });
});

describe('POST /twilio/recording', () => {
  it('hands the recording to the registry with numbers parsed', async () => {
    const { app, registry } = await start();
    const res = await app.inject(signed('/twilio/recording', {
      CallSid: callSid(1), AccountSid: ACCOUNT, RecordingSid: `RE${'2'.repeat(32)}`, RecordingStatus: 'completed',
      RecordingUrl: 'https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE', RecordingDuration: '31', RecordingChannels: '2',
    }));
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe('');
    expect(registry.recordings).toEqual([{
      callSid: callSid(1),
      recording: { recordingSid: `RE${'2'.repeat(32)}`, status: 'completed',
        url: 'https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE', durationSeconds: 31, channels: 2 },
    }]);
  });

  it('answers a malformed form with 400', async () => {
    const { app } = await start();
    const res = await app.inject(signed('/twilio/recording', { CallSid: callSid(1), RecordingSid: 'nope', RecordingStatus: 'completed' }));
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ code: 'VET_E_BAD_REQUEST' });
  });
});

describe('GET /twilio/health and /twilio/sessions', () => {
  it('reports status, uptime, calls, version and validation mode, and no secrets', async () => {
    let draining = false;
    const { app } = await start({ draining: () => draining });
    await app.inject(signed('/twilio/voice', voiceParams()));
    const res = await app.inject('/twilio/health');
    expect(res.statusCode).toBe(200);
    const body = res.json<Record<string, unknown>>();
    expect(body).toMatchObject({ status: 'ok', activeCalls: 1, workers: 1, version: '0.1.0-test', webhookValidation: 'on' });
    expect(typeof body.uptimeSeconds).toBe('number');
    expect(body).not.toHaveProperty('warning');
    expect(res.body).not.toContain(TOKEN);
    draining = true;
    expect((await app.inject('/twilio/health')).json()).toMatchObject({ status: 'draining' });
  });

  it('reports the workers alive (WORKERS, src/cluster)', async () => {
    let alive = 3;
    const { app } = await start({ workers: () => alive });
    expect((await app.inject('/twilio/health')).json()).toMatchObject({ workers: 3 });
    alive = 2;
    expect((await app.inject('/twilio/health')).json()).toMatchObject({ workers: 2 });
  });

  it('lists calls without phone numbers', async () => {
    const { app } = await start();
    await app.inject(signed('/twilio/voice', voiceParams()));
    const res = await app.inject('/twilio/sessions');
    expect(res.json()).toEqual({ calls: [{
      callSid: callSid(1), tenantId: 'clinic-a', state: 'listening', startedAt: '2025-01-01T00:00:00.000Z',
      durationMs: 1200, stateDurationMs: 300,
    }] });
    expect(res.body).not.toMatch(/\+1555/);
  });
});
