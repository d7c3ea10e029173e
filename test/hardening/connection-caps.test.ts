/**
 * The cap on /twilio/ws sockets awaiting `start`, over real sockets (docs/design/reliability.md F5,
 * F16): as many per process as it holds calls (MAX_CALLS), from any mix of addresses; beyond that
 * the upgrade is answered 503 before the handshake. A slot comes back when its socket starts,
 * closes or times out; started calls never hold one. Loopback aliases (127.0.0.2, …) stand in for clients.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import { createStreamCounters, type StreamCounters } from '../../src/twilio/stream-socket.js';
import { CPS, QUICK_VET, TENANTS, voiceWebhook, warmPrompts } from '../e2e/conversation-kit.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { FakeTwilio, nextCallerNumber, parseTwiml } from '../support/fake-twilio.js';
import { restRecorder } from '../support/rest-recorder.js';
import { wsSignature } from '../support/twilio-sign.js';

const opened = new Set<WebSocket>();
/** The call each upgraded socket's token was minted for (a token names one call). */
const callOf = new WeakMap<WebSocket, { callSid: string; parameters: Record<string, string> }>();

async function engineWith(counters: StreamCounters, startTimeoutMs: number, maxPendingStreams?: number): Promise<TestEngine> {
  return startEngine({
    providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts({ charsPerSecond: CPS }), agent: createFakeAgent() },
    prompts: await warmPrompts(),
    rest: restRecorder().rest,
    env: { TENANTS_DIR: TENANTS },
    streamOptions: { counters, startTimeoutMs, ...(maxPendingStreams ? { maxPendingStreams } : {}) },
  });
}

/**
 * Mint a call on /twilio/voice, then open its signed upgrade (`/twilio/ws/<token>`) from `from`: the
 * open socket, or the HTTP status it was refused with.
 */
