/**
 * The front desk's API over the real SQLite store: who gets in (clinic tokens, the operator's
 * token, the session cookie, development-open, production-disabled), tenant isolation both ways on
 * every route (list, detail, change, live events, recordings), filters and ordering, input
 * validation, CSRF on cookie-authenticated changes, the SSE cap, and what reaches the log.
 */
import { randomUUID } from 'node:crypto';
import type { ReadableStream } from 'node:stream/web';
import type { LightMyRequestResponse } from 'fastify';
import { Agent, fetch, type Headers } from 'undici';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Tenant } from '../../src/config/tenant.schema.js';
import { clinicDeskTokens, deskAccess, DESK_COOKIE_NAME, deskSessionValue, type DeskAccess } from '../../src/desk/access.js';
import { DeskEvents } from '../../src/desk/events.js';
import { isVetError } from '../../src/errors.js';
import type { FollowUpInput } from '../../src/store/types.js';
import {
  CLINIC_NAMES,
  MINUTE,
  OAK,
  RIVER,
  SECRET_WORDS,
  TOKENS,
  followUp,
  gateFor,
  recordingSid,
  startDesk,
  summary,
  tokenAccess,
  webhookDelivery,
  type DeskHarness,
} from './kit.js';

const HOST = 'desk.clinic.example';
const ORIGIN = `https://${HOST}`;
type Problem = { code: string; message: string };
const bearer = (token: string) => ({ authorization: `Bearer ${token}`, host: HOST });

let desk: DeskHarness | null = null;
afterEach(async () => {
  await desk?.close();
  desk = null;
});

interface Seeded {
  oakEmergency: FollowUpInput;
  oakAppt: FollowUpInput;
  oakRefillDone: FollowUpInput;
  oakMessage: FollowUpInput;
  oakOldEmergencyDone: FollowUpInput;
  riverAppt: FollowUpInput;
  riverEmergency: FollowUpInput;
  oakRecording: string;
  riverRecording: string;
  now: number;
}

/** Two clinics' worth of follow-ups, written the way the call pipeline and the delivery worker do. */
async function seed(h: DeskHarness): Promise<Seeded> {
  const now = Date.now();
  const s = h.store;
  const oakEmergency = followUp({
    clinicId: OAK, type: 'emergency', urgency: 'emergency', createdAt: now - 30 * MINUTE, callerNumber: '+15557650202',
    petName: 'Biscuit', petSpecies: 'cat', reason: 'Seizures since dawn', preferredTime: null,
    emergency: { trigger: 'speech', detail: 'seizure', script: 'emergency', sentTo: 'emergencyLine', connected: false },
  });
  const oakAppt = followUp({ clinicId: OAK, createdAt: now - 10 * MINUTE, urgency: 'soon' });
  const oakRefillDone = followUp({ clinicId: OAK, type: 'refill_request', createdAt: now - 5 * MINUTE, reason: 'carprofen refill' });
  const oakMessage = followUp({ clinicId: OAK, type: 'message', createdAt: now - 60 * MINUTE, petName: null, petSpecies: null, reason: null, message: 'Please call about the invoice', recipient: 'Dr. Patel' });
  const oakOldEmergencyDone = followUp({ clinicId: OAK, type: 'emergency', urgency: 'emergency', createdAt: now - 180 * MINUTE });
  const riverAppt = followUp({ clinicId: RIVER, createdAt: now - MINUTE, petName: 'Whiskers', callerNumber: '+15557650303' });
  const riverEmergency = followUp({ clinicId: RIVER, type: 'emergency', urgency: 'emergency', createdAt: now - 120 * MINUTE });

  const apptWebhook = webhookDelivery(oakAppt);
  const messageWebhook = webhookDelivery(oakMessage);
  for (const f of [oakEmergency, oakRefillDone, oakOldEmergencyDone, riverAppt, riverEmergency]) await s.recordFollowUp(f, []);
  await s.recordFollowUp(oakAppt, [apptWebhook]);
  await s.recordFollowUp(oakMessage, [messageWebhook]);
  // The delivery worker: one webhook gave up after its retries, one went through.
  await s.markAttemptFailed(apptWebhook.id, 'HTTP 500 Internal Server Error (gave up after 24 h)', null, now);
  await s.markDelivered(messageWebhook.id, now);

  const oakRecording = recordingSid();
  const riverRecording = recordingSid();
  await s.finishCall(
    summary(oakEmergency, {
      outcome: 'emergency',
      summary: 'Emergency: the caller\'s cat is having seizures; transfer did not connect.',
      transcript: [
        { role: 'agent', text: 'Oak Hill Animal Clinic, how can I help?' },
        { role: 'caller', text: 'Seizures since dawn, my cat Biscuit <b>is</b> shaking' },
      ],
      recordings: [{ recordingSid: oakRecording, url: 'https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/x', durationSeconds: 83 }],
    }),
    [],
    now,
  );
  await s.finishCall(summary(riverAppt, { recordings: [{ recordingSid: riverRecording, url: null, durationSeconds: 20 }] }), [], now);
  await s.updateFollowUp(oakRefillDone.id, OAK, { status: 'done', handledBy: 'Sam' }, now);
  await s.updateFollowUp(oakOldEmergencyDone.id, OAK, { status: 'done' }, now);
  await s.updateFollowUp(oakMessage.id, OAK, { status: 'in_progress', handledBy: 'Dr. Patel' }, now);
  return { oakEmergency, oakAppt, oakRefillDone, oakMessage, oakOldEmergencyDone, riverAppt, riverEmergency, oakRecording, riverRecording, now };
}

type ListBody = { followUps: { id: string; clinicId: string; type: string; status: string; deliveries: { label: string; status: string }[]; call: { summary: string } | null; clinicName: string | null }[] };
const ids = (res: LightMyRequestResponse) => (res.json<ListBody>()).followUps.map((f) => f.id);

async function list(h: DeskHarness, token: string, query = '') {
  return h.app.inject({ url: `/desk/api/followups${query}`, headers: bearer(token) });
}

