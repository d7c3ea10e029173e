/**
 * Several engine instances sharing one real Redis (REDIS_URL; test/support/redis.ts), as behind a
 * load balancer without stickiness (docs/operations.md "Several instances"): a call's webhook on one
 * and its stream on the other; Twilio's callbacks reaching the instance that does not hold the call;
 * a stream token used once across both; failed signatures and
 * wrong inspector tokens on one instance count on the other; a call on one is listed by the other's /twilio/sessions and
 * inspector, and leaves the listing within the heartbeat window when its instance is killed -9; a
 * desk change on one reaches a desk page open on the other.
 *
 * Without redis-server the suite is skipped and says so; under CI (CI set) it fails instead
 * (test/redis/shared-state.test.ts registers the failing test).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import twilio from 'twilio';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import { LOGIN_LIMIT } from '../../src/http/login-limit.js';
import { openStore } from '../../src/store/index.js';
import type { FollowUpStore } from '../../src/store/types.js';
import { CPS, QUICK_VET, TENANTS, voiceWebhook, warmPrompts } from '../e2e/conversation-kit.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_STREAM_TOKEN_SECRET, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { upgradeStatus } from '../support/net.js';
import { wsSignature } from '../support/twilio-sign.js';
import { FakeTwilio, nextCallerNumber } from '../support/fake-twilio.js';
import { REDIS_SKIP_REASON, findRedisServer, startRedis, type RedisServer } from '../support/redis.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const binary = findRedisServer();
const HEARTBEAT_MS = 200;
const MAX_FAILURES = 3;

interface Listed {
  calls: { callSid: string; instance?: string; state: string }[];
  incomplete?: boolean;
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

describe.skipIf(!binary)(binary ? 'several instances sharing Redis' : `several instances sharing Redis (${REDIS_SKIP_REASON})`, () => {
  let redis: RedisServer;
  let store: FollowUpStore;
  let a: TestEngine;
  let b: TestEngine;

  const instance = () =>
    startEngine({
      providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts({ charsPerSecond: CPS }), agent: createFakeAgent() },
      prompts,
      env: {
        TENANTS_DIR: TENANTS, REDIS_URL: redis.url, REDIS_HEARTBEAT_MS: String(HEARTBEAT_MS), RATE_LIMIT_MAX_FAILURES: String(MAX_FAILURES),
        STREAM_TOKEN_SECRET: TEST_STREAM_TOKEN_SECRET,
      },
      followUps: () => ({ store, outbox: null, clinicDelivery: () => null }),
    });
  let prompts: Awaited<ReturnType<typeof warmPrompts>>;

  beforeAll(async () => {
    redis = await startRedis(binary!);
    store = await openStore('sqlite::memory:');
    prompts = await warmPrompts();
    [a, b] = await Promise.all([instance(), instance()]);
  }, 30_000);
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await store?.close();
    await redis?.stop();
  });

  const dial = (engine: TestEngine | { url: string }) =>
    FakeTwilio.call({ serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: nextCallerNumber() });
  const sessions = async (engine: TestEngine): Promise<Listed> => (await fetch(`${engine.url}/twilio/sessions`)).json() as Promise<Listed>;

  it('failed signatures on instance A count on instance B: B answers 429 to the next one', async () => {
    const params = { CallSid: `CA${'1'.repeat(32)}`, AccountSid: TEST_ACCOUNT, From: '+15550001111', To: QUICK_VET };
    const forged = (engine: TestEngine) =>
      fetch(`${engine.url}/twilio/voice`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': 'forged' },
        body: new URLSearchParams(params).toString(),
      }).then((r) => r.status);
    for (let i = 0; i < MAX_FAILURES; i++) expect(await forged(a)).toBe(403);
    expect(await forged(b)).toBe(429);
    expect(await forged(a)).toBe(429);
    // A genuine webhook from the same address is not throttled: only failures count.
    const signature = twilio.getExpectedTwilioSignature(TEST_TOKEN, `${TEST_BASE_URL}/twilio/voice`, params);
    const genuine = await fetch(`${b.url}/twilio/voice`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature }, body: new URLSearchParams(params).toString(),
    });
    expect(genuine.status).toBe(200);
  });

  /** A signed upgrade of `/twilio/ws/<token>` on `engine`: 101, or the HTTP status it was refused with. */
  const upgrade = (engine: TestEngine, token: string) =>
    upgradeStatus(`${engine.url.replace(/^http/, 'ws')}/twilio/ws/${token}`, { 'x-twilio-signature': wsSignature(TEST_BASE_URL, TEST_TOKEN, `/twilio/ws/${token}`) });
  const mint = async (engine: TestEngine) => {
    const res = await voiceWebhook(engine.url, `CA${randomBytes(16).toString('hex')}`);
    if (!res.token) throw new Error(`no stream token in the TwiML (${res.status})`);
    return res.token;
  };

  it('webhook on A, stream on B: B takes the call over through Redis and carries it; A keeps nothing', async () => {
    const call = await FakeTwilio.call({
      serverUrl: a.url, streamServerUrl: b.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: nextCallerNumber(),
    });
    cleanup.push(() => call.dispose());
    await call.waitFor((c) => c.outbound.some((o) => o.message?.event === 'media'), 5_000, 'greeting audio from B');
    expect(b.registry.session(call.callSid)?.streamConnected).toBe(true);
    expect(a.registry.session(call.callSid)).toBeUndefined();
    await expect.poll(async () => (await sessions(a)).calls.find((c) => c.callSid === call.callSid)?.instance, { timeout: 3_000 }).toBe(b.shared?.instanceId);
    await call.hangUp();
    expect(call.closed?.code).toBe(1000);
    expect(call.protocolErrors).toEqual([]);
  }, 20_000);

  it("Twilio's callbacks for a call on A reach it through B: a recording, then the call's completion", async () => {
    const call = await dial(a);
    cleanup.push(() => call.dispose());
    await call.waitFor((c) => c.outbound.some((o) => o.message?.event === 'media'), 5_000, 'greeting audio');
    const callback = (engine: TestEngine, path: string, params: Record<string, string>) =>
      fetch(`${engine.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilio.getExpectedTwilioSignature(TEST_TOKEN, `${TEST_BASE_URL}${path}`, params) },
        body: new URLSearchParams(params).toString(),
      }).then((r) => r.status);
    const recordingSid = `RE${randomBytes(16).toString('hex')}`;
    expect(await callback(b, '/twilio/recording', { CallSid: call.callSid, AccountSid: TEST_ACCOUNT, RecordingSid: recordingSid, RecordingStatus: 'in-progress' })).toBe(200);
    await expect.poll(() => a.registry.session(call.callSid)?.record.recordings.map((r) => `${r.recordingSid}:${r.status}`), { timeout: 2_000 }).toEqual([`${recordingSid}:in-progress`]);
    expect(await callback(b, '/twilio/status', { CallSid: call.callSid, AccountSid: TEST_ACCOUNT, CallStatus: 'completed', SequenceNumber: '3' })).toBe(200);
    await expect.poll(() => a.registry.recentCalls().some((r) => r.callSid === call.callSid), { timeout: 3_000 }).toBe(true);
    expect(a.registry.session(call.callSid)).toBeUndefined();
    expect(b.registry.recentCalls().some((r) => r.callSid === call.callSid)).toBe(false);
  }, 20_000);

  it('a stream token is used once across instances: its replay is refused 403 on both', async () => {
    const token = await mint(a);
    expect(await upgrade(b, token)).toBe(101);
    expect(await upgrade(a, token)).toBe(403);
    expect(await upgrade(b, token)).toBe(403);
    const second = await mint(b);
    expect(await upgrade(a, second)).toBe(101);
    expect(await upgrade(b, second)).toBe(403);
    expect(b.logs.join('')).toContain('"reason":"replayed"');
  }, 20_000);

  it('wrong inspector tokens tried on one instance count on the other: the sign-in limit is shared too', async () => {
    const TOKEN = '9d4b7e1a3c6f8052be7d1c4a9f3e6b08';
    const site = { 'content-type': 'application/x-www-form-urlencoded', host: 'vetline.example.com', origin: 'https://vetline.example.com' };
    const guarded = () =>
      startEngine({
        providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts(), agent: createFakeAgent() },
        prompts,
        dev: false,
        env: { NODE_ENV: 'production', INSPECTOR_TOKEN: TOKEN, TENANTS_DIR: TENANTS, REDIS_URL: redis.url, REDIS_HEARTBEAT_MS: String(HEARTBEAT_MS) },
      });
    const [p, q] = await Promise.all([guarded(), guarded()]);
    cleanup.push(() => Promise.all([p.close(), q.close()]).then(() => undefined));
    const signIn = (e: TestEngine, token: string) =>
      e.app.inject({ method: 'POST', url: '/inspector/login', headers: site, payload: `token=${token}`, remoteAddress: '198.51.100.7' });
    for (let i = 0; i < LOGIN_LIMIT.maxFailures; i++) expect((await signIn(i % 2 ? p : q, 'wrong')).statusCode).toBe(401);
    expect((await signIn(q, TOKEN)).statusCode).toBe(429);
    expect((await signIn(p, TOKEN)).statusCode).toBe(429);
    // Another address is not affected.
    const other = await q.app.inject({ method: 'POST', url: '/inspector/login', headers: site, payload: `token=${TOKEN}`, remoteAddress: '198.51.100.8' });
    expect(other.statusCode).toBe(303);
  }, 30_000);

  it("a call on A is listed by B's /twilio/sessions and B's inspector, naming A; it leaves when it ends", async () => {
    const call = await dial(a);
    cleanup.push(() => call.dispose());
    await call.waitFor((c) => c.outbound.some((o) => o.message?.event === 'media'), 5_000, 'greeting audio');
    await expect.poll(async () => (await sessions(b)).calls.some((c) => c.callSid === call.callSid), { timeout: 3 * HEARTBEAT_MS + 2_000 }).toBe(true);
    const listed = (await sessions(b)).calls.find((c) => c.callSid === call.callSid);
    expect(listed?.instance).toBe(a.shared?.instanceId);
    expect((await sessions(a)).calls.find((c) => c.callSid === call.callSid)?.instance).toBe(a.shared?.instanceId);
    // An inspector page opened on B (after the call started: B asks A for its live calls) lists it
    // live and follows it to its end (relayed summaries over pub/sub, not the heartbeat).
    await call.untilQuiet(); // greeting played: the call waits for the caller, no state changes for now
    const page = new WebSocket(`${b.url.replace(/^http/, 'ws')}/inspector/ws`);
    cleanup.push(() => Promise.resolve(page.terminate()));
    const heard: { type: string; call?: { callSid: string; live: boolean } }[] = [];
    page.on('message', (d: Buffer) => heard.push(JSON.parse(d.toString('utf8')) as (typeof heard)[number]));
    const liveOnB = () => heard.filter((m) => m.type === 'summary' && m.call?.callSid === call.callSid).at(-1)?.call?.live;
    // Asked for at once, not at the call's next change (the silence reprompt, seconds away).
    await expect.poll(liveOnB, { timeout: 1_500 }).toBe(true);
    const inspectorCalls = async () => ((await (await fetch(`${b.url}/inspector/api/calls`)).json()) as { calls: { callSid: string; live: boolean }[] }).calls;
    expect((await inspectorCalls()).find((c) => c.callSid === call.callSid)?.live).toBe(true);
    await call.hangUp();
    await expect.poll(liveOnB, { timeout: 3_000 }).toBe(false);
    expect((await inspectorCalls()).find((c) => c.callSid === call.callSid)?.live).toBe(false);
    await expect.poll(async () => (await sessions(b)).calls.some((c) => c.callSid === call.callSid), { timeout: 3 * HEARTBEAT_MS + 2_000 }).toBe(false);
  }, 20_000);

  it("a desk change on A reaches a desk page open on B (Server-Sent Events)", async () => {
    const abort = new AbortController();
    cleanup.push(() => Promise.resolve(abort.abort()));
    const res = await fetch(`${b.url}/desk/api/events`, { signal: abort.signal });
    expect(res.status).toBe(200);
    const reader: ReadableStreamDefaultReader<Uint8Array> = res.body!.getReader();
    let text = '';
    const until = async (needle: string) => {
      const late = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no ${needle} in ${JSON.stringify(text)} within 3 s`)), 3_000).unref());
      while (!text.includes(needle)) {
        const chunk = await Promise.race([reader.read(), late]);
        if (chunk.done) throw new Error('event stream ended');
        text += Buffer.from(chunk.value).toString('utf8');
      }
    };
    await until('event: ready');
    a.deskEvents!.publish('quick-vet');
    await until('event: followups\ndata: {"clinicId":"quick-vet"}');
  });

  it('an instance killed -9 leaves the listing within 3 heartbeats; its calls with it', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/redis/instance-engine.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', REDIS_URL: redis.url, REDIS_HEARTBEAT_MS: String(HEARTBEAT_MS) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanup.push(() => Promise.resolve(void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'))));
    const started = await readyLine(child);
    const calls = await Promise.all([dial(started), dial(started)]);
    cleanup.push(() => Promise.all(calls.map((c) => c.dispose())).then(() => undefined));
    const fromChild = async () => (await sessions(b)).calls.filter((c) => c.instance === started.instance).map((c) => c.callSid).sort();
    await expect.poll(fromChild, { timeout: 5_000 }).toEqual(calls.map((c) => c.callSid).sort());

    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const killedAt = performance.now();
    await expect.poll(fromChild, { timeout: 3 * HEARTBEAT_MS + 3_000, interval: 25 }).toEqual([]);
    const goneAfterMs = performance.now() - killedAt;
    // At most three beats (its last one may have been just before the kill), plus polling slack.
    expect(goneAfterMs).toBeLessThan(3 * HEARTBEAT_MS + 500);
    // The survivors list nothing stale and nothing incomplete.
    const listed = await sessions(b);
    expect(listed.incomplete).toBeUndefined();
  }, 60_000);

  it('Redis gone: stream upgrades are refused 503 (fail closed), the listing shows this instance only and says so, the metric drops to 0; back: shared again', async () => {
    const call = await dial(a);
    cleanup.push(() => call.dispose());
    await expect.poll(async () => (await sessions(b)).calls.some((c) => c.callSid === call.callSid), { timeout: 3_000 }).toBe(true);
    const connected = async () => /^vetline_redis_connected (\d)$/m.exec(await (await fetch(`${b.url}/metrics`)).text())?.[1];
    expect(await connected()).toBe('1');
    const token = await mint(a);
    const port = redis.port;
    await redis.stop();
    await expect.poll(connected, { timeout: 2_000 }).toBe('0');
    // The token cannot be checked once: refused before the handshake (Twilio plays the key menu).
    expect(await upgrade(b, token)).toBe(503);
    expect(b.logs.join('')).toContain('the stream token could not be checked');
    const degraded = await sessions(b);
    expect(degraded.incomplete).toBe(true);
    expect(degraded.calls.some((c) => c.callSid === call.callSid)).toBe(false);
    expect((await sessions(a)).calls.some((c) => c.callSid === call.callSid)).toBe(true); // A still lists its own
    redis = await startRedis(binary!, { port });
    await expect.poll(connected, { timeout: 6_000 }).toBe('1');
    await expect.poll(async () => (await sessions(b)).calls.some((c) => c.callSid === call.callSid), { timeout: 6_000 }).toBe(true);
    await call.hangUp();
  }, 30_000);
});

async function readyLine(child: ChildProcess): Promise<{ url: string; instance: string }> {
  let out = '';
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`instance did not start:\n${out}`)), 30_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{"url"'));
      if (!line) return;
      clearTimeout(timer);
      resolve(JSON.parse(line) as { url: string; instance: string });
    });
    child.once('exit', () => reject(new Error(`instance exited:\n${out}`)));
  });
}
