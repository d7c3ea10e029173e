/**
 * GET /inspector and its socket: who gets in (open in development, token in production, disabled in
 * production without one), the login cookie, constant-time comparison, same-origin sockets, the
 * page's self-hosted assets and the inlined ELK statechart. Sign-in limits, expiry and revocation on
 * a whole engine: test/inspector/session.test.ts.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import { afterEach, describe, expect, it } from 'vitest';
import type { EngineMode } from '../../src/config/mode.js';
import type { Tenant } from '../../src/config/tenant.schema.js';
import { createDevGate } from '../../src/http/dev-gate.js';
import { COOKIE_NAME, inspectorAccess, safeEqual } from '../../src/inspector/access.js';
import { SignedSessions } from '../../src/inspector/session.js';
import { InspectorFeed } from '../../src/inspector/feed.js';
import { registerInspector } from '../../src/inspector/plugin.js';

const TOKEN = 'inspector-token-0123456789abcdef';
const tenants = {
  all: () => [{ id: 'oak', name: 'Oak Hill', phoneNumbers: ['+15550100200'] } as unknown as Tenant],
};

let app: FastifyInstance | null = null;
afterEach(async () => {
  await app?.close();
  app = null;
});

/** Opens the socket with a listener attached before `open` (the server greets at once). */
async function hello(app: FastifyInstance, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  let first!: Promise<Record<string, unknown>>;
  const ws = await app.injectWS('/inspector/ws', { headers }, {
    onInit: (socket) => {
      first = new Promise((resolve) => socket.once('message', (d: Buffer) => resolve(JSON.parse(d.toString('utf8')) as Record<string, unknown>)));
    },
  });
  const message = await first;
  ws.terminate();
  return message;
}

const PUBLIC_BASE_URL = 'https://vetline.example';
const gate = (mode: EngineMode) => createDevGate({ mode, publicBaseUrl: PUBLIC_BASE_URL });

async function start(mode: EngineMode, token: string | null, validation: 'on' | 'off-development' = 'on') {
  app = Fastify();
  await app.register(formbody);
  const feed = new InspectorFeed();
  const nodeEnv = mode === 'production' ? 'production' : 'development';
  const access = await registerInspector(app, {
    feed,
    tenants,
    config: { nodeEnv, mode, publicBaseUrl: PUBLIC_BASE_URL, inspector: { token }, webhookValidation: validation, twilio: { accountSid: null, authToken: null } },
  });
  await app.ready();
  return { app, access };
}

