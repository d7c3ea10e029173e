/**
 * Bad input by the thousands, part 2: the Twilio webhooks through `app.inject` (docs/design/reliability.md F6,
 * F14–F16, §4 recipe 6). Random form bodies, forged and random signatures, forged Host and
 * X-Forwarded-*, content types, repeated fields, huge bodies, odd query strings.
 *
 * Properties:
 * - nothing is ever a 5xx, and a 4xx body is empty or `{ code }` with a catalogued VET_E_* code;
 * - nothing unsigned, or signed for another URL, token or body, ever gets a 2xx or reaches the registry;
 * - a request signed like Twilio signs it (the real package) is never refused for its signature and
 *   never throttled; varied, it gets 200 TwiML or the documented 4xx its defect calls for.
 *
 * Seed: FUZZ_SEED (default below), printed.
 */
import fc from 'fast-check';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import twilio from 'twilio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BODY_LIMIT_BYTES } from '../../src/http/app.js';
import { ERROR_CODES } from '../../src/errors.js';
import { TWILIO_PATHS } from '../../src/twilio/twiml.js';
import { sized } from '../support/long.js';
import { formBody, signedForm, type FormParams } from '../support/twilio-sign.js';
import { ACCOUNT, BASE, CLINIC_A_NUMBER, testApp, TOKEN } from '../http/edge-fixtures.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_125);
/** Requests per property; ten times as many under `npm run test:long`. */
const RUNS = sized(1_100, 11_000);
console.info(`[fuzz] webhooks: seed ${SEED} (rerun with FUZZ_SEED=${SEED})`);

type Route = 'voice' | 'dtmf' | 'dial' | 'status' | 'recording';
const ROUTES: readonly Route[] = ['voice', 'dtmf', 'dial', 'status', 'recording'];
/** Routes that answer TwiML; the callbacks answer 200 with an empty body. */
const TWIML_ROUTES = new Set<Route>(['voice', 'dtmf', 'dial']);
const FIELDS = ['CallSid', 'AccountSid', 'To', 'From', 'Digits', 'DialCallStatus', 'CallStatus', 'SequenceNumber', 'StreamEvent',
  'StreamSid', 'StreamError', 'RecordingSid', 'RecordingStatus', 'RecordingUrl', 'RecordingDuration', 'RecordingChannels'];
const IPS = ['203.0.113.1', '203.0.113.2', '198.51.100.7', '2001:db8::1'];

const hex32 = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 32, maxLength: 32 });
/** Text Twilio could send: whole graphemes, so it survives form encoding unchanged (no lone surrogates). */
const anyText = (maxLength: number) => fc.string({ unit: 'grapheme', maxLength });

/** A well-formed Twilio body for each route (docs/design/twilio.md §1). */
const baseParams = (route: Route, sid: string): Record<string, string> => {
  const call = { CallSid: `CA${sid}`, AccountSid: ACCOUNT };
  switch (route) {
    case 'voice': return { ...call, From: '+15550001111', To: CLINIC_A_NUMBER, CallStatus: 'ringing', Direction: 'inbound', ApiVersion: '2010-04-01' };
    case 'dtmf': return { ...call, From: '+15550001111', To: CLINIC_A_NUMBER, Digits: '1' };
    case 'dial': return { ...call, To: CLINIC_A_NUMBER, DialCallStatus: 'no-answer' };
    case 'status': return { ...call, CallStatus: 'completed', SequenceNumber: '3', CallDuration: '42' };
    case 'recording': return { ...call, RecordingSid: `RE${sid}`, RecordingStatus: 'completed', RecordingUrl: 'https://api.twilio.com/r', RecordingDuration: '9', RecordingChannels: '2' };
  }
};

const queryArb = fc.oneof(
  { arbitrary: fc.constant(''), weight: 3 },
  fc.constantFrom('?attempt=1', '?attempt=99', '?attempt=-1', '?last=1', '?last=yes', '?attempt=1&attempt=2', '?%zz=%', '?a=%E0%A4%A', '?=&&=', '?tenant=clinic-b'),
  // Never a bare `?`: HTTP clients (Node's, light-my-request) drop it, so Twilio could not have signed it.
  fc.string({ unit: fc.constantFrom(...'abcXYZ019=&%._~-+'), minLength: 1, maxLength: 24 }).map((q) => `?${q}`),
);

/** Extra fields: odd names included (`__proto__`, empty, brackets), never one a route reads. */
const extraName = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'toString', '', 'a[b]', 'To ', 'callsid', 'X'.repeat(300)), anyText(20))
  .filter((k) => !FIELDS.includes(k));
