/**
 * Nothing about live calls is visible without the right credentials in production: the call list
 * (/twilio/sessions), the inspector's call list and call detail (transcript, recordings). The
 * inspector's login, cookie and socket rules are in test/inspector/plugin.test.ts and
 * test/inspector/session.test.ts; modes and /metrics in test/security/modes.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COOKIE_NAME } from '../../src/inspector/access.js';
import { SignedSessions } from '../../src/inspector/session.js';
import { startLocalEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { FakeTwilio } from '../support/fake-twilio.js';

const INSPECTOR_TOKEN = 'inspector-token-7f3a9c1e5b2d4068';
const WRONG = 'inspector-token-7f3a9c1e5b2d4069';
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

let withToken: TestEngine;
let noToken: TestEngine;
let development: TestEngine;
let call: FakeTwilio;

beforeAll(async () => {
  // One at a time: each loads its own offline recognizer.
  withToken = await startLocalEngine({ dev: false, env: { NODE_ENV: 'production', INSPECTOR_TOKEN } });
  noToken = await startLocalEngine({ dev: false, env: { NODE_ENV: 'production' } });
  development = await startLocalEngine({ dev: true, env: { NODE_ENV: 'development' } });
  call = await FakeTwilio.call({
    serverUrl: withToken.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: '+15550109000', from: '+15557654321',
  });
  await call.untilQuiet();
}, 60_000);

afterAll(async () => {
  await call?.dispose();
  await Promise.all([withToken?.close(), noToken?.close(), development?.close()]);
});

describe('production with INSPECTOR_TOKEN', () => {
  const paths = () => ['/twilio/sessions', '/inspector/api/calls', `/inspector/api/calls/${call.callSid}`];

  it('refuses every call listing and call detail without the token, with a wrong one, or a forged cookie', async () => {
    for (const url of paths()) {
      for (const headers of [{}, bearer(WRONG), bearer(''), { authorization: `Basic ${Buffer.from(`x:${INSPECTOR_TOKEN}`).toString('base64')}` },
        { cookie: `${COOKIE_NAME}=${new SignedSessions({ purpose: 'inspector', ttlMs: 3_600_000 }).issue('operator', WRONG)}` },
        { cookie: `${COOKIE_NAME}=${INSPECTOR_TOKEN}` }]) {
        const res = await withToken.app.inject({ url, headers });
        expect([url, JSON.stringify(headers), res.statusCode]).toEqual([url, JSON.stringify(headers), 401]);
        expect(res.body).not.toContain(call.callSid);
      }
    }
  });

  it('serves them with the token', async () => {
    const sessions = await withToken.app.inject({ url: '/twilio/sessions', headers: bearer(INSPECTOR_TOKEN) });
    expect(sessions.statusCode).toBe(200);
    expect(sessions.json()).toMatchObject({ calls: [{ callSid: call.callSid, tenantId: 'quick-vet' }] });
    const list = await withToken.app.inject({ url: '/inspector/api/calls', headers: bearer(INSPECTOR_TOKEN) });
    expect(list.statusCode).toBe(200);
    expect(list.body).toContain(call.callSid);
    const detail = await withToken.app.inject({ url: `/inspector/api/calls/${call.callSid}`, headers: bearer(INSPECTOR_TOKEN) });
    expect(detail.statusCode).toBe(200);
    // The session cookie the login form sets works for the inspector's own paths.
    const login = await withToken.app.inject({
      method: 'POST', url: '/inspector/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${INSPECTOR_TOKEN}`,
    });
    const cookie = { cookie: String(login.headers['set-cookie']).split(';')[0] ?? '' };
    expect((await withToken.app.inject({ url: '/inspector/api/calls', headers: cookie })).statusCode).toBe(200);
  });
});

describe('production without INSPECTOR_TOKEN', () => {
  it('never lists calls, whatever is presented; the inspector is not routed', async () => {
    for (const headers of [{}, bearer(INSPECTOR_TOKEN), bearer('anything-at-all-1234')]) {
      expect((await noToken.app.inject({ url: '/twilio/sessions', headers })).statusCode).toBe(401);
    }
    expect((await noToken.app.inject('/inspector/api/calls')).statusCode).toBe(404);
  });
});

describe('development without INSPECTOR_TOKEN', () => {
  it('lists calls openly (the local tools read it)', async () => {
    const res = await development.app.inject('/twilio/sessions');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ calls: [] });
  });
});