describe('deskAccess', () => {
  const none = new Map<string, string>();
  it('is open in development and local mode without any token, disabled in production and protected mode', () => {
    for (const mode of ['development', 'local'] as const) expect(deskAccess({ gate: gateFor(mode), operatorToken: null, clinicTokens: none }).mode).toBe('open');
    for (const mode of ['production', 'protected'] as const) expect(deskAccess({ gate: gateFor(mode), operatorToken: null, clinicTokens: none })).toEqual({ mode: 'disabled' });
  });

  it('asks for tokens in any environment as soon as one is configured (a clinic token alone is enough)', () => {
    const one = new Map([[OAK, TOKENS[OAK]]]);
    for (const mode of ['development', 'local', 'production'] as const) {
      expect(deskAccess({ gate: gateFor(mode), operatorToken: null, clinicTokens: one }).mode).toBe('token');
      expect(deskAccess({ gate: gateFor(mode), operatorToken: TOKENS.operator, clinicTokens: none }).mode).toBe('token');
    }
  });

  it('refuses short tokens and tokens shared by two scopes, naming the clinic but never the value', () => {
    const attempt = (operatorToken: string | null, clinicTokens: Map<string, string>) => {
      try {
        deskAccess({ gate: gateFor('production'), operatorToken, clinicTokens });
        return null;
      } catch (err) {
        if (!isVetError(err)) throw err;
        return err;
      }
    };
    const short = attempt(null, new Map([[OAK, 'short']]));
    expect(short?.code).toBe('VET_E_CONFIG');
    expect(short?.message).toContain(OAK);
    const shared = attempt(null, new Map([[OAK, TOKENS[OAK]], [RIVER, TOKENS[OAK]]]));
    expect(shared?.message).toContain(`clinic ${RIVER}`);
    expect(shared?.message).not.toContain(TOKENS[OAK]);
    const asOperator = attempt(TOKENS[OAK], new Map([[OAK, TOKENS[OAK]]]));
    expect(asOperator?.message).toContain('operator');
    expect(asOperator?.message).not.toContain(TOKENS[OAK]);
  });
});

describe('clinicDeskTokens', () => {
  it('maps each clinic with a desk token to it, skipping clinics without one', () => {
    const tenants = [{ id: OAK }, { id: RIVER }, { id: 'no-desk' }] as unknown as Tenant[];
    const secrets: Record<string, string | null> = { [OAK]: TOKENS[OAK], [RIVER]: TOKENS[RIVER], 'no-desk': null };
    const map = clinicDeskTokens({ all: () => tenants, secretsOf: (id) => ({ webhookSecret: null, deskToken: secrets[id] ?? null }) });
    expect([...map]).toEqual([[OAK, TOKENS[OAK]], [RIVER, TOKENS[RIVER]]]);
  });
});

describe('desk modes', () => {
  it('production without any token: not routed at all (404)', async () => {
    desk = await startDesk({ access: deskAccess({ gate: gateFor('production'), operatorToken: null, clinicTokens: new Map() }) });
    for (const url of ['/desk', '/desk/api/followups', '/desk/api/events', '/desk/api/session', '/desk/assets/desk.js']) {
      expect((await desk.app.inject(url)).statusCode, url).toBe(404);
    }
    expect((await desk.app.inject({ method: 'POST', url: '/desk/login', payload: { token: 'x' } })).statusCode).toBe(404);
  });

  it('development without tokens: open to anyone, every clinic, with a visible banner', async () => {
    desk = await startDesk({ access: deskAccess({ gate: gateFor('development'), operatorToken: null, clinicTokens: new Map() }) });
    const s = await seed(desk);
    const page = await desk.app.inject('/desk');
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('development: open to anyone');
    const res = await desk.app.inject('/desk/api/followups');
    expect(res.statusCode).toBe(200);
    expect(new Set(res.json<ListBody>().followUps.map((f) => f.clinicId))).toEqual(new Set([OAK, RIVER]));
    expect((await desk.app.inject('/desk/api/session')).json()).toMatchObject({ access: 'open', scope: 'open', clinic: null });
    // A change still needs the page's own origin when a browser sends one.
    const cross = await desk.app.inject({ method: 'PATCH', url: `/desk/api/followups/${s.riverAppt.id}`, headers: { host: HOST, origin: 'https://evil.example' }, payload: { status: 'done' } });
    expect(cross.statusCode).toBe(403);
    const ok = await desk.app.inject({ method: 'PATCH', url: `/desk/api/followups/${s.riverAppt.id}`, headers: { host: HOST, origin: ORIGIN }, payload: { status: 'done' } });
    expect(ok.statusCode).toBe(200);
    // DNS rebinding: a page of another name that now resolves to this server.
    const rebound = await desk.app.inject({ url: '/desk/api/followups', headers: { host: 'rebind.attacker.example' } });
    expect(rebound.statusCode).toBe(403);
    expect(rebound.json()).toMatchObject({ code: 'VET_E_LOCAL_ONLY' });
  });

  it('local mode without tokens: open to this machine only, not through a proxy on it', async () => {
    desk = await startDesk({ access: deskAccess({ gate: gateFor('local'), operatorToken: null, clinicTokens: new Map() }) });
    await seed(desk);
    expect((await desk.app.inject({ url: '/desk/api/followups', headers: { host: '127.0.0.1:3000' } })).statusCode).toBe(200);
    for (const headers of [{ host: '127.0.0.1:3000', 'x-forwarded-for': '203.0.113.9' }, { host: HOST }]) {
      for (const url of ['/desk', '/desk/api/followups']) {
        const res = await desk.app.inject({ url, headers });
        expect([url, headers, res.statusCode]).toEqual([url, headers, 403]);
        expect(res.json()).toMatchObject({ code: 'VET_E_LOCAL_ONLY' });
        expect(res.body).not.toContain('Biscuit');
      }
    }
  });

  it('with tokens: the page asks for one, no banner, strict security headers', async () => {
    desk = await startDesk({ access: tokenAccess() });
    const page = await desk.app.inject('/desk');
    expect(page.statusCode).toBe(401);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.body).toContain('action="/desk/login"');
    expect(page.body).not.toContain('open to anyone');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(page.headers['cache-control']).toBe('no-store');
    const signedIn = await desk.app.inject({ url: '/desk', headers: bearer(TOKENS[OAK]) });
    expect(signedIn.statusCode).toBe(200);
    expect(signedIn.body).not.toContain('open to anyone');
    // Everything the page loads is ours.
    for (const m of signedIn.body.matchAll(/(?:src|href)="([^"]+)"/g)) expect(m[1]).toMatch(/^(\/desk\/|data:)/);
    for (const name of ['desk.js', 'desk.css']) {
      const asset = await desk.app.inject(`/desk/assets/${name}`);
      expect(asset.statusCode, name).toBe(200);
      expect(asset.body).not.toMatch(/https?:\/\//);
    }
    expect((await desk.app.inject('/desk/assets/..%2Fplugin.ts')).statusCode).toBe(404);
    // The page never builds markup from data.
    const js = (await desk.app.inject('/desk/assets/desk.js')).body;
    expect(js).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  });
});

