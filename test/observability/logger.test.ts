import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { callLogger, createLogger, maskPhone, scrubText } from '../../src/observability/logger.js';

const TOKEN = 'canary-token-5f1e2d';
const PHONE = '+15550100123';

/** A logger writing JSON lines into an array. */
function captured(level = 'trace') {
  const lines: string[] = [];
  const log = createLogger({ level, destination: { write: (s: string) => void lines.push(s) } });
  const records = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, lines, records, text: () => lines.join('') };
}

describe('redaction', () => {
  it('never writes secrets or phone numbers at the listed paths', () => {
    const { log, text, records } = captured();
    log.info({ req: { headers: { 'x-twilio-signature': TOKEN, authorization: `Basic ${TOKEN}`, cookie: TOKEN } } }, 'headers');
    log.info({ headers: { 'x-twilio-signature': TOKEN, authorization: TOKEN } }, 'bare headers');
    log.info({ twilio: { authToken: TOKEN }, openai: { apiKey: TOKEN }, inspector: { token: TOKEN } }, 'config parts');
    log.info({ authToken: TOKEN, apiKey: TOKEN, token: TOKEN, streamToken: TOKEN, callToken: TOKEN }, 'top level');
    log.info({ stream: { streamToken: TOKEN }, params: { callToken: TOKEN } }, 'nested tokens');
    log.info({ start: { callSid: 'CA1', customParameters: { callToken: TOKEN } } }, 'start frame');
    log.info({ body: { From: PHONE, To: PHONE, Caller: PHONE, Called: PHONE, CallSid: 'CA1' } }, 'webhook');
    log.info({ call: { from: PHONE, to: PHONE, caller: PHONE } }, 'numbers');
    log.info({ pii: { from: PHONE, transcript: `my number is ${PHONE}` } }, 'pii');
    log.info({ event: { pii: PHONE, transcript: 'my dog ate chocolate' } }, 'nested pii');
    log.info({ transcript: 'my dog ate chocolate' }, 'transcript');
    const out = text();
    expect(out).not.toContain(TOKEN);
    expect(out).not.toContain(PHONE);
    expect(out).not.toContain('chocolate');
    expect(out).not.toMatch(/\+\d{7,}/);
    expect(records()).toHaveLength(11);
    expect(records()[6]).toMatchObject({ body: { From: '[redacted]', CallSid: 'CA1' } });
  });

  it('keeps top-level from/to, which name machine states', () => {
    const { log, records } = captured();
    log.info({ from: 'listening', to: 'thinking' }, 'state changed');
    expect(records()[0]).toMatchObject({ from: 'listening', to: 'thinking', msg: 'state changed' });
  });

  it('drops query strings and masks numbers inside messages and errors', () => {
    const { log, text, records } = captured();
    log.info(`Route POST:/twilio/voice?token=${TOKEN}&To=${PHONE} not found`);
    log.error({ err: new Error(`failed for ${PHONE} at /x?token=${TOKEN}`) }, 'boom');
    expect(text()).not.toContain(TOKEN);
    expect(text()).not.toContain(PHONE);
    expect(records()[0]?.msg).toBe('Route POST:/twilio/voice not found');
    expect((records()[1]?.err as { message: string }).message).toBe('failed for +•••••••••23 at /x');
  });
});

describe('fastify request logs', () => {
  it('log method and path only: no query, host, address, port or body', async () => {
    const { log, text, records } = captured('info');
    const app = Fastify({ loggerInstance: log });
    app.post('/twilio/voice', () => 'ok');
    await app.ready();
    const form = new URLSearchParams({ From: PHONE, CallSid: 'CA1' }).toString();
    await app.inject({
      method: 'POST',
      url: `/twilio/voice?tenant=b&token=${TOKEN}`,
      payload: form,
      headers: { 'content-type': 'text/plain', 'x-twilio-signature': TOKEN, host: 'evil.example' },
    });
    await app.inject({ method: 'GET', url: `/nope?token=${TOKEN}` });
    await app.close();

    const reqs = records().flatMap((r) => (r.req ? [r.req as Record<string, unknown>] : []));
    expect(reqs.length).toBeGreaterThanOrEqual(2);
    expect(reqs[0]).toEqual({ method: 'POST', url: '/twilio/voice', route: '/twilio/voice' });
    for (const req of reqs) expect(Object.keys(req).sort()).toEqual(expect.arrayContaining(['method', 'url']));
    for (const req of reqs) for (const key of ['remoteAddress', 'remotePort', 'host', 'headers', 'body']) expect(req).not.toHaveProperty(key);
    const out = text();
    expect(out).not.toContain(TOKEN);
    expect(out).not.toContain(PHONE);
    expect(out).not.toContain('evil.example');
    expect(out).not.toContain('tenant=b');
    expect(out).toContain('request completed');
  });
});

describe('callLogger', () => {
  it('binds the call ids and nothing else', () => {
    const { log, records } = captured();
    const payload = { callSid: 'CA1', streamSid: null, tenantId: 'riverside-vet', from: PHONE, From: PHONE, callToken: TOKEN };
    callLogger(log, payload).info({ from: 'greeting', to: 'listening' }, 'state changed');
    expect(records()[0]).toMatchObject({ callSid: 'CA1', streamSid: null, tenantId: 'riverside-vet', from: 'greeting' });
    expect(JSON.stringify(records())).not.toContain(PHONE);
    expect(JSON.stringify(records())).not.toContain(TOKEN);
  });
});

describe('maskPhone', () => {
  it('keeps the last two digits and the length', () => {
    expect(maskPhone(PHONE)).toBe('+•••••••••23');
    expect(maskPhone('+447700900123')).toBe('+••••••••••23');
  });

  it('hides anything that is not an E.164 number', () => {
    for (const v of ['anonymous', 'client:alice', 'sip:bob@example.com', '', '5550100123']) expect(maskPhone(v)).toBe('[hidden]');
  });

  it('scrubText masks every number in free text', () => {
    expect(scrubText(`call ${PHONE} or +15550100199.`)).toBe('call +•••••••••23 or +•••••••••99.');
  });
});
