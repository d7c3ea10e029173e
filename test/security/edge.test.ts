/**
 * Security at the edge against a real engine (docs/design/reliability.md F14–F16, recipe 6), covering what
 * test/http (fake registry) and test/e2e/stream-safety (replayed /twilio/voice, reused stream token)
 * do not: a forged Host on webhooks and on the stream upgrade, tenant spoofing through every channel
 * at once down to the live call, and a foreign AccountSid on every callback and on `start`.
 */
import twilio from 'twilio';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startLocalEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { FakeTwilio, nextCallerNumber, parseTwiml } from '../support/fake-twilio.js';
import { upgradeStatus } from '../support/net.js';
import { signedForm, wsSignature } from '../support/twilio-sign.js';

const QUICK_VET = '+15550109000';
const CALLER = '+15557654321';
const FOREIGN_ACCOUNT = `AC${'f'.repeat(32)}`;
const EVIL = 'evil.example';

let engine: TestEngine;
const calls: FakeTwilio[] = [];
let sidCounter = 0;
const newCallSid = () => `CA${(0xdead0000 + ++sidCounter).toString(16).padStart(32, '0')}`;

beforeAll(async () => {
  engine = await startLocalEngine();
}, 60_000);

afterEach(async () => {
  await Promise.all(calls.splice(0).map((c) => c.dispose()));
});

afterAll(async () => {
  await engine?.close();
});

const dial = async (opts: Partial<Parameters<typeof FakeTwilio.call>[0]> = {}) => {
  const call = await FakeTwilio.call({
    serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: CALLER, ...opts,
  });
  calls.push(call);
  return call;
};
const voiceParams = (callSid: string, extra: Record<string, string> = {}) => ({
  CallSid: callSid, AccountSid: TEST_ACCOUNT, From: CALLER, To: QUICK_VET, CallStatus: 'ringing', ...extra,
});
const stateOf = (callSid: string) => engine.registry.list().find((c) => c.callSid === callSid)?.state ?? 'ended';

/** The HTTP status a stream upgrade of `path` gets (101 when accepted), with the given signature and Host. */
const upgrade = (path: string, signature: string, host: string) =>
  upgradeStatus(`${engine.url.replace(/^http/, 'ws')}${path}`, { 'x-twilio-signature': signature, host });

/** /twilio/voice for a new call from a caller of its own: the call and the path of its Stream URL (`/twilio/ws/<token>`). */
async function mintStreamPath(): Promise<{ callSid: string; path: string }> {
  const callSid = newCallSid();
  const res = await engine.app.inject(signedForm({ baseUrl: TEST_BASE_URL, token: TEST_TOKEN, path: '/twilio/voice', params: voiceParams(callSid, { From: nextCallerNumber() }) }));
  const url = parseTwiml(res.body, res.statusCode).stream?.url;
  if (!url) throw new Error(`no stream in the TwiML (${res.statusCode})`);
  return { callSid, path: new URL(url).pathname };
}

describe('forged Host (F14)', () => {
  it('a genuine webhook with a forged Host and X-Forwarded-* gets TwiML built from PUBLIC_BASE_URL only', async () => {
    const sid = newCallSid();
    const res = await engine.app.inject(signedForm({
      baseUrl: TEST_BASE_URL, token: TEST_TOKEN, path: '/twilio/voice', params: voiceParams(sid),
      headers: { host: EVIL, 'x-forwarded-host': EVIL, 'x-forwarded-proto': 'http', forwarded: `host=${EVIL};proto=http` },
    }));
    expect(res.statusCode).toBe(200);
    const twiml = parseTwiml(res.body, res.statusCode);
    expect(twiml.stream?.url).toMatch(/^wss:\/\/voice\.test\/twilio\/ws\/[\w-]+\.[\w-]+$/);
    expect(twiml.stream?.attrs.statusCallback).toBe('https://voice.test/twilio/status');
    expect(res.body).not.toContain(EVIL);
    await engine.app.inject(signedForm({ baseUrl: TEST_BASE_URL, token: TEST_TOKEN, path: '/twilio/status', params: { CallSid: sid, AccountSid: TEST_ACCOUNT, CallStatus: 'no-answer' } }));
  });

  it('the stream upgrade is checked against PUBLIC_BASE_URL: signed for the forged host → 403, genuine → 101', async () => {
    const { callSid, path } = await mintStreamPath();
    const forged = twilio.getExpectedTwilioSignature(TEST_TOKEN, `wss://${EVIL}${path}`, {});
    expect(await upgrade(path, forged, EVIL)).toBe(403);
    expect(await upgrade(path, wsSignature(TEST_BASE_URL, TEST_TOKEN, path), EVIL)).toBe(101);
    await engine.app.inject(signedForm({ baseUrl: TEST_BASE_URL, token: TEST_TOKEN, path: '/twilio/status', params: { CallSid: callSid, AccountSid: TEST_ACCOUNT, CallStatus: 'no-answer' } }));
  });
});