describe('authentication', () => {
  beforeEach(async () => {
    desk = await startDesk({ access: tokenAccess() });
  });

  it('answers 401 VET_E_DESK_AUTH with what to do, on every API route, for missing, wrong or forged credentials', async () => {
    const h = desk!;
    const s = await seed(h);
    const access = h.access as Extract<DeskAccess, { mode: 'token' }>;
    const oakSession = deskSessionValue(access, { kind: 'clinic', clinicId: OAK });
    const forged = `c-${RIVER}.${oakSession.split('.').slice(1).join('.')}`; // Oak's session and MAC under Riverside's tag
    const credentials: Record<string, string>[] = [
      { host: HOST },
      bearer('not-a-token-at-all-0000'),
      { authorization: `Basic ${Buffer.from(`x:${TOKENS[OAK]}`).toString('base64')}`, host: HOST },
      { cookie: `${DESK_COOKIE_NAME}=${forged}`, host: HOST },
      { cookie: `${DESK_COOKIE_NAME}=${TOKENS[OAK]}`, host: HOST }, // the token itself is not a session
      { cookie: `${DESK_COOKIE_NAME}=operator.AAAA`, host: HOST },
      // A wrong bearer is not rescued by a good cookie.
      { authorization: 'Bearer wrong-token-0123456789', cookie: `${DESK_COOKIE_NAME}=${oakSession}`, host: HOST },
    ];
    const routes = [
      { method: 'GET' as const, url: '/desk/api/followups' },
      { method: 'GET' as const, url: `/desk/api/followups/${s.oakAppt.id}` },
      { method: 'PATCH' as const, url: `/desk/api/followups/${s.oakAppt.id}`, payload: { status: 'done' } },
      { method: 'GET' as const, url: '/desk/api/events' },
      { method: 'GET' as const, url: '/desk/api/session' },
      { method: 'GET' as const, url: `/desk/api/recordings/${s.oakEmergency.callSid}/${s.oakRecording}` },
    ];
    for (const headers of credentials) {
      for (const route of routes) {
        const res = await h.app.inject({ ...route, headers });
        expect(res.statusCode, `${route.method} ${route.url} ${JSON.stringify(headers)}`).toBe(401);
        expect(res.json<Problem>().code).toBe('VET_E_DESK_AUTH');
        expect(res.json<Problem>().message).toContain('Authorization: Bearer');
        expect(res.headers['www-authenticate']).toContain('Bearer');
      }
    }
    expect((await h.store.getFollowUp(s.oakAppt.id))?.status).toBe('new');
  });

  it('signs in with a clinic token: an HttpOnly SameSite=Strict cookie on /desk holding an HMAC, never the token', async () => {
    const h = desk!;
    const s = await seed(h);
    const form = await h.app.inject({
      method: 'POST', url: '/desk/login', headers: { host: HOST, origin: ORIGIN, 'content-type': 'application/x-www-form-urlencoded' },
      payload: `token=${encodeURIComponent(TOKENS[OAK])}`,
    });
    expect(form.statusCode).toBe(303);
    expect(form.headers.location).toBe('/desk');
    const setCookie = String(form.headers['set-cookie']);
    expect(setCookie).toMatch(new RegExp(`^${DESK_COOKIE_NAME}=c-${OAK}\\.[\\w-]{16}\\.[0-9a-z]+\\.[\\w-]{43}; Path=/desk; Max-Age=2592000; HttpOnly; SameSite=Strict$`));
    expect(setCookie).not.toContain(TOKENS[OAK]);
    const cookie = setCookie.split(';')[0]!;

    // The cookie opens Oak Hill only.
    const mine = await h.app.inject({ url: '/desk/api/followups', headers: { cookie, host: HOST } });
    expect(new Set(mine.json<ListBody>().followUps.map((f) => f.clinicId))).toEqual(new Set([OAK]));
    expect((await h.app.inject({ url: '/desk', headers: { cookie, host: HOST } })).statusCode).toBe(200);
    expect((await h.app.inject({ url: '/desk/api/session', headers: { cookie, host: HOST } })).json()).toMatchObject({
      access: 'token', scope: 'clinic', clinic: { id: OAK, name: CLINIC_NAMES[OAK] }, clinics: [],
    });

    // CSRF: a change riding on the cookie must come from the desk page's own origin.
    const patch = (headers: Record<string, string>) =>
      h.app.inject({ method: 'PATCH', url: `/desk/api/followups/${s.oakAppt.id}`, headers: { cookie, host: HOST, ...headers }, payload: { status: 'in_progress' } });
    for (const headers of [{}, { origin: 'https://evil.example' }, { origin: 'null' }, { origin: `http://${HOST}:8443` }, { 'sec-fetch-site': 'cross-site' }]) {
      const res = await patch(headers);
      expect(res.statusCode, JSON.stringify(headers)).toBe(403);
      expect(res.json()).toMatchObject({ code: 'VET_E_DESK_AUTH' });
    }
    expect((await h.store.getFollowUp(s.oakAppt.id))?.status).toBe('new');
    expect((await patch({ origin: ORIGIN })).statusCode).toBe(200);
    expect((await patch({ 'sec-fetch-site': 'same-origin' })).statusCode).toBe(200);
    expect((await patch({ origin: 'null', 'sec-fetch-site': 'same-origin' })).statusCode).toBe(200); // a privacy setting hid the origin
    expect((await patch({ origin: 'null', 'sec-fetch-site': 'same-site' })).statusCode).toBe(403);
    const huge = await h.app.inject({ method: 'PATCH', url: `/desk/api/followups/${s.oakAppt.id}`, headers: bearer(TOKENS[OAK]), payload: { note: 'n'.repeat(20_000) } });
    expect(huge.statusCode).toBe(413);
    expect(huge.json<Problem>().code).toBe('VET_E_BODY_TOO_LARGE');
    expect((await h.app.inject({ method: 'HEAD', url: '/desk/api/events', headers: bearer(TOKENS[OAK]) })).statusCode).toBe(404);
    // Bearer clients (curl, integrations) carry no ambient credential: no Origin needed.
    const byBearer = await h.app.inject({ method: 'PATCH', url: `/desk/api/followups/${s.oakAppt.id}`, headers: bearer(TOKENS[OAK]), payload: { status: 'done' } });
    expect(byBearer.statusCode).toBe(200);

    const logout = await h.app.inject({ method: 'POST', url: '/desk/logout', headers: { cookie, host: HOST, origin: ORIGIN } });
    expect(logout.statusCode).toBe(303);
    expect(String(logout.headers['set-cookie'])).toMatch(new RegExp(`^${DESK_COOKIE_NAME}=; Path=/desk; Max-Age=0`));
    // Signed out on the server too: a copy of the cookie taken before is refused.
    expect((await h.app.inject({ url: '/desk/api/followups', headers: { cookie, host: HOST } })).statusCode).toBe(401);
  });

  it('a session expires after 30 days on the server, whatever the browser kept', async () => {
    const h = desk!;
    const t0 = Date.parse('2030-03-01T09:00:00Z');
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(t0);
      const login = await h.app.inject({ method: 'POST', url: '/desk/login', headers: { host: HOST }, payload: { token: TOKENS[OAK] } });
      const cookie = String(login.headers['set-cookie']).split(';')[0]!;
      vi.setSystemTime(t0 + 30 * 86_400_000 - 1000);
      expect((await h.app.inject({ url: '/desk/api/session', headers: { cookie, host: HOST } })).statusCode).toBe(200);
      vi.setSystemTime(t0 + 30 * 86_400_000 + 1000);
      expect((await h.app.inject({ url: '/desk/api/session', headers: { cookie, host: HOST } })).statusCode).toBe(401);
    } finally {
      vi.useRealTimers();
    }
  });

  it('limits failed sign-ins per address: 10 in 15 minutes, then 429 even for the right token', async () => {
    const h = desk!;
    const login = (token: string, remoteAddress: string) => h.app.inject({ method: 'POST', url: '/desk/login', headers: { host: HOST }, payload: { token }, remoteAddress });
    for (let i = 0; i < 10; i++) expect((await login(`wrong-desk-token-${i}-0123456789`, '198.51.100.7')).statusCode).toBe(401);
    const blocked = await login(TOKENS[OAK], '198.51.100.7');
    expect(blocked.statusCode).toBe(429);
    expect(blocked.json()).toMatchObject({ code: 'VET_E_RATE_LIMITED' });
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    expect(blocked.headers['set-cookie']).toBeUndefined();
    expect((await login(TOKENS[OAK], '198.51.100.8')).statusCode).toBe(204);
  });

  it('refuses a wrong token and a cross-site sign-in; the operator token signs in to every clinic; Secure in production', async () => {
    const h = desk!;
    await seed(h);
    const form = (token: string, headers: Record<string, string> = {}) =>
      h.app.inject({ method: 'POST', url: '/desk/login', headers: { host: HOST, 'content-type': 'application/x-www-form-urlencoded', ...headers }, payload: `token=${encodeURIComponent(token)}` });
    const wrong = await form('not-the-token-0123456789');
    expect(wrong.statusCode).toBe(401);
    expect(wrong.body).toContain('That token is not right.');
    expect(wrong.headers['set-cookie']).toBeUndefined();
    const cross = await form(TOKENS[OAK], { origin: 'https://evil.example' });
    expect(cross.statusCode).toBe(403);
    expect(cross.headers['set-cookie']).toBeUndefined();
    const json = await h.app.inject({ method: 'POST', url: '/desk/login', headers: { host: HOST }, payload: { token: 'nope-nope-nope-nope' } });
    expect(json.statusCode).toBe(401);
    expect(json.json()).toMatchObject({ code: 'VET_E_DESK_AUTH' });

    const operator = await form(TOKENS.operator);
    expect(operator.statusCode).toBe(303);
    const cookie = String(operator.headers['set-cookie']).split(';')[0]!;
    expect(cookie).toMatch(new RegExp(`^${DESK_COOKIE_NAME}=operator\\.`));
    const all = await h.app.inject({ url: '/desk/api/followups', headers: { cookie, host: HOST } });
    expect(new Set(all.json<ListBody>().followUps.map((f) => f.clinicId))).toEqual(new Set([OAK, RIVER]));
    expect((await h.app.inject({ url: '/desk/api/session', headers: { cookie, host: HOST } })).json()).toMatchObject({
      scope: 'operator', clinic: null, clinics: [{ id: OAK, name: CLINIC_NAMES[OAK] }, { id: RIVER, name: CLINIC_NAMES[RIVER] }],
    });

    await h.close();
    desk = await startDesk({ access: tokenAccess(), secureCookies: true });
    const secure = await desk.app.inject({ method: 'POST', url: '/desk/login', headers: { host: HOST }, payload: { token: TOKENS[RIVER] } });
    expect(secure.statusCode).toBe(204);
    expect(String(secure.headers['set-cookie'])).toMatch(/; Secure$/);
  });
});