const extrasArb = fc.dictionary(extraName, anyText(60), { maxKeys: 6 });

// ---- signed requests: one variation each, with the answers it allows ----------------------------

type Allowed = { status: number; code?: string }[];
const ok: Allowed = [{ status: 200 }];
interface Variation { name: string; apply: (p: FormParams) => FormParams; allowed: Allowed; contentType?: string; headers?: Record<string, string> }

const variations: fc.Arbitrary<Variation> = fc.oneof(
  extrasArb.map((extras): Variation => ({ name: 'extra fields', apply: (p) => ({ ...extras, ...p }), allowed: ok })),
  fc.record({ host: anyText(30), xfh: fc.constantFrom('evil.example', 'voice.test:8443', '', 'a,b'), proto: fc.constantFrom('http', 'wss', 'https') })
    .map(({ host, xfh, proto }): Variation => ({
      name: 'forged host headers', apply: (p) => p, allowed: ok,
      headers: { host: host.replace(/[^\x21-\x7e]/g, '') || 'evil.example', 'x-forwarded-host': xfh, 'x-forwarded-proto': proto, 'x-tenant-id': 'clinic-b' },
    })),
  fc.constantFrom('application/x-www-form-urlencoded; charset=utf-8', 'application/x-www-form-urlencoded;charset=UTF-8', ' application/x-www-form-urlencoded ')
    .map((contentType): Variation => ({ name: 'form content type with parameters', apply: (p) => p, allowed: ok, contentType })),
  fc.constantFrom('Application/X-WWW-Form-Urlencoded', 'APPLICATION/X-WWW-FORM-URLENCODED')
    .map((contentType): Variation => ({ name: 'form content type in capitals', apply: (p) => p, allowed: [...ok, { status: 415, code: 'VET_E_BAD_REQUEST' }], contentType })),
  fc.constantFrom('application/json', 'text/plain', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencodedx', 'text/xml', '')
    .map((contentType): Variation => ({ name: 'not a form', apply: (p) => p, allowed: [{ status: 415, code: 'VET_E_BAD_REQUEST' }], contentType })),
  fc.tuple(fc.constantFrom('CallSid', 'AccountSid', 'To', 'Extra'), fc.array(anyText(20), { minLength: 2, maxLength: 4 }))
    .map(([field, values]): Variation => ({
      name: 'repeated field', allowed: [{ status: 400, code: 'VET_E_BAD_REQUEST' }],
      apply: (p) => ({ ...p, [field]: [String(p[field] ?? ''), ...values.map((v, i) => `${v}${i}`)] }),
    })),
  fc.integer({ min: BODY_LIMIT_BYTES + 1, max: 4 * BODY_LIMIT_BYTES }).map((n): Variation => ({
    name: 'body over 16 KiB', apply: (p) => ({ ...p, Padding: 'x'.repeat(n) }), allowed: [{ status: 413, code: 'VET_E_BODY_TOO_LARGE' }],
  })),
  fc.integer({ min: 1_000, max: BODY_LIMIT_BYTES - 2_000 }).map((n): Variation => ({
    name: 'large body under the limit', apply: (p) => ({ ...p, Padding: 'y'.repeat(n) }), allowed: ok,
  })),
  hex32.map((h): Variation => ({
    name: 'foreign AccountSid', apply: (p) => ({ ...p, AccountSid: `AC${h.replace(/^a/, 'b')}` }),
    allowed: [{ status: 403, code: 'VET_E_ACCOUNT_MISMATCH' }],
  })),
  fc.tuple(fc.constantFrom('CallSid', 'AccountSid', 'To', 'From', 'Digits', 'DialCallStatus', 'CallStatus', 'SequenceNumber', 'RecordingSid',
    'RecordingStatus', 'RecordingUrl', 'StreamEvent', 'StreamError'), fc.oneof(anyText(80), fc.constantFrom('', ' ', '0', '-1', 'stream-error', 'completed', 'null')),
  fc.boolean()).map(([field, value, drop]): Variation => ({
    name: drop ? 'field missing' : 'field garbage',
    apply: (p) => (drop ? Object.fromEntries(Object.entries(p).filter(([k]) => k !== field)) : { ...p, [field]: value }),
    // Whatever the field, the answer is a call answer, a bad request, or (a broken AccountSid) an account refusal.
    allowed: [...ok, { status: 400, code: 'VET_E_BAD_REQUEST' }, { status: 403, code: 'VET_E_ACCOUNT_MISMATCH' }],
  })),
);

const signedArb = fc.record({
  route: fc.constantFrom(...ROUTES), sid: hex32, query: queryArb, variation: variations, ip: fc.constantFrom(...IPS),
});

// ---- forged requests: never a 2xx --------------------------------------------------------------

const pathArb = fc.oneof(
  { arbitrary: fc.tuple(fc.constantFrom(...ROUTES), queryArb).map(([r, q]) => TWILIO_PATHS[r] + q), weight: 6 },
  fc.constantFrom('/twilio/voice/', '/TWILIO/VOICE', '//twilio/voice', '/twilio/voice/..', '/twilio/', '/', '/twilio/ws', '/twilio/voice%00', '/twilio/%76oice'),
);
/** A form body of anything: real field names and odd ones, strings and repeats, sometimes huge. */
const formArb: fc.Arbitrary<FormParams> = fc.oneof(
  { arbitrary: fc.tuple(fc.constantFrom(...ROUTES), hex32, extrasArb).map(([r, sid, extras]) => ({ ...extras, ...baseParams(r, sid) })), weight: 3 },
  fc.dictionary(fc.oneof(fc.constantFrom(...FIELDS), extraName), fc.oneof(anyText(40), fc.array(anyText(10), { maxLength: 3 })), { maxKeys: 10 }),
  fc.integer({ min: BODY_LIMIT_BYTES - 100, max: 3 * BODY_LIMIT_BYTES }).map((n) => ({ CallSid: `CA${'1'.repeat(32)}`, Big: 'z'.repeat(n) })),
);
type Forgery = (path: string, params: FormParams) => { signature?: string; signatures?: string[]; headers?: Record<string, string> };
const sign = (url: string, params: FormParams, token = TOKEN) => twilio.getExpectedTwilioSignature(token, url, params);
const forgeries: fc.Arbitrary<{ name: string; forge: Forgery }> = fc.oneof(
  fc.constant({ name: 'no signature', forge: () => ({}) }),
  fc.constantFrom('', ' ', 'null', '=', 'A'.repeat(28), `${'B'.repeat(27)}=`, 'L/OH5YylLD5NRKLltdqwSvS0BnU=')
    .map((s) => ({ name: 'junk signature', forge: () => ({ signature: s }) })),
  fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'), minLength: 27, maxLength: 27 })
    .map((s) => ({ name: 'random well-formed signature', forge: () => ({ signature: `${s}=` }) })),
  fc.string({ minLength: 1, maxLength: 40 }).filter((t) => t !== TOKEN).map((t) => ({
    name: 'signed with another token', forge: (path: string, p: FormParams) => ({ signature: sign(BASE + path, p, t) }),
  })),
  fc.constantFrom('https://evil.example', 'http://voice.test', 'wss://voice.test', 'https://voice.test.evil.example', 'https://VOICE.test.').map((origin) => ({
    name: 'signed for another origin, with matching Host/X-Forwarded-*',
    forge: (path: string, p: FormParams) => {
      const host = origin.replace(/^\w+:\/\//, '');
      return { signature: sign(origin + path, p), headers: { host, 'x-forwarded-host': host, 'x-forwarded-proto': origin.split(':')[0] ?? 'https' } };
    },
  })),
  fc.constantFrom('/', '/x', '?x=1').map((suffix) => ({
    name: 'signed for another path', forge: (path: string, p: FormParams) => ({ signature: sign(BASE + path + suffix, p) }),
  })),
  fc.constant({
    name: 'a valid signature sent twice (repeated header)',
    forge: (path: string, p: FormParams): { signatures: string[] } => ({ signatures: [sign(BASE + path, p), sign(BASE + path, p)] }),
  }),
  fc.tuple(fc.constantFrom('Extra', 'CallSid', 'To'), anyText(12)).map(([field, value]) => ({
    name: 'signed over other fields', forge: (path: string, p: FormParams) => ({ signature: sign(BASE + path, { ...p, [field]: `${value}#` }) }),
  })),
);
const forgedArb = fc.record({
  method: fc.oneof({ arbitrary: fc.constant('POST' as const), weight: 8 }, fc.constantFrom('GET' as const, 'PUT' as const)),
  path: pathArb,
  params: formArb,
  forgery: forgeries,
  contentType: fc.oneof({ arbitrary: fc.constant('application/x-www-form-urlencoded'), weight: 6 }, fc.constantFrom('application/json', 'text/plain', 'APPLICATION/X-WWW-FORM-URLENCODED', '')),
  ip: fc.constantFrom(...IPS),
});

// ---- the properties ------------------------------------------------------------------------------

/** No 5xx; a 4xx answers an empty body or `{ code }` with a catalogued code, and nothing else. */
function checkHygiene(res: LightMyRequestResponse): void {
  expect(res.statusCode).toBeLessThan(500);
  if (res.statusCode < 400) return;
  if (res.body === '') {
    expect(res.statusCode).toBe(403); // the signature refusal says nothing at all
    return;
  }
  const body = res.json<Record<string, unknown>>();
  expect(Object.keys(body)).toEqual(['code']);
  expect(Object.keys(ERROR_CODES)).toContain(body.code);
}

describe('webhooks under fuzz (app.inject)', () => {
  let t: Awaited<ReturnType<typeof testApp>>;
  const tally = { forged: 0, signed: 0, statuses: {} as Record<string, number> };
  const count = (kind: 'forged' | 'signed', res: LightMyRequestResponse) => {
    tally[kind]++;
    const key = `${kind} ${res.statusCode}`;
    tally.statuses[key] = (tally.statuses[key] ?? 0) + 1;
  };

  beforeAll(async () => {
    // A configured account (so AccountSid is checked) and a tight limiter, so forged floods get
    // throttled and banned while the signed requests below come from the same addresses.
    t = await testApp({ accountSid: ACCOUNT, rateLimit: { maxFailuresPerMinute: 5, banMinutes: 1 } });
  });
  afterAll(async () => {
    await t.app.close();
  });

  const registryTouches = () => t.registry.opened.length + t.registry.statuses.length + t.registry.recordings.length + t.registry.dials.length;

  it('forged, unsigned or mis-signed: never a 2xx or 5xx, never reaches the registry', async () => {
    const before = registryTouches();
    await fc.assert(fc.asyncProperty(forgedArb, async ({ method, path, params, forgery, contentType, ip }) => {
      const forged = forgery.forge(path, params);
      const signature = forged.signatures ?? forged.signature;
      const req: InjectOptions = {
        method, url: path, remoteAddress: ip,
        headers: { ...(contentType ? { 'content-type': contentType } : {}), ...(signature !== undefined ? { 'x-twilio-signature': signature } : {}), ...forged.headers },
        ...(method === 'GET' ? {} : { payload: formBody(params) }),
      };
      const res = await t.app.inject(req);
      count('forged', res);
      checkHygiene(res);
      expect([400, 403, 404, 413, 415, 429], `${forgery.name} ${method} ${path}: ${res.statusCode} ${res.body}`).toContain(res.statusCode);
    }), { seed: SEED, numRuns: RUNS });
    expect(registryTouches()).toBe(before);
    // The limiter was exercised: floods from one address get throttled, then banned.
    expect(tally.statuses['forged 429']).toBeGreaterThan(0);
  });

  it('signed like Twilio: never refused for the signature or throttled; 200 or the documented 4xx for its variation', async () => {
    await fc.assert(fc.asyncProperty(signedArb, async ({ route, sid, query, variation, ip }) => {
      const params = variation.apply(baseParams(route, sid));
      const base = signedForm({ baseUrl: BASE, token: TOKEN, path: TWILIO_PATHS[route] + query, params, remoteAddress: ip });
      const res = await t.app.inject({
        ...base,
        headers: { ...base.headers, ...variation.headers, ...(variation.contentType !== undefined ? { 'content-type': variation.contentType } : {}) },
      });
      count('signed', res);
      checkHygiene(res);
      const what = `${variation.name} on ${route}${query}: ${res.statusCode} ${res.body.slice(0, 200)}`;
      const code = res.statusCode >= 400 ? res.json<{ code?: string }>().code : undefined;
      expect(variation.allowed.some((a) => a.status === res.statusCode && a.code === code), what).toBe(true);
      if (res.statusCode === 200) {
        if (TWIML_ROUTES.has(route)) {
          expect(res.headers['content-type'], what).toMatch(/^text\/xml/);
          expect(res.body, what).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?><Response>[\s\S]*<\/Response>$/);
        } else {
          expect(res.body, what).toBe('');
        }
      }
    }), { seed: SEED, numRuns: RUNS });
  });

  it(`counts: ${(2 * RUNS).toLocaleString('en-US')} requests (docs/reliability.md)`, () => {
    expect(tally.forged).toBeGreaterThanOrEqual(RUNS);
    expect(tally.signed).toBeGreaterThanOrEqual(RUNS);
  });
});