describe('inspector access', () => {
  it('is open in development without a token, with the page, its assets and the statechart', async () => {
    const { app } = await start('development', null);
    const res = await app.inject('/inspector');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    expect(res.headers['cache-control']).toBe('no-store');
    // The ELK-laid-out chart is inlined: every state box carries its id.
    expect(res.body).toContain('data-state="call.listening.waiting"');
    expect(res.body).toContain('data-state="call.ended"');
    expect(res.body).not.toContain('<?xml');
    // Nothing from elsewhere: every script and stylesheet is ours.
    for (const m of res.body.matchAll(/(?:src|href)="([^"]+)"/g)) expect(m[1]).toMatch(/^(\/inspector\/|data:)/);
    for (const name of ['inspector.js', 'inspector.css', 'softphone.js', 'softphone-worklet.js']) {
      const asset = await app.inject(`/inspector/assets/${name}`);
      expect(asset.statusCode, name).toBe(200);
      expect(asset.body).not.toMatch(/https?:\/\/(?!127\.0\.0\.1)/);
    }
    expect((await app.inject('/inspector/assets/..%2Fplugin.ts')).statusCode).toBe(404);
    expect((await app.inject('/inspector/api/calls')).json()).toEqual({ calls: [] });
  });

  it('is not even routed in production without INSPECTOR_TOKEN', async () => {
    const { app, access } = await start('production', null);
    expect(access).toEqual({ mode: 'disabled' });
    expect((await start('protected', null)).access).toEqual({ mode: 'disabled' });
    expect((await app.inject('/inspector')).statusCode).toBe(404);
    expect((await app.inject('/inspector/api/calls')).statusCode).toBe(404);
  });

  it('with a token, asks for it (login form) and accepts it as a bearer token or a session cookie', async () => {
    const { app } = await start('production', TOKEN);
    const page = await app.inject('/inspector');
    expect(page.statusCode).toBe(401);
    expect(page.body).toContain('name="token"');
    expect(page.body).not.toContain('data-state=');
    expect((await app.inject('/inspector/api/calls')).statusCode).toBe(401);
    expect((await app.inject('/inspector/assets/inspector.js')).statusCode).toBe(401);
    expect((await app.inject({ url: '/inspector', headers: { authorization: 'Bearer wrong-token-0123456789' } })).statusCode).toBe(401);
    expect((await app.inject({ url: '/inspector', headers: { authorization: `Bearer ${TOKEN}` } })).statusCode).toBe(200);

    const bad = await app.inject({ method: 'POST', url: '/inspector/login', payload: 'token=nope', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(bad.statusCode).toBe(401);
    expect(bad.headers['set-cookie']).toBeUndefined();

    const login = await app.inject({ method: 'POST', url: '/inspector/login', payload: `token=${TOKEN}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(login.statusCode).toBe(303);
    expect(login.headers.location).toBe('/inspector');
    const cookie = String(login.headers['set-cookie']);
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).toMatch(/Path=\/inspector/);
    expect(cookie).toMatch(/Secure/); // production
    expect(cookie).not.toContain(TOKEN); // an HMAC of the token, never the token
    const value = cookie.split(';')[0] ?? '';
    expect((await app.inject({ url: '/inspector', headers: { cookie: value } })).statusCode).toBe(200);
    // A session signed with another token (another server, or the token before rotation) is refused.
    const foreign = new SignedSessions({ purpose: 'inspector', ttlMs: 3_600_000 }).issue('operator', 'another-token-0123456789abcdef0123');
    expect((await app.inject({ url: '/inspector', headers: { cookie: `${COOKIE_NAME}=${foreign}` } })).statusCode).toBe(401);
  });

  it('refuses a socket without the token, or opened from another origin', async () => {
    const { app } = await start('production', TOKEN);
    await expect(app.injectWS('/inspector/ws')).rejects.toThrow(/401/);
    await expect(app.injectWS('/inspector/ws', { headers: { authorization: `Bearer ${TOKEN}`, origin: 'https://evil.example', host: 'vetline.example' } })).rejects.toThrow(/403/);
    const message = await hello(app, { authorization: `Bearer ${TOKEN}`, origin: 'https://vetline.example', host: 'vetline.example' });
    expect(message).toMatchObject({ type: 'hello', access: 'token', calls: [], softphone: null, clinics: [{ id: 'oak', name: 'Oak Hill' }] });
    expect(JSON.stringify(message)).not.toContain('0100200'); // no clinic numbers without the softphone
  });

  it('offers the softphone only while webhook signatures are off (development)', async () => {
    const { app } = await start('development', null, 'off-development');
    const message = (await hello(app, { host: '127.0.0.1:3000' })) as { softphone: { accountSid: string; clinics: unknown[] } | null };
    // Not to a page of another name resolving here (DNS rebinding), nor to a socket opened by another site.
    await expect(app.injectWS('/inspector/ws', { headers: { host: 'rebind.attacker.example:3000' } })).rejects.toThrow(/403/);
    await expect(app.injectWS('/inspector/ws', { headers: { host: '127.0.0.1:3000', origin: 'https://attacker.example' } })).rejects.toThrow(/403/);
    expect(message.softphone?.accountSid).toMatch(/^AC0{32}$/);
    expect(message.softphone?.clinics).toEqual([{ id: 'oak', name: 'Oak Hill', number: '+15550100200', shown: '+•••••••••00' }]);
  });
});

describe('inspectorAccess and safeEqual', () => {
  it('maps the engine mode and INSPECTOR_TOKEN to an access mode', () => {
    expect(inspectorAccess({ inspector: { token: null } }, gate('development')).mode).toBe('open');
    expect(inspectorAccess({ inspector: { token: null } }, gate('local')).mode).toBe('open');
    expect(inspectorAccess({ inspector: { token: null } }, gate('protected'))).toEqual({ mode: 'disabled' });
    expect(inspectorAccess({ inspector: { token: null } }, gate('production'))).toEqual({ mode: 'disabled' });
    for (const mode of ['development', 'local', 'protected', 'production'] as const) {
      expect(inspectorAccess({ inspector: { token: TOKEN } }, gate(mode))).toMatchObject({ mode: 'token', token: TOKEN });
    }
  });

  it('compares whole strings of any length', () => {
    expect(safeEqual(TOKEN, TOKEN)).toBe(true);
    expect(safeEqual(TOKEN, `${TOKEN}x`)).toBe(false);
    expect(safeEqual(TOKEN, TOKEN.slice(0, -1))).toBe(false);
    expect(safeEqual('', TOKEN)).toBe(false);
  });
});