describe('tenant spoofing (F16)', () => {
  it('?tenant=, X-Tenant-Id, a form field and <Parameter tenant> all lose to the signed To, down to the live call', async () => {
    const sid = newCallSid();
    const spoof = 'consent-vet';
    const path = `/twilio/voice?tenant=${spoof}&tenantId=${spoof}`;
    const first = await engine.app.inject(signedForm({
      baseUrl: TEST_BASE_URL, token: TEST_TOKEN, path, params: voiceParams(sid, { tenant: spoof, tenantId: spoof }),
      headers: { 'x-tenant-id': spoof, 'x-tenant': spoof },
    }));
    expect(first.statusCode).toBe(200);
    const parameters = parseTwiml(first.body, 200).stream?.parameters;
    expect(parameters?.tenantId).toBe('quick-vet');

    // Twilio connects the stream (the repeated webhook's Stream URL carries the same token) with
    // customParameters claiming the other clinic.
    const call = await dial({ callSid: sid, start: { customParameters: { tenantId: spoof, tenant: spoof } } });
    await call.untilQuiet();
    expect(call.closed).toBeNull();
    expect(call.heardMs()).toBeGreaterThan(500);
    expect(engine.registry.session(sid)?.tenant.id).toBe('quick-vet');
    const listed = await engine.app.inject('/twilio/sessions');
    expect(listed.json<{ calls: { callSid: string; tenantId: string }[] }>().calls.find((c) => c.callSid === sid)?.tenantId).toBe('quick-vet');
  }, 30_000);
});

describe('foreign AccountSid (F16)', () => {
  it('every callback from another account is refused 403 and leaves the live call alone; so is its stream start', async () => {
    const call = await dial();
    await call.untilQuiet();
    const sid = call.callSid;
    const foreign = { CallSid: sid, AccountSid: FOREIGN_ACCOUNT, To: QUICK_VET, From: CALLER };
    const attempts: [string, Record<string, string>][] = [
      ['/twilio/status', { ...foreign, CallStatus: 'completed', SequenceNumber: '1' }],
      ['/twilio/dtmf?attempt=1', { ...foreign, Digits: '0' }],
      ['/twilio/dial', { ...foreign, DialCallStatus: 'completed' }],
      ['/twilio/recording', { ...foreign, RecordingSid: `RE${'1'.repeat(32)}`, RecordingStatus: 'completed', RecordingUrl: 'https://api.twilio.com/x' }],
    ];
    for (const [path, params] of attempts) {
      const res = await call.webhook(path, params);
      expect([path, res.status, res.body]).toEqual([path, 403, JSON.stringify({ code: 'VET_E_ACCOUNT_MISMATCH' })]);
    }
    expect(stateOf(sid)).toBe('listening.waiting');
    expect(engine.registry.session(sid)?.record.recordings).toEqual([]);
    expect(engine.registry.session(sid)?.record.dialStatus).toBeNull();

    // A stream whose `start` names another account: refused 1008, nothing played, no second actor.
    const other = await dial({ start: { accountSid: FOREIGN_ACCOUNT } });
    expect(await other.waitForClose(2_000)).toMatchObject({ code: 1008, reason: 'stream from another account' });
    expect(other.outbound).toEqual([]);
    expect(stateOf(other.callSid)).toBe('connecting');
    await other.statusCallback('completed', 0);
  }, 30_000);
});
