/**
 * Outbound backpressure over real sockets (docs/design/reliability.md F13): a Twilio socket that stops reading
 * must not make the process buffer without bound. Sends are dropped (and counted) while the socket's
 * `bufferedAmount` is over the cap; still over it `backpressureCloseMs` after the first drop, the
 * stream is closed 1013 and the call ends. Other streams are unaffected.
 *
 * The kernel absorbs a stalled peer's data before `bufferedAmount` moves: on loopback TCP about 4 MB
 * (the send buffer autotunes), on a Unix socket about 100 KB. So the socket-level case floods a TCP
 * socket as fast as it can, and the engine-level case, which sends real-time audio (~12 kB/s), runs
 * the stalled call over a Unix socket handed to the engine's HTTP server (same parser, upgrade and
 * route as TCP). Figures are printed as `[backpressure] …`.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import type { AddressInfo } from 'node:net';
import { loadTenants } from '../../src/config/tenants.js';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { PromptCache } from '../../src/providers/tts/prompt-cache.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import { mediaMessage } from '../../src/twilio/media-codec.js';
import {
  attachMediaStream, createStreamCounters, MEDIA_STREAM_WS_OPTIONS, type MediaStreamHandle,
} from '../../src/twilio/stream-socket.js';
import { QUICK_VET, TENANTS, voiceWebhook } from '../e2e/conversation-kit.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { FakeTwilio, nextCallerNumber, parseTwiml } from '../support/fake-twilio.js';
import { restRecorder } from '../support/rest-recorder.js';
import { wsSignature } from '../support/twilio-sign.js';

const MiB = 1024 * 1024;
/** ws frame header, server to client (unmasked), for payloads up to 64 KiB. */
const WS_HEADER = 4;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const startFrame = (callSid: string, streamSid: string, customParameters: Record<string, string>) => JSON.stringify({
  event: 'start', sequenceNumber: '1', streamSid,
  start: { accountSid: TEST_ACCOUNT, streamSid, callSid, tracks: ['inbound'], customParameters,
    mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
});
const inboundMedia = (streamSid: string, n: number) => JSON.stringify({
  event: 'media', sequenceNumber: String(n + 2), streamSid,
  media: { track: 'inbound', chunk: String(n), timestamp: String(n * 20), payload: Buffer.alloc(160, 0xff).toString('base64') },
});
/** Stop reading: the client's TCP/Unix socket is paused, so the peer's data piles up in the kernel, then in the server. */
const stopReading = (ws: WebSocket) => (ws as unknown as { _socket: Socket })._socket.pause(); // ws keeps its socket private
const memory = () => {
  const m = process.memoryUsage();
  return { rss: m.rss, arrayBuffers: m.arrayBuffers };
};
const mb = (bytes: number) => `${(bytes / MiB).toFixed(1)} MB`;

const clients = new Set<WebSocket>();
afterEach(() => {
  for (const ws of clients) ws.terminate();
  clients.clear();
});

describe('attachMediaStream: a peer that stops reading (loopback TCP, flooded)', () => {
  const CAP = 64 * 1024;
  const STALL_MS = 1_500;
  let wss: WebSocketServer;
  let url = '';
  const counters = createStreamCounters();
  type Stream = { handle: MediaStreamHandle; socket: WebSocket; closed: { code: number; atMs: number } | null };
  const streams: Stream[] = [];

  beforeAll(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...MEDIA_STREAM_WS_OPTIONS });
    wss.on('connection', (socket) => {
      const entry: Stream = {
        socket,
        closed: null,
        handle: attachMediaStream(socket, {
          onStart: () => 'accept',
          onClose: (code) => void (entry.closed = { code, atMs: performance.now() }),
        }, { counters, maxBufferedBytes: CAP, backpressureCloseMs: STALL_MS, idleTimeoutMs: 0 }),
      };
      streams.push(entry);
    });
    await new Promise<void>((resolve) => wss.once('listening', resolve));
    url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });

  async function connect(streamSid: string): Promise<{ ws: WebSocket; received: () => number }> {
    const ws = new WebSocket(url);
    clients.add(ws);
    let received = 0;
    ws.on('message', () => received++);
    ws.on('error', () => undefined); // the stalled one is terminated by the server
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.send(startFrame(`CA${randomBytes(16).toString('hex')}`, streamSid, {}));
    return { ws, received: () => received };
  }

  it('buffers at most the cap plus one frame, drops the rest, closes 1013 after the stall window; a healthy stream keeps every frame', async () => {
    const stalledSid = `MZ${'1'.repeat(32)}`;
    const healthySid = `MZ${'2'.repeat(32)}`;
    const stalled = await connect(stalledSid);
    const healthy = await connect(healthySid);
    await expect.poll(() => streams.filter((s) => s.handle.state === 'started').length).toBe(2);
    const [s, h] = streams as [Stream, Stream];
    stopReading(stalled.ws);

    const frame = mediaMessage(stalledSid, new Uint8Array(800).fill(0x7f)); // 100 ms, the player's largest message
    const healthyFrame = mediaMessage(healthySid, new Uint8Array(160).fill(0x7f));
    const before = memory();
    let peak = before;
    let attempted = 0;
    let sentOk = 0;
    let healthySent = 0;
    let maxBuffered = 0;
    let firstDropAt = 0;
    let healthyDueAt = 0;
    // Flood the stalled stream (200 frames a millisecond, ~230 MB/s); the healthy one gets a 20 ms frame every 20 ms.
    while (!s.closed) {
      for (let i = 0; i < 200 && !s.closed; i++) {
        attempted++;
        if (s.handle.send(frame)) sentOk++;
        else if (!firstDropAt) firstDropAt = performance.now();
        maxBuffered = Math.max(maxBuffered, s.socket.bufferedAmount);
      }
      if (performance.now() >= healthyDueAt) {
        healthyDueAt = performance.now() + 20;
        if (h.handle.send(healthyFrame)) healthySent++;
      }
      const m = memory();
      peak = { rss: Math.max(peak.rss, m.rss), arrayBuffers: Math.max(peak.arrayBuffers, m.arrayBuffers) };
      await sleep(1);
    }
    const closeMs = s.closed.atMs - firstDropAt;
    const dropped = counters.sendsDropped.backpressure;
    console.info(`[backpressure] socket level: ${attempted} sends of ${frame.length} B tried (${mb(attempted * frame.length)}), ` +
      `${sentOk} sent (${mb(sentOk * frame.length)}, mostly into the kernel), ${dropped} dropped; max bufferedAmount ${maxBuffered} B ` +
      `(cap ${CAP}); 1013 after ${Math.round(closeMs)} ms of stall; peak growth rss ${mb(peak.rss - before.rss)}, arrayBuffers ${mb(peak.arrayBuffers - before.arrayBuffers)}`);

    expect(s.closed.code).toBe(1013);
    expect(counters.backpressureCloses).toBe(1);
    expect(maxBuffered).toBeGreaterThan(CAP); // the socket really was stalled: the cap was reached…
    expect(maxBuffered).toBeLessThanOrEqual(CAP + frame.length + WS_HEADER); // …and never exceeded by more than one frame
    expect(dropped).toBe(attempted - sentOk);
    expect(dropped).toBeGreaterThan(1_000);
    // Without the cap the process would hold every byte tried; the bound must mean something.
    expect(attempted * frame.length).toBeGreaterThan(64 * MiB);
    expect(peak.arrayBuffers - before.arrayBuffers).toBeLessThan(16 * MiB);
    expect(peak.rss - before.rss).toBeLessThan(64 * MiB);
    expect(closeMs).toBeGreaterThanOrEqual(STALL_MS - 5);
    expect(closeMs).toBeLessThan(STALL_MS + 2_000);
    expect(s.handle.send(frame)).toBe(false); // after the close: dropped as closed
    expect(counters.sendsDropped.closed).toBe(1);
    // The server lets go of the stalled socket at the close grace (1 s): its buffers go with it.
    await expect.poll(() => s.socket.readyState, { timeout: 3_000 }).toBe(WebSocket.CLOSED);

    // The healthy stream lost nothing and is still open.
    await expect.poll(healthy.received, { timeout: 3_000 }).toBe(healthySent);
    expect(healthySent).toBeGreaterThan(10);
    expect(h.handle.state).toBe('started');
    expect(h.closed).toBeNull();
    expect(h.handle.send(healthyFrame)).toBe(true);
  }, 30_000);

  it('a peer that catches up in time is not closed: the stall window restarts', async () => {
    const sid = `MZ${'3'.repeat(32)}`;
    const peer = await connect(sid);
    await expect.poll(() => streams.at(-1)?.handle.state).toBe('started');
    const s = streams.at(-1)!;
    const socket = (peer.ws as unknown as { _socket: Socket })._socket; // ws keeps its socket private
    socket.pause();
    const frame = mediaMessage(sid, new Uint8Array(800).fill(0x7f));
    const backpressureCloses = counters.backpressureCloses;
    const flood = async (untilMs: number) => {
      while (performance.now() < untilMs && !s.closed) {
        for (let i = 0; i < 200; i++) s.handle.send(frame);
        await sleep(1);
      }
    };
    // Stalled for about half the window, then reads everything; stalled again for half a window.
    await flood(performance.now() + 300);
    while (s.socket.bufferedAmount <= CAP) await flood(performance.now() + 50);
    await sleep(STALL_MS / 2);
    socket.resume();
    await expect.poll(() => s.socket.bufferedAmount, { timeout: 5_000 }).toBe(0);
    expect(s.handle.send(frame)).toBe(true); // disarms the stall timer
    socket.pause();
    await flood(performance.now() + STALL_MS * 0.75);
    expect(s.closed).toBeNull();
    expect(counters.backpressureCloses).toBe(backpressureCloses);
    s.handle.close(1000, 'done');
  }, 20_000);
});

