/**
 * Development conveniences (unsigned webhooks, the open inspector, /twilio/sessions, /metrics, the
 * softphone) are an explicit opt-in (VETLINE_DEV=1), or, with NODE_ENV unset, served only to requests
 * that provably come from this machine: loopback HOST and PUBLIC_BASE_URL, a loopback Host header
 * (DNS rebinding), no forwarding header, no other site's Origin, not HTTP/1.0 (nginx's default
 * proxy_pass). Anything else gets production's rules. docs/configuration.md "Modes".
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { formBody, signedForm } from '../support/twilio-sign.js';

const RIVERSIDE = '+15550100100'; // config/tenants/riverside-vet.json
const callSid = (n: number) => `CA${n.toString(16).padStart(32, '0')}`;
const STRONG = '3f9c2a7e5b1d4c8f0a6e2b9d7c5a3e1f';

const start = (env: Record<string, string>, dev = false) =>
  startEngine({
    providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts(), agent: createFakeAgent() },
    prompts: { get: () => new Uint8Array(1600) },
    dev,
    env,
  });

/** `npm start` with an empty environment: NODE_ENV unset, no keys, loopback HOST and PUBLIC_BASE_URL. */
const NPM_START = { NODE_ENV: '', PUBLIC_BASE_URL: '', TWILIO_AUTH_TOKEN: '', TWILIO_ACCOUNT_SID: '' };

const unsignedVoice = (headers: Record<string, string> = {}, n = 1) => ({
  method: 'POST' as const,
  url: '/twilio/voice',
  payload: formBody({ CallSid: callSid(n), AccountSid: TEST_ACCOUNT, To: RIVERSIDE, From: 'browser' }),
  headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
});

/** One raw HTTP request on a fresh socket; the status code of the answer. */
function rawStatus(url: string, request: string): Promise<number> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(request));
    let data = '';
    socket.on('data', (d: Buffer) => {
      data += d.toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      if (m) {
        resolve(Number(m[1]));
        socket.destroy();
      }
    });
    socket.on('error', reject);
  });
}

describe('NODE_ENV unset on loopback (npm start): development conveniences for this machine only', () => {
  let e: TestEngine;
  beforeAll(async () => {
    e = await start(NPM_START);
  });
  afterAll(() => e?.close());

  it('says at start-up which mode it is in and why', () => {
    const line = e.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.mode !== undefined && typeof l.reason === 'string');
    expect(line).toMatchObject({ mode: 'local' });
    expect(String(line?.reason)).toMatch(/NODE_ENV is unset.*127\.0\.0\.1.*loopback/);
  });

  it('serves a browser on this machine: inspector, call list, metrics, unsigned calls', async () => {
    const local = { host: '127.0.0.1:3000' };
    for (const url of ['/inspector/api/calls', '/twilio/sessions', '/metrics']) {
      expect([url, (await e.app.inject({ url, headers: local })).statusCode]).toEqual([url, 200]);
    }
    const voice = await e.app.inject(unsignedVoice({ ...local, origin: 'http://127.0.0.1:3000' }));
    expect(voice.statusCode).toBe(200);
    expect(voice.body).toContain('<Stream');
    expect((await e.app.inject({ url: '/inspector', headers: { host: 'localhost:3000' } })).statusCode).toBe(200);
  });

  it('refuses the same requests when they came through a proxy, a rebound DNS name or another site', async () => {
    const refused: Record<string, string>[] = [
      { host: '127.0.0.1:3000', 'x-forwarded-for': '203.0.113.9' },
      { host: '127.0.0.1:3000', forwarded: 'for=203.0.113.9' },
      { host: '127.0.0.1:3000', 'x-real-ip': '203.0.113.9' },
      { host: 'vetline.example.com' }, // a reverse proxy passing the public Host
      { host: 'rebind.attacker.example:3000' }, // DNS rebinding: the name now resolves to 127.0.0.1
    ];
    for (const headers of refused) {
      for (const url of ['/inspector/api/calls', '/twilio/sessions', '/metrics']) {
        const res = await e.app.inject({ url, headers });
        expect([url, headers, res.statusCode]).toEqual([url, headers, 403]);
        expect(res.json()).toMatchObject({ code: 'VET_E_LOCAL_ONLY' });
      }
      expect([headers, (await e.app.inject(unsignedVoice(headers, 2))).statusCode]).toEqual([headers, 403]);
    }
    // Another site's page posting a fake call from the operator's browser.
    expect((await e.app.inject(unsignedVoice({ host: '127.0.0.1:3000', origin: 'https://attacker.example' }, 3))).statusCode).toBe(403);
    expect(e.registry.activeCount).toBe(1); // only the local call of the test above
  });

  it("refuses HTTP/1.0, which nginx's default proxy_pass speaks with Host rewritten to the upstream", async () => {
    expect(await rawStatus(e.url, 'GET /twilio/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')).toBe(200);
    expect(await rawStatus(e.url, 'GET /twilio/sessions HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n')).toBe(403);
  });
});