describe('tenant isolation', () => {
  let s: Seeded;
  const recorded: string[] = [];
  beforeEach(async () => {
    recorded.length = 0;
    desk = await startDesk({
      access: tokenAccess(),
      fetchRecording: (sid) => {
        recorded.push(sid);
        return Promise.resolve({ body: Buffer.from(`RIFF-audio-${sid}`), contentType: 'audio/mpeg' });
      },
    });
    s = await seed(desk);
  });

  it('lists only the token\'s clinic, both ways; the operator sees both; clinic= is the operator\'s only', async () => {
    const h = desk!;
    const oak = await list(h, TOKENS[OAK]);
    expect(oak.statusCode).toBe(200);
    expect(ids(oak).sort()).toEqual([s.oakEmergency, s.oakAppt, s.oakRefillDone, s.oakMessage, s.oakOldEmergencyDone].map((f) => f.id).sort());
    const river = await list(h, TOKENS[RIVER]);
    expect(ids(river).sort()).toEqual([s.riverAppt, s.riverEmergency].map((f) => f.id).sort());
    expect(ids(await list(h, TOKENS.operator))).toHaveLength(7);
    expect(ids(await list(h, TOKENS.operator, `?clinic=${RIVER}`)).sort()).toEqual(ids(river).sort());

    // A clinic token cannot widen or switch its scope through clinic=.
    const other = await list(h, TOKENS[OAK], `?clinic=${RIVER}`);
    expect(other.statusCode).toBe(400);
    expect(other.json<Problem>().code).toBe('VET_E_BAD_REQUEST');
    expect(other.json<Problem>().message).toContain('operator');
    const unknown = await list(h, TOKENS[OAK], '?clinic=no-such-clinic');
    expect(unknown.json()).toEqual(other.json()); // same answer: no hint whether a clinic exists
    expect(ids(await list(h, TOKENS[OAK], `?clinic=${OAK}`))).toEqual(ids(oak));
  });

  it('another clinic\'s follow-up answers exactly like an unknown id, for reading and for changing', async () => {
    const h = desk!;
    const unknownId = randomUUID();
    for (const [token, foreign, own] of [
      [TOKENS[OAK], s.riverAppt, s.oakAppt],
      [TOKENS[RIVER], s.oakAppt, s.riverAppt],
    ] as const) {
      const foreignRes = await h.app.inject({ url: `/desk/api/followups/${foreign.id}`, headers: bearer(token) });
      const unknownRes = await h.app.inject({ url: `/desk/api/followups/${unknownId}`, headers: bearer(token) });
      expect(foreignRes.statusCode).toBe(404);
      expect(foreignRes.body).toBe(unknownRes.body);
      expect(foreignRes.json()).toMatchObject({ code: 'VET_E_NOT_FOUND' });
      expect((await h.app.inject({ url: `/desk/api/followups/${own.id}`, headers: bearer(token) })).statusCode).toBe(200);

      const patch = (id: string) =>
        h.app.inject({ method: 'PATCH', url: `/desk/api/followups/${id}`, headers: bearer(token), payload: { status: 'done', note: 'not mine', handledBy: 'Mallory' } });
      const foreignPatch = await patch(foreign.id);
      expect(foreignPatch.statusCode).toBe(404);
      expect(foreignPatch.body).toBe((await patch(unknownId)).body);
      const untouched = await h.store.getFollowUp(foreign.id);
      expect(untouched).toMatchObject({ status: 'new', handledBy: null, notes: [] });
    }
    // The operator reaches both.
    expect((await h.app.inject({ url: `/desk/api/followups/${s.riverAppt.id}`, headers: bearer(TOKENS.operator) })).statusCode).toBe(200);
    expect((await h.app.inject({ url: `/desk/api/followups/${s.oakAppt.id}`, headers: bearer(TOKENS.operator) })).statusCode).toBe(200);
  });

  it('recordings stream only for a call of the caller\'s clinic, and only recordings that call has', async () => {
    const h = desk!;
    const get = (token: string, callSid: string, rec: string) => h.app.inject({ url: `/desk/api/recordings/${callSid}/${rec}`, headers: bearer(token) });
    const own = await get(TOKENS[OAK], s.oakEmergency.callSid, s.oakRecording);
    expect(own.statusCode).toBe(200);
    expect(own.headers['content-type']).toBe('audio/mpeg');
    expect(own.body).toBe(`RIFF-audio-${s.oakRecording}`);
    expect(recorded).toEqual([s.oakRecording]);

    const notFound = [
      await get(TOKENS[OAK], s.riverAppt.callSid, s.riverRecording), // Riverside's call
      await get(TOKENS[OAK], s.oakEmergency.callSid, s.riverRecording), // Riverside's recording under Oak's call
      await get(TOKENS[RIVER], s.oakEmergency.callSid, s.oakRecording),
      await get(TOKENS[OAK], s.oakAppt.callSid, s.oakRecording), // a call with no summary
    ];
    for (const res of notFound) {
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({ code: 'VET_E_NOT_FOUND' });
    }
    expect(recorded).toEqual([s.oakRecording]); // Twilio was never asked for the others
    expect((await get(TOKENS.operator, s.riverAppt.callSid, s.riverRecording)).statusCode).toBe(200);
    expect((await get(TOKENS[OAK], s.oakEmergency.callSid, '..%2F..%2Fetc')).statusCode).toBe(400);
  });

  it('live events: a clinic\'s stream hears only its clinic; the operator\'s hears both', async () => {
    const h = desk!;
    const url = await h.app.listen({ port: 0, host: '127.0.0.1' });
    const oak = await openEvents(url, TOKENS[OAK]);
    const river = await openEvents(url, TOKENS[RIVER]);
    const operator = await openEvents(url, TOKENS.operator);
    try {
      await Promise.all([oak, river, operator].map((e) => e.until((t) => t.includes('event: ready'))));
      h.events.publish(RIVER);
      h.events.publish(OAK);
      await operator.until((t) => t.includes(`"clinicId":"${OAK}"`));
      await oak.until((t) => t.includes(`"clinicId":"${OAK}"`));
      await river.until((t) => t.includes(`"clinicId":"${RIVER}"`));
      h.events.publish(OAK);
      await oak.until((t) => t.split('event: followups').length === 3);
      await operator.until((t) => t.split('event: followups').length === 4);
      expect(oak.text()).not.toContain(RIVER);
      expect(river.text()).not.toContain(OAK);
      expect(operator.text()).toContain(RIVER);
      expect(river.text().split('event: followups')).toHaveLength(2);
    } finally {
      for (const e of [oak, river, operator]) e.close();
    }
  });

  it('a recording route exists only when the server can fetch recordings; the detail then has no link', async () => {
    await desk!.close();
    desk = await startDesk({ access: tokenAccess() });
    s = await seed(desk);
    const res = await desk.app.inject({ url: `/desk/api/recordings/${s.oakEmergency.callSid}/${s.oakRecording}`, headers: bearer(TOKENS[OAK]) });
    expect(res.statusCode).toBe(404);
    const detail = await desk.app.inject({ url: `/desk/api/followups/${s.oakEmergency.id}`, headers: bearer(TOKENS[OAK]) });
    expect(detail.json<{ call: { recordings: { href: string | null }[] } }>().call.recordings).toEqual([
      { recordingSid: s.oakRecording, durationSeconds: 83, href: null },
    ]);
    expect((await desk.app.inject({ url: '/desk/api/session', headers: bearer(TOKENS[OAK]) })).json()).toMatchObject({ recordings: false });
  });
});