describe('engine: a call whose Twilio socket stops reading mid-prompt (Unix socket), next to a healthy call', () => {
  const CAP = 16 * 1024;
  const STALL_MS = 1_000;
  const counters = createStreamCounters();
  let engine: TestEngine;
  let side: Server;
  const unixPath = join(tmpdir(), `vetline-backpressure-${process.pid}-${randomBytes(4).toString('hex')}.sock`);

  beforeAll(async () => {
    // One character per second: the 26-character greeting plays for 26 s, longer than the test needs.
    const prompts = new PromptCache(createFakeTts({ charsPerSecond: 1 }));
    await prompts.warm((await loadTenants(TENANTS)).all());
    engine = await startEngine({
      providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts({ charsPerSecond: 1 }), agent: createFakeAgent() },
      prompts,
      rest: restRecorder().rest,
      env: { TENANTS_DIR: TENANTS },
      streamOptions: { counters, maxBufferedBytes: CAP, backpressureCloseMs: STALL_MS },
    });
    side = createServer((socket) => engine.app.server.emit('connection', socket));
    await new Promise<void>((resolve) => side.listen(unixPath, resolve));
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => side.close(() => resolve()));
    await engine.close();
    await rm(unixPath, { force: true });
  });

  it('buffered bytes stay at the cap, frames are dropped and counted, the call ends 1013 with an outcome; the other call plays on', async () => {
    const healthy = await FakeTwilio.call({
      serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: nextCallerNumber(),
    });
    const callSid = `CA${randomBytes(16).toString('hex')}`;
    const streamSid = `MZ${randomBytes(16).toString('hex')}`;
    const minted = await voiceWebhook(engine.url, callSid);
    const parameters = parseTwiml(minted.body, minted.status).stream?.parameters ?? {};
    const path = `/twilio/ws/${minted.token ?? ''}`;
    const ws = new WebSocket(`ws+unix:${unixPath}:${path}`, {
      headers: { 'x-twilio-signature': wsSignature(TEST_BASE_URL, TEST_TOKEN, path) },
    });
    clients.add(ws);
    ws.on('error', () => undefined); // the server terminates it after the 1013
    let received = 0;
    ws.on('message', () => received++);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.send(startFrame(callSid, streamSid, parameters));
    // Twilio keeps streaming the caller's audio, so only backpressure can end this call.
    let n = 0;
    const inbound = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send(inboundMedia(streamSid, n++)), 20);
    let maxBuffered = 0;
    const sampler = setInterval(() => {
      for (const c of engine.app.websocketServer.clients) maxBuffered = Math.max(maxBuffered, c.bufferedAmount);
    }, 5);
    try {
      await expect.poll(() => received, { timeout: 5_000, interval: 10 }).toBeGreaterThan(2); // greeting audio flows
      stopReading(ws);
      const before = memory();
      const stalledAt = performance.now();
      const healthyFrom = healthy.now();
      await expect.poll(() => engine.registry.session(callSid), { timeout: 40_000, interval: 20 }).toBeUndefined();
      const endedMs = performance.now() - stalledAt;
      const healthyTo = healthy.now();
      const after = memory();
      const record = engine.registry.recentCalls().find((c) => c.callSid === callSid);
      const closeLog = engine.logs.find((l) => l.includes('VET_E_STREAM_BACKPRESSURE'));
      const maxFrame = Math.max(...healthy.outbound.map((o) => Buffer.byteLength(o.raw)));
      console.info(`[backpressure] engine: stalled call ended ${Math.round(endedMs)} ms after the client stopped reading ` +
        `(kernel fill + cap ${CAP} B at real-time rate, then ${STALL_MS} ms); max bufferedAmount ${maxBuffered} B; ` +
        `${counters.sendsDropped.backpressure} sends dropped; outcome ${record?.outcome}; rss ${mb(after.rss - before.rss)}, ` +
        `arrayBuffers ${mb(after.arrayBuffers - before.arrayBuffers)}; healthy call heard ${Math.round(healthyTo - healthyFrom)} ms meanwhile`);

      expect(counters.backpressureCloses).toBe(1);
      expect(counters.sendsDropped.backpressure).toBeGreaterThan(0);
      expect(maxBuffered).toBeGreaterThan(CAP);
      expect(maxBuffered).toBeLessThanOrEqual(CAP + maxFrame + WS_HEADER);
      expect(record?.outcome).toBe('callerHungUp'); // a lost stream ends the call like a hang-up
      expect(record?.endedAt).not.toBeNull();
      expect(closeLog).toContain(callSid); // logged once, with the call's bindings
      expect(engine.logs.filter((l) => l.includes('"reason":"backpressure"'))).toHaveLength(1); // first drop only
      expect(after.rss - before.rss).toBeLessThan(64 * MiB);
      expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(16 * MiB);
      await expect.poll(() => engine.app.websocketServer.clients.size, { timeout: 3_000 }).toBe(1); // let go at the close grace

      // The healthy call heard its greeting without a gap the whole time, and is still up.
      expect(healthy.silenceGaps(100, { fromMs: healthyFrom, toMs: healthyTo })).toEqual([]);
      expect(healthy.closed).toBeNull();
      expect(healthy.protocolErrors).toEqual([]);
      expect(engine.registry.session(healthy.callSid)?.streamConnected).toBe(true);
      await healthy.hangUp();
      expect(healthy.closed?.code).toBe(1000);
    } finally {
      clearInterval(inbound);
      clearInterval(sampler);
      await healthy.dispose();
    }
  }, 50_000);
});