describe('not production, but reachable beyond loopback and no VETLINE_DEV: production rules', () => {
  let e: TestEngine;
  beforeAll(async () => {
    // The harness's own defaults: NODE_ENV=test, PUBLIC_BASE_URL=https://voice.test, a Twilio token.
    e = await start({});
  });
  afterAll(() => e?.close());

  it('lists no calls, serves no metrics and no inspector without a token', async () => {
    expect((await e.app.inject('/twilio/sessions')).statusCode).toBe(401);
    expect((await e.app.inject('/metrics')).statusCode).toBe(401);
    expect((await e.app.inject('/inspector/api/calls')).statusCode).toBe(404);
    const line = e.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.mode !== undefined && typeof l.reason === 'string');
    expect(line).toMatchObject({ mode: 'protected' });
    expect(String(line?.reason)).toContain('https://voice.test');
  });

  it('still takes signed calls', async () => {
    const res = await e.app.inject(signedForm({ baseUrl: TEST_BASE_URL, token: TEST_TOKEN, path: '/twilio/voice', params: { CallSid: callSid(9), AccountSid: TEST_ACCOUNT, To: RIVERSIDE, From: '+15557654321' } }));
    expect(res.statusCode).toBe(200);
  });
});

describe('VETLINE_DEV=1: the explicit opt-in', () => {
  let e: TestEngine;
  beforeAll(async () => {
    e = await start({ VETLINE_DEV: '1', NODE_ENV: '', TWILIO_AUTH_TOKEN: '', TWILIO_ACCOUNT_SID: '' });
  });
  afterAll(() => e?.close());

  it('is open through proxies and tunnels, for this server\'s own names only (DNS rebinding)', async () => {
    for (const headers of [{ host: 'voice.test', 'x-forwarded-for': '203.0.113.9' }, { host: '192.168.1.20:3000' }, { host: 'localhost:3000' }]) {
      expect([headers, (await e.app.inject({ url: '/twilio/sessions', headers })).statusCode]).toEqual([headers, 200]);
    }
    for (const headers of [{ host: 'rebind.attacker.example' }, { host: 'voice.test', origin: 'https://attacker.example' }]) {
      expect([headers, (await e.app.inject({ url: '/inspector/api/calls', headers })).statusCode]).toEqual([headers, 403]);
      expect([headers, (await e.app.inject(unsignedVoice(headers, 4))).statusCode]).toEqual([headers, 403]);
    }
    const line = e.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.mode !== undefined && typeof l.reason === 'string');
    expect(line).toMatchObject({ mode: 'development', reason: expect.stringContaining('VETLINE_DEV=1') as unknown });
  });
});

describe('/metrics tokens', () => {
  it('in production: 401 without a token; METRICS_TOKEN or INSPECTOR_TOKEN as a bearer', async () => {
    const none = await start({ NODE_ENV: 'production' });
    const both = await start({ NODE_ENV: 'production', METRICS_TOKEN: STRONG, INSPECTOR_TOKEN: `i${STRONG.slice(1)}` });
    try {
      expect((await none.app.inject('/metrics')).statusCode).toBe(401);
      expect((await none.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${STRONG}` } })).statusCode).toBe(401);
      expect((await both.app.inject('/metrics')).statusCode).toBe(401);
      expect((await both.app.inject({ url: '/metrics', headers: { authorization: 'Bearer wrong' } })).statusCode).toBe(401);
      expect((await both.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${STRONG}` } })).statusCode).toBe(200);
      expect((await both.app.inject({ url: '/metrics', headers: { authorization: `Bearer i${STRONG.slice(1)}` } })).statusCode).toBe(200);
      // METRICS_TOKEN opens /metrics only: not the call list.
      expect((await both.app.inject({ url: '/twilio/sessions', headers: { authorization: `Bearer ${STRONG}` } })).statusCode).toBe(401);
    } finally {
      await Promise.all([none.close(), both.close()]);
    }
  });
});
