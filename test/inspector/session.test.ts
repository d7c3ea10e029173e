/**
 * The inspector's sign-in as an operator uses it, on a real engine in production with
 * INSPECTOR_TOKEN: failed sign-ins are rate-limited per address, the session cookie is signed, expires
 * and can be revoked on the server (sign out; sign out everywhere), and a sign-in from another site's
 * page is refused. docs/inspector.md "Opening it".
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import { startEngine, type TestEngine } from '../support/engine.js';

const TOKEN = '9d4b7e1a3c6f8052be7d1c4a9f3e6b08';
const HOST = 'vetline.example.com';
const SITE = { host: HOST, origin: `https://${HOST}` };
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const HOUR = 3_600_000;

let e: TestEngine;
beforeAll(async () => {
  e = await startEngine({
    providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts(), agent: createFakeAgent() },
    prompts: { get: () => new Uint8Array(1600) },
    dev: false,
    env: { NODE_ENV: 'production', INSPECTOR_TOKEN: TOKEN },
  });
});
afterAll(() => e?.close());
afterEach(() => {
  vi.useRealTimers();
});

let address = 0;
/** A client address of its own per test, so the sign-in limit of one test does not reach the next. */
const nextAddress = () => `198.51.100.${++address}`;

async function signIn(remoteAddress: string, token = TOKEN) {
  return e.app.inject({ method: 'POST', url: '/inspector/login', headers: { ...FORM, ...SITE }, payload: `token=${encodeURIComponent(token)}`, remoteAddress });
}

/** The cookie pair (`name=value`) a successful sign-in sets. */
async function session(remoteAddress = nextAddress()): Promise<string> {
  const res = await signIn(remoteAddress);
  expect(res.statusCode).toBe(303);
  return String(res.headers['set-cookie']).split(';')[0] ?? '';
}

const calls = (cookie: string) => e.app.inject({ url: '/inspector/api/calls', headers: { cookie, host: HOST } });

describe('inspector session cookie', () => {
  it('is signed and bound to its issue time: never the token, and a changed byte is refused', async () => {
    const res = await signIn(nextAddress());
    const setCookie = String(res.headers['set-cookie']);
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).toMatch(/Secure/);
    expect(setCookie).toMatch(/Max-Age=43200/);
    expect(setCookie).not.toContain(TOKEN);
    const cookie = setCookie.split(';')[0] ?? '';
    expect((await calls(cookie)).statusCode).toBe(200);
    // Two sign-ins are two sessions.
    expect(await session()).not.toBe(cookie);
    // Every part of the value is covered by the signature.
    const value = cookie.slice(cookie.indexOf('=') + 1);
    for (let i = 0; i < value.length; i++) {
      if (value[i] === '.') continue;
      const changed = `${value.slice(0, i)}${value[i] === 'a' ? 'b' : 'a'}${value.slice(i + 1)}`;
      expect([i, (await calls(`${cookie.slice(0, cookie.indexOf('='))}=${changed}`)).statusCode]).toEqual([i, 401]);
    }
  });

  it('expires after 12 hours, on the server as well as in the browser', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.parse('2030-01-01T08:00:00Z'));
    const cookie = await session();
    vi.setSystemTime(Date.parse('2030-01-01T08:00:00Z') + 12 * HOUR - 1000);
    expect((await calls(cookie)).statusCode).toBe(200);
    vi.setSystemTime(Date.parse('2030-01-01T08:00:00Z') + 12 * HOUR + 1000);
    expect((await calls(cookie)).statusCode).toBe(401);
    const page = await e.app.inject({ url: '/inspector', headers: { cookie, host: HOST } });
    expect(page.statusCode).toBe(401);
    expect(page.body).toContain('name="token"');
  });

  it('signing out revokes that session on the server, not only in the browser', async () => {
    const kept = await session();
    const stolen = await session();
    const out = await e.app.inject({ method: 'POST', url: '/inspector/logout', headers: { ...FORM, ...SITE, cookie: stolen }, payload: '' });
    expect(out.statusCode).toBe(303);
    expect(String(out.headers['set-cookie'])).toMatch(/Max-Age=0/);
    // A copy of the cookie taken before sign-out is worth nothing now; other sessions carry on.
    expect((await calls(stolen)).statusCode).toBe(401);
    expect((await calls(kept)).statusCode).toBe(200);
  });

  it('"sign out everywhere" revokes every session issued so far; new sign-ins work', async () => {
    const a = await session();
    const b = await session();
    const out = await e.app.inject({ method: 'POST', url: '/inspector/logout', headers: { ...FORM, ...SITE, cookie: a }, payload: 'everywhere=1' });
    expect(out.statusCode).toBe(303);
    expect((await calls(a)).statusCode).toBe(401);
    expect((await calls(b)).statusCode).toBe(401);
    // Not by anyone: without a valid session or the token, "everywhere" revokes nothing.
    const c = await session();
    await e.app.inject({ method: 'POST', url: '/inspector/logout', headers: { ...FORM, ...SITE }, payload: 'everywhere=1' });
    expect((await calls(c)).statusCode).toBe(200);
  });

  it('refuses a sign-in posted from another site', async () => {
    const res = await e.app.inject({
      method: 'POST', url: '/inspector/login', headers: { ...FORM, host: HOST, origin: 'https://attacker.example' }, payload: `token=${TOKEN}`, remoteAddress: nextAddress(),
    });
    expect(res.statusCode).toBe(403);
    expect(res.headers['set-cookie']).toBeUndefined();
  });
});

describe('inspector sign-in failures', () => {
  it('are limited per client address: 10 in 15 minutes, then 429 even for the right token', async () => {
    const attacker = nextAddress();
    for (let i = 0; i < 10; i++) {
      const res = await signIn(attacker, `wrong-token-${i}-0123456789abcdef0123`);
      expect([i, res.statusCode]).toEqual([i, 401]);
    }
    const limited = await signIn(attacker, 'wrong-token-x-0123456789abcdef01234');
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    const right = await signIn(attacker);
    expect(right.statusCode).toBe(429);
    expect(right.headers['set-cookie']).toBeUndefined();
    // Another address signs in as usual.
    expect((await signIn(nextAddress())).statusCode).toBe(303);
    const warned = e.logs.filter((l) => l.includes('inspector login refused'));
    expect(warned.length).toBeGreaterThanOrEqual(10);
    expect(warned.join('')).not.toContain('wrong-token');
  });

  it('successful sign-ins do not count', async () => {
    const operator = nextAddress();
    for (let i = 0; i < 15; i++) expect((await signIn(operator)).statusCode).toBe(303);
  });
});