describe('list, detail and changes', () => {
  let s: Seeded;
  beforeEach(async () => {
    desk = await startDesk({ access: tokenAccess(), fetchRecording: () => Promise.resolve({ body: Buffer.from('x'), contentType: 'text/html' }) });
    s = await seed(desk);
  });

  it('orders open emergencies first, then open follow-ups newest first, then done ones', async () => {
    const h = desk!;
    expect(ids(await list(h, TOKENS[OAK]))).toEqual([s.oakEmergency, s.oakAppt, s.oakMessage, s.oakRefillDone, s.oakOldEmergencyDone].map((f) => f.id));
    // The operator's list across clinics: both open emergencies (newest first) before anything else.
    expect(ids(await list(h, TOKENS.operator, '?status=open'))).toEqual([s.oakEmergency, s.riverEmergency, s.riverAppt, s.oakAppt, s.oakMessage].map((f) => f.id));
  });

  it('filters by status, type, dates and limit', async () => {
    const h = desk!;
    expect(ids(await list(h, TOKENS[OAK], '?status=new'))).toEqual([s.oakEmergency.id, s.oakAppt.id]);
    expect(ids(await list(h, TOKENS[OAK], '?status=in_progress'))).toEqual([s.oakMessage.id]);
    expect(ids(await list(h, TOKENS[OAK], '?status=done'))).toEqual([s.oakRefillDone.id, s.oakOldEmergencyDone.id]);
    expect(ids(await list(h, TOKENS[OAK], '?status=open'))).toEqual([s.oakEmergency.id, s.oakAppt.id, s.oakMessage.id]);
    expect(ids(await list(h, TOKENS[OAK], '?type=emergency'))).toEqual([s.oakEmergency.id, s.oakOldEmergencyDone.id]);
    expect(ids(await list(h, TOKENS[OAK], '?type=emergency&status=new'))).toEqual([s.oakEmergency.id]);
    const iso = (ms: number) => new Date(ms).toISOString();
    // from inclusive, to exclusive: exactly the 30- and 10-minute-old ones.
    const window = `?from=${iso(s.oakEmergency.createdAt)}&to=${iso(s.oakRefillDone.createdAt)}`;
    expect(ids(await list(h, TOKENS[OAK], window))).toEqual([s.oakEmergency.id, s.oakAppt.id]);
    const offset = new Date(s.oakAppt.createdAt + 2 * 3600_000).toISOString().replace('Z', '+02:00'); // the same instant, written with an offset
    expect(ids(await list(h, TOKENS[OAK], `?from=${encodeURIComponent(offset)}`))).toEqual([s.oakAppt.id, s.oakRefillDone.id]);
    const tomorrow = iso(s.now + 86_400_000).slice(0, 10);
    expect(ids(await list(h, TOKENS[OAK], `?to=${tomorrow}`))).toHaveLength(5);
    expect(ids(await list(h, TOKENS[OAK], `?from=${tomorrow}`))).toEqual([]);
    expect(ids(await list(h, TOKENS[OAK], '?limit=2'))).toEqual([s.oakEmergency.id, s.oakAppt.id]);
  });

  it('each list item carries its call summary and delivery state; the detail adds transcript and recordings', async () => {
    const h = desk!;
    const items = (await list(h, TOKENS[OAK])).json<ListBody>().followUps;
    const appt = items.find((f) => f.id === s.oakAppt.id)!;
    expect(appt.deliveries).toEqual([expect.objectContaining({ status: 'failed', label: 'webhook failed: HTTP 500 Internal Server Error (gave up after 24 h)' })]);
    expect(appt.call).toBeNull();
    expect(items.find((f) => f.id === s.oakMessage.id)!.deliveries).toEqual([expect.objectContaining({ status: 'delivered', label: 'sent to clinic system' })]);
    expect(items.find((f) => f.id === s.oakEmergency.id)).toMatchObject({
      clinicName: CLINIC_NAMES[OAK],
      emergency: { sentTo: 'emergencyLine', connected: false },
    });
    expect(items.find((f) => f.id === s.oakEmergency.id)!.call!.summary).toContain('seizures');

    const detail = await h.app.inject({ url: `/desk/api/followups/${s.oakEmergency.id}`, headers: bearer(TOKENS[OAK]) });
    expect(detail.statusCode).toBe(200);
    const body = detail.json<{ followUp: { id: string; petName: string }; call: { transcript: { role: string; text: string }[]; recordings: { href: string }[]; outcome: string } }>();
    expect(body.followUp).toMatchObject({ id: s.oakEmergency.id, petName: 'Biscuit' });
    expect(body.call.outcome).toBe('emergency');
    expect(body.call.transcript[1]).toEqual({ role: 'caller', text: 'Seizures since dawn, my cat Biscuit <b>is</b> shaking' }); // data, for the page to show as text
    expect(body.call.recordings[0]!.href).toBe(`/desk/api/recordings/${s.oakEmergency.callSid}/${s.oakRecording}`);
    expect(detail.body).not.toContain('api.twilio.com'); // Twilio's URL stays on the server
    // A recording whose upstream type is not audio is not served as HTML.
    const rec = await h.app.inject({ url: body.call.recordings[0]!.href, headers: bearer(TOKENS[OAK]) });
    expect(rec.headers['content-type']).toBe('application/octet-stream');
  });

  it('PATCH changes status, records who, appends notes, publishes the change', async () => {
    const h = desk!;
    const published: string[] = [];
    const off = h.events.subscribe((c) => published.push(c));
    const patch = (payload: unknown) => h.app.inject({ method: 'PATCH', url: `/desk/api/followups/${s.oakAppt.id}`, headers: bearer(TOKENS[OAK]), payload: payload as object });
    const started = await patch({ status: 'in_progress', handledBy: '  Sam  ' });
    expect(started.statusCode).toBe(200);
    expect(started.json()).toMatchObject({ id: s.oakAppt.id, status: 'in_progress', handledBy: 'Sam', deliveries: [expect.objectContaining({ status: 'failed' })] });
    const noted = await patch({ note: 'Left a voicemail,\nwill try again at 3.', handledBy: 'Sam' });
    expect(noted.json()).toMatchObject({ status: 'in_progress', notes: [{ by: 'Sam', text: 'Left a voicemail,\nwill try again at 3.' }] });
    expect((await patch({ status: 'done', note: 'Booked Thursday 9:30' })).statusCode).toBe(200);
    const stored = await h.store.getFollowUp(s.oakAppt.id);
    expect(stored).toMatchObject({ status: 'done', handledBy: 'Sam' });
    expect(stored!.notes.map((n) => [n.by, n.text])).toEqual([
      ['Sam', 'Left a voicemail,\nwill try again at 3.'],
      ['staff', 'Booked Thursday 9:30'],
    ]);
    expect(published).toEqual([OAK, OAK, OAK]);
    off();
  });

  it('rejects bad input with 400 VET_E_BAD_REQUEST and a message that says what is expected', async () => {
    const h = desk!;
    const bad = async (res: Promise<LightMyRequestResponse>, mentions: string) => {
      const r = await res;
      expect(r.statusCode, r.body).toBe(400);
      const body = r.json<{ code: string; message: string }>();
      expect(body.code).toBe('VET_E_BAD_REQUEST');
      expect(body.message).toContain(mentions);
    };
    await bad(list(h, TOKENS[OAK], '?status=closed'), 'status must be one of new, in_progress, done, open, all');
    await bad(list(h, TOKENS[OAK], '?status=new&status=done'), 'status');
    await bad(list(h, TOKENS[OAK], '?type=vaccination'), 'type must be one of');
    await bad(list(h, TOKENS[OAK], '?from=2025-02-30'), 'from must be an ISO 8601 date');
    await bad(list(h, TOKENS[OAK], '?from=yesterday'), 'from must be an ISO 8601 date');
    await bad(list(h, TOKENS[OAK], '?to=2025-03-01T10:00:00'), 'with Z or an offset');
    await bad(list(h, TOKENS[OAK], '?from=2025-03-02&to=2025-03-01'), 'from must be before to');
    await bad(list(h, TOKENS[OAK], '?limit=0'), 'limit must be a whole number from 1 to 500');
    await bad(list(h, TOKENS[OAK], '?limit=501'), 'limit');
    await bad(list(h, TOKENS[OAK], '?sort=asc'), 'unknown parameter');
    await bad(list(h, TOKENS.operator, '?clinic=Oak%20Hill'), 'clinic must be a clinic id');

    const patch = (payload: string, contentType = 'application/json', id = s.oakAppt.id) =>
      h.app.inject({ method: 'PATCH', url: `/desk/api/followups/${id}`, headers: { ...bearer(TOKENS[OAK]), 'content-type': contentType }, payload });
    await bad(patch(JSON.stringify({ status: 'closed' })), 'status must be one of new, in_progress, done');
    await bad(patch(JSON.stringify({ note: 'x'.repeat(2001) })), 'note must be at most 2000 characters');
    await bad(patch(JSON.stringify({ note: '   ' })), 'note must not be empty');
    await bad(patch(JSON.stringify({ note: 'a\u0007b' })), 'control characters');
    await bad(patch(JSON.stringify({ status: 'done', handledBy: 'y'.repeat(81) })), 'handledBy must be at most 80 characters');
    await bad(patch(JSON.stringify({ status: 'done', handledBy: 'Sam\nAdmin' })), 'handledBy must be one line');
    await bad(patch(JSON.stringify({ handledBy: 'Sam' })), 'send status, note, or both');
    await bad(patch(JSON.stringify({})), 'send status, note, or both');
    await bad(patch(JSON.stringify({ status: 'done', clinicId: RIVER })), 'unknown field');
    await bad(patch(JSON.stringify({ note: 42 })), 'note must be text');
    await bad(patch(JSON.stringify(['done'])), 'send a JSON object');
    await bad(patch('{"status":'), 'not valid JSON');
    await bad(patch(JSON.stringify({ status: 'done' }), 'application/json', 'x'.repeat(65)), 'The id must be');
    const form = await patch('status=done', 'application/x-www-form-urlencoded');
    expect(form.statusCode).toBe(415); // a form cannot change a follow-up (only JSON)
    const text = await patch('status=done', 'text/plain');
    expect(text.statusCode).toBe(415);
    expect(text.json<Problem>().code).toBe('VET_E_BAD_REQUEST');
    expect(text.json<Problem>().message).toContain('application/json');
    expect(await h.store.getFollowUp(s.oakAppt.id)).toMatchObject({ status: 'new', notes: [] });
    // A 2000-character note is fine.
    expect((await patch(JSON.stringify({ note: 'n'.repeat(2000) }))).statusCode).toBe(200);
  });
});