async function upgrade(engine: TestEngine, from: string): Promise<WebSocket | number> {
  const callSid = `CA${randomBytes(16).toString('hex')}`;
  const res = await voiceWebhook(engine.url, callSid);
  const parameters = parseTwiml(res.body, res.status).stream?.parameters;
  if (!parameters || !res.token) throw new Error(`no stream in the TwiML (${res.status})`);
  const path = `/twilio/ws/${res.token}`;
  const ws = new WebSocket(`${engine.url.replace(/^http/, 'ws')}${path}`, {
    headers: { 'x-twilio-signature': wsSignature(TEST_BASE_URL, TEST_TOKEN, path) },
    localAddress: from,
  });
  opened.add(ws);
  callOf.set(ws, { callSid, parameters });
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function accepted(engine: TestEngine, from: string): Promise<WebSocket> {
  const out = await upgrade(engine, from);
  if (typeof out === 'number') throw new Error(`upgrade from ${from} refused with ${out}`);
  return out;
}

/** Start the stream of the call `ws` was minted for; resolves once the engine holds the stream. */
async function startCall(engine: TestEngine, ws: WebSocket): Promise<string> {
  const call = callOf.get(ws);
  if (!call) throw new Error('socket without a minted call');
  const { callSid, parameters } = call;
  const streamSid = `MZ${randomBytes(16).toString('hex')}`;
  ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
  ws.send(JSON.stringify({
    event: 'start', sequenceNumber: '1', streamSid,
    start: { accountSid: TEST_ACCOUNT, streamSid, callSid, tracks: ['inbound'], customParameters: parameters,
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
  }));
  await expect.poll(() => engine.registry.session(callSid)?.streamConnected, { timeout: 3_000, interval: 10 }).toBe(true);
  return callSid;
}

/** Drop a socket and wait until the server has seen it go (its slot is then free). */
async function drop(engine: TestEngine, ws: WebSocket): Promise<void> {
  const before = engine.app.websocketServer.clients.size;
  ws.terminate();
  await expect.poll(() => engine.app.websocketServer.clients.size, { timeout: 3_000, interval: 10 }).toBeLessThan(before);
}

/** A well-behaved call end to end: greeting audio arrives, hang-up closes 1000. */
async function genuineCallWorks(engine: TestEngine): Promise<void> {
  const call = await FakeTwilio.call({
    serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: nextCallerNumber(),
  });
  try {
    await call.waitFor((c) => c.outbound.some((o) => o.message?.event === 'media'), 5_000, 'greeting audio');
    expect(call.protocolErrors).toEqual([]);
    await call.hangUp();
    expect(call.closed?.code).toBe(1000);
  } finally {
    await call.dispose();
  }
}

afterEach(() => {
  for (const ws of opened) ws.terminate();
  opened.clear();
});

describe('sockets awaiting start: as many as the process holds calls, whatever their address', () => {
  let engine: TestEngine;
  const counters = createStreamCounters();

  beforeAll(async () => {
    engine = await engineWith(counters, 30_000); // idle sockets stay pending for the whole test
  });
  afterAll(async () => {
    await engine.close();
  });

  it('a burst of 40 answered calls from one address all wait for their start, then all start (F16)', async () => {
    // One of Twilio's media servers, its 40 calls' `start`s late behind a busy event loop: every
    // socket passed the signature and its call's token, so none is refused.
    const waiting: WebSocket[] = [];
    for (let i = 0; i < 40; i++) waiting.push(await accepted(engine, '127.0.0.1'));
    expect(counters.upgradesRefused).toEqual({ total: 0 });
    const live: string[] = [];
    for (const ws of waiting) live.push(await startCall(engine, ws));
    expect(live.map((sid) => engine.registry.session(sid)?.streamConnected)).toEqual(Array(40).fill(true));
    await genuineCallWorks(engine);
  }, 30_000);
});

describe('a lower cap (maxPendingStreams 4)', () => {
  let engine: TestEngine;
  const counters = createStreamCounters();

  beforeAll(async () => {
    engine = await engineWith(counters, 30_000, 4); // idle sockets stay pending for the whole test
  });
  afterAll(async () => {
    await engine.close();
  });

  it('the 5th waiting socket gets 503 whatever its address; a start or a close frees a slot; started calls never hold one', async () => {
    const [a, b, c, d] = [
      await accepted(engine, '127.0.0.1'), await accepted(engine, '127.0.0.1'),
      await accepted(engine, '127.0.0.2'), await accepted(engine, '127.0.0.2'),
    ];
    expect(await upgrade(engine, '127.0.0.1')).toBe(503);
    expect(await upgrade(engine, '127.0.0.3')).toBe(503);
    expect(counters.upgradesRefused).toEqual({ total: 2 });

    // One starts its call: its slot is free, for any address.
    const live = [await startCall(engine, a)];
    const e = await accepted(engine, '127.0.0.3');
    expect(await upgrade(engine, '127.0.0.1')).toBe(503);
    // One leaves without starting: its slot is free too.
    await drop(engine, b);
    live.push(await startCall(engine, await accepted(engine, '127.0.0.1')));
    expect(counters.upgradesRefused).toEqual({ total: 3 });
    expect([c, d, e].map((ws) => ws.readyState)).toEqual([WebSocket.OPEN, WebSocket.OPEN, WebSocket.OPEN]);
    expect(live.map((sid) => engine.registry.session(sid)?.streamConnected)).toEqual([true, true]);
  }, 15_000);
});

describe('a socket that never starts gives its slot back at the start timeout', () => {
  let engine: TestEngine;
  const counters = createStreamCounters();

  beforeAll(async () => {
    engine = await engineWith(counters, 300, 4);
  });
  afterAll(async () => {
    await engine.close();
  });

  it('four silent sockets fill a cap of four; after their 1008 upgrades are accepted again', async () => {
    const silent = [];
    for (let i = 0; i < 4; i++) silent.push(await accepted(engine, '127.0.0.3'));
    const closes = silent.map((ws) => new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code))));
    expect(await upgrade(engine, '127.0.0.3')).toBe(503);
    expect(await Promise.all(closes)).toEqual([1008, 1008, 1008, 1008]);
    expect(counters.startTimeouts).toBe(4);
    await genuineCallWorks(engine); // from 127.0.0.1
    expect(await accepted(engine, '127.0.0.3')).toBeInstanceOf(WebSocket);
    expect(counters.upgradesRefused).toEqual({ total: 1 });
  }, 15_000);
});
