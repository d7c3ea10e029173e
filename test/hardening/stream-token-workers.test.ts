/**
 * Several workers (issue #14 part 3): the stream token is stateless, so a Stream URL minted by one
 * engine verifies at another sharing STREAM_TOKEN_SECRET, which takes the call over (calls/handoff.ts)
 * and carries the whole conversation. Forged, expired, other-account and replayed tokens are refused
 * 403 before a waiting-socket slot is taken (single use shared through one TokenUseStore), and each
 * call's upgrade URL (so its X-Twilio-Signature) is its own. Two engines in one process stand for two
 * workers; test/cluster.test.ts runs real worker processes.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryTokenUseStore, StreamTokens } from '../../src/calls/stream-token.js';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import { CPS, QUICK_VET, TENANTS, voiceWebhook, warmPrompts } from '../e2e/conversation-kit.js';
import { FakeTwilio, nextCallerNumber } from '../support/fake-twilio.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { upgradeStatus } from '../support/net.js';
import { restRecorder } from '../support/rest-recorder.js';
import { wsSignature } from '../support/twilio-sign.js';

const SECRET = randomBytes(32).toString('hex');
const newSid = () => `CA${randomBytes(16).toString('hex')}`;

const uses = new MemoryTokenUseStore();
const engines = new Map<string, TestEngine>();
/** Every other engine of the pair releases the call (the cluster primary asks the other workers). */
const handoffFor = (self: string) => ({
  take: (callSid: string) => Promise.resolve([...engines].filter(([name]) => name !== self).map(([, e]) => e.registry.release(callSid)).find((s) => s !== null) ?? null),
});

async function worker(secret: string | null, name?: string): Promise<TestEngine> {
  const engine = await startEngine({
    providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts({ charsPerSecond: CPS }), agent: createFakeAgent() },
    prompts: await warmPrompts(),
    rest: restRecorder().rest,
    env: { TENANTS_DIR: TENANTS, ...(secret ? { STREAM_TOKEN_SECRET: secret } : {}) },
    // One waiting socket at a time: a refused token that took a slot would make the next upgrade 503.
    streamOptions: { maxPendingStreams: 1 },
    ...(name ? { tokenUses: uses, handoff: handoffFor(name) } : {}),
  });
  if (name) engines.set(name, engine);
  return engine;
}

/** A signed upgrade of `/twilio/ws/<token>` on `engine`: 101, or the HTTP status it was refused with. */
const upgrade = (engine: TestEngine, token: string, signedPath = `/twilio/ws/${token}`) =>
  upgradeStatus(`${engine.url.replace(/^http/, 'ws')}/twilio/ws/${token}`, { 'x-twilio-signature': wsSignature(TEST_BASE_URL, TEST_TOKEN, signedPath) });

async function mint(engine: TestEngine): Promise<string> {
  const res = await voiceWebhook(engine.url, newSid());
  if (!res.token) throw new Error(`no stream token in the TwiML (${res.status})`);
  return res.token;
}

let a: TestEngine;
let b: TestEngine;
let loner: TestEngine;
beforeAll(async () => {
  [a, b, loner] = await Promise.all([worker(SECRET, 'a'), worker(SECRET, 'b'), worker(null)]);
});
afterAll(async () => {
  await Promise.all([a?.close(), b?.close(), loner?.close()]);
});

describe('stream tokens across workers', () => {
  it('webhook on worker A, stream on worker B: B takes the call over and carries the conversation; A keeps nothing', async () => {
    const call = await FakeTwilio.call({
      serverUrl: a.url, streamServerUrl: b.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: nextCallerNumber(),
    });
    try {
      await call.waitFor((c) => c.outbound.some((o) => o.message?.event === 'media'), 5_000, 'greeting audio from B');
      expect(b.registry.session(call.callSid)?.streamConnected).toBe(true);
      expect(a.registry.session(call.callSid)).toBeUndefined();
      expect(a.registry.list().map((c) => c.callSid)).not.toContain(call.callSid);
      expect(a.logs.join('')).toContain('call continues at another worker');
      await call.untilQuiet();
      await call.hangUp();
      expect(call.closed?.code).toBe(1000);
      await expect.poll(() => b.registry.recentCalls().find((r) => r.callSid === call.callSid)?.outcome, { timeout: 3_000 }).toBeDefined();
      expect(a.registry.recentCalls().find((r) => r.callSid === call.callSid)).toBeUndefined();
      expect(call.protocolErrors).toEqual([]);
    } finally {
      await call.dispose();
    }
  }, 20_000);

  it('a token minted by one worker verifies at another sharing STREAM_TOKEN_SECRET; not at one with its own key', async () => {
    expect(await upgrade(b, await mint(a))).toBe(101);
    expect(await upgrade(loner, await mint(a))).toBe(403);
    expect(await upgrade(loner, await mint(loner))).toBe(101);
  });

  it('the Stream URL path carries the token, no query string, so every call signs a different upgrade URL', async () => {
    const res = await voiceWebhook(a.url, newSid());
    expect(res.body).toMatch(/<Stream url="wss:\/\/voice\.test\/twilio\/ws\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"/);
    const [t1, t2] = [res.token ?? '', await mint(a)];
    expect(wsSignature(TEST_BASE_URL, TEST_TOKEN, `/twilio/ws/${t1}`)).not.toBe(wsSignature(TEST_BASE_URL, TEST_TOKEN, `/twilio/ws/${t2}`));
    // A captured upgrade signature is worthless for another call's URL.
    expect(await upgrade(a, t2, `/twilio/ws/${t1}`)).toBe(403);
    expect(await upgrade(a, t2)).toBe(101);
  });

  it('replayed, tampered, expired and other-account tokens are refused 403 and take no waiting slot', async () => {
    const token = await mint(a);
    expect(await upgrade(b, token)).toBe(101);
    const [payload = '', mac = ''] = token.split('.');
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), clinicId: 'other' })).toString('base64url');
    const call = { callSid: newSid(), accountSid: TEST_ACCOUNT, clinicId: 'quick-vet' };
    const expired = new StreamTokens({ secret: SECRET, accountSid: null, clinicExists: () => true, now: () => Date.now() - 61_000 }).mint(call);
    const foreign = new StreamTokens({ secret: SECRET, accountSid: null, clinicExists: () => true }).mint({ ...call, accountSid: `AC${'b'.repeat(32)}` });
    for (let round = 0; round < 3; round++) {
      // Single use is shared (one TokenUseStore for both): the replay is refused at either worker.
      expect(await upgrade(b, token)).toBe(403);
      expect(await upgrade(a, token)).toBe(403);
      for (const bad of [`${forged}.${mac}`, `${payload}.${mac.slice(0, -2)}AA`, expired, foreign, 'not-a-token']) {
        expect(await upgrade(a, bad)).toBe(403);
        expect(await upgrade(b, bad)).toBe(403);
      }
    }
    expect(a.logs.join('\n')).toContain('VET_E_STREAM_TOKEN');
    expect(a.logs.join('\n')).not.toContain(mac);
    // With one waiting slot per worker, a fresh genuine token still gets in at either worker.
    expect(await upgrade(a, await mint(b))).toBe(101);
    expect(await upgrade(b, await mint(a))).toBe(101);
  });

  it('the old token-less route is gone', async () => {
    expect(await upgradeStatus(`${a.url.replace(/^http/, 'ws')}/twilio/ws`, { 'x-twilio-signature': wsSignature(TEST_BASE_URL, TEST_TOKEN, '/twilio/ws') })).toBe(404);
  });
});