describe('live events (SSE)', () => {
  it('sends an event after publish, heartbeats, and refuses streams past the cap with 503 VET_E_DESK_BUSY', async () => {
    desk = await startDesk({ access: tokenAccess(), sse: { maxClients: 2, heartbeatMs: 50 } });
    const url = await desk.app.listen({ port: 0, host: '127.0.0.1' });
    const a = await openEvents(url, TOKENS[OAK]);
    const b = await openEvents(url, TOKENS[OAK]);
    try {
      expect(a.status).toBe(200);
      expect(a.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      expect(a.headers.get('cache-control')).toBe('no-store');
      await a.until((t) => t.includes('event: ready'));
      await a.until((t) => t.includes(': heartbeat'));
      const third = await openEvents(url, TOKENS[OAK]);
      expect(third.status).toBe(503);
      expect(third.headers.get('retry-after')).toBe('30');
      await third.ended;
      expect(JSON.parse(third.text())).toMatchObject({ code: 'VET_E_DESK_BUSY' });
      third.close();
      desk.events.publish(OAK);
      await a.until((t) => t.includes(`event: followups\ndata: {"clinicId":"${OAK}"}`));
      await b.until((t) => t.includes('event: followups'));
      // A closed page frees its place and its subscription.
      b.close();
      await waitUntil(() => desk!.events.listenerCount === 1);
      const c = await openEvents(url, TOKENS[OAK]);
      expect(c.status).toBe(200);
      c.close();
    } finally {
      a.close();
      b.close();
    }
    // An open stream does not keep the server from closing.
    await waitUntil(() => desk!.events.listenerCount === 0);
    const still = await openEvents(url, TOKENS.operator);
    await still.until((t) => t.includes('event: ready'));
    await desk.close();
    desk = null;
    await still.ended;
    still.close();
  });

  it('DeskEvents: a throwing listener does not stop the others or reach the publisher', () => {
    const errors: unknown[] = [];
    const events = new DeskEvents({ onError: (e) => errors.push(e) });
    const got: string[] = [];
    const off1 = events.subscribe(() => {
      throw new Error('listener bug');
    });
    const off2 = events.subscribe((c) => got.push(c));
    expect(() => events.publish(OAK)).not.toThrow();
    expect(got).toEqual([OAK]);
    expect(errors).toHaveLength(1);
    off1();
    off2();
    off2();
    expect(events.listenerCount).toBe(0);
  });
});

describe('logs', () => {
  it('carry ids and codes, never caller numbers, names, what callers said, notes or tokens', async () => {
    desk = await startDesk({ access: tokenAccess(), fetchRecording: () => Promise.reject(new Error('twilio said no')) });
    const h = desk;
    const s = await seed(h);
    await list(h, TOKENS[OAK]);
    await list(h, TOKENS.operator, '?status=open&type=emergency');
    await h.app.inject({ url: `/desk/api/followups/${s.oakEmergency.id}`, headers: bearer(TOKENS[OAK]) });
    await h.app.inject({ method: 'PATCH', url: `/desk/api/followups/${s.oakEmergency.id}`, headers: bearer(TOKENS[OAK]), payload: { status: 'in_progress', note: 'Called +15557650202 back about Biscuit', handledBy: 'Whiskers Jones' } });
    await h.app.inject({ url: `/desk/api/followups/${s.riverAppt.id}`, headers: bearer(TOKENS[OAK]) });
    await h.app.inject({ url: '/desk/api/followups', headers: bearer('wrong-token-but-long-enough') });
    await h.app.inject({ method: 'POST', url: '/desk/login', headers: { host: HOST }, payload: { token: TOKENS[RIVER] } });
    await h.app.inject({ method: 'POST', url: '/desk/login', headers: { host: HOST }, payload: { token: 'a-wrong-token-tried-here' } });
    await h.app.inject({ method: 'PATCH', url: `/desk/api/followups/${s.oakAppt.id}`, headers: bearer(TOKENS[OAK]), payload: { note: 'x'.repeat(2001) } });
    const rec = await h.app.inject({ url: `/desk/api/recordings/${s.oakEmergency.callSid}/${s.oakRecording}`, headers: bearer(TOKENS[OAK]) });
    expect(rec.statusCode).toBe(502);
    expect(rec.json()).toMatchObject({ code: 'VET_E_TWILIO_REST' });

    const text = h.logs.join('');
    expect(text).toContain('desk follow-up changed');
    expect(text).toContain(s.oakEmergency.id);
    for (const secret of [...SECRET_WORDS, TOKENS[OAK], TOKENS[RIVER], TOKENS.operator, 'a-wrong-token-tried-here', 'Called ', 'Whiskers Jones', 'xxxxxxxxxx']) {
      expect(text, secret).not.toContain(secret);
    }
    expect(text).not.toMatch(/\+1555765\d{4}/);
  });
});

// ---------------------------------------------------------------------------------------------

async function waitUntil(check: () => boolean, timeoutMs = 3_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface EventStream {
  status: number;
  headers: Headers;
  text(): string;
  until(check: (text: string) => boolean, timeoutMs?: number): Promise<void>;
  ended: Promise<void>;
  close(): void;
}

/** One event stream on its own connection (its own client pool: no idle spare sockets left behind). */
async function openEvents(base: string, token: string): Promise<EventStream> {
  const abort = new AbortController();
  const agent = new Agent({ connections: 1 });
  const res = await fetch(`${base}/desk/api/events`, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal, dispatcher: agent });
  let text = '';
  const waiters = new Set<() => void>();
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const ended = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        for (const w of waiters) w();
      }
    } catch {
      /* aborted */
    }
  })();
  return {
    status: res.status,
    headers: res.headers,
    text: () => text,
    ended,
    until: (check, timeoutMs = 3_000) =>
      new Promise<void>((resolve, reject) => {
        if (check(text)) return resolve();
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`no such event within ${timeoutMs} ms; got:\n${text}`));
        }, timeoutMs);
        const w = () => {
          if (!check(text)) return;
          clearTimeout(timer);
          waiters.delete(w);
          resolve();
        };
        waiters.add(w);
      }),
    close: () => {
      abort.abort();
      void agent.destroy();
    },
  };
}

