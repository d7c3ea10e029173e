/**
 * FakeTwilio against a tiny engine stand-in (plain http + ws, checking signatures like the real one):
 * message shapes both ways, inbound pacing, the §3.3 mark rule, strict outbound validation, and the
 * phone line's impairments (echo, jitter and bursts, late marks).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import twilio from 'twilio';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { encodeUlaw, ulawEnergyDb } from '../../src/audio/ulaw.js';
import { Line, PHONE_LINE, withSeed } from './fake-line.js';
import { FakeTwilio, type FakeCallOptions } from './fake-twilio.js';

const TOKEN = 'fake-twilio-test-token';
const BASE = 'https://voice.test';
const SID = `AC${'1'.repeat(32)}`;
const TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://voice.test/twilio/ws">' +
  '<Parameter name="callToken" value="tok&amp;1"/></Stream></Connect>' +
  '<Redirect method="POST">https://voice.test/twilio/dtmf</Redirect></Response>';

type Conn = { ws: WebSocket; msgs: { at: number; m: Record<string, unknown> }[]; closeCode: number | null };
const conns: Conn[] = [];
const posts: { path: string; params: Record<string, string> }[] = [];
let server: http.Server;
let serverUrl = '';
let call: FakeTwilio | null = null;

beforeAll(async () => {
  const wss = new WebSocketServer({ noServer: true });
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const params = Object.fromEntries(new URLSearchParams(body));
      const sig = req.headers['x-twilio-signature'];
      if (typeof sig !== 'string' || !twilio.validateRequest(TOKEN, sig, BASE + (req.url ?? ''), params)) {
        res.writeHead(403).end();
        return;
      }
      posts.push({ path: req.url ?? '', params });
      res.writeHead(200, { 'content-type': 'text/xml' }).end(req.url === '/twilio/voice' ? TWIML : '');
    });
  });
  server.on('upgrade', (req, socket, head) => {
    const sig = req.headers['x-twilio-signature'];
    if (typeof sig !== 'string' || !twilio.validateRequest(TOKEN, sig, `wss://voice.test${req.url ?? ''}`, {})) {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const conn: Conn = { ws, msgs: [], closeCode: null };
      ws.on('message', (d: Buffer) => conn.msgs.push({ at: performance.now(), m: JSON.parse(d.toString()) as Record<string, unknown> }));
      ws.on('close', (code) => (conn.closeCode = code));
      conns.push(conn);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(async () => {
  await call?.dispose();
  call = null;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const opts = (extra: Partial<FakeCallOptions> = {}): FakeCallOptions => ({
  serverUrl, publicBaseUrl: BASE, authToken: TOKEN, accountSid: SID, to: '+15550002222', from: '+15550001111', ...extra,
});
async function connect(extra: Partial<FakeCallOptions> = {}): Promise<{ fake: FakeTwilio; conn: Conn }> {
  const n = conns.length;
  const fake = await FakeTwilio.call(opts(extra));
  call = fake;
  await fake.waitFor(() => (conns[n]?.msgs.length ?? 0) >= 2, 1000, 'connected + start at the server');
  const conn = conns[n];
  if (!conn) throw new Error('no server connection');
  return { fake, conn };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ofEvent = (conn: Conn, event: string) => conn.msgs.filter((x) => x.m.event === event);

describe('FakeTwilio', () => {
  it('signs the webhook, follows <Connect><Stream>, sends connected + start', async () => {
    const { fake, conn } = await connect({ callSid: `CA${'2'.repeat(32)}` });
    expect(posts.at(-1)).toEqual({ path: '/twilio/voice', params: {
      CallSid: fake.callSid, AccountSid: SID, From: '+15550001111', To: '+15550002222',
      CallStatus: 'ringing', Direction: 'inbound', ApiVersion: '2010-04-01' } });
    expect(fake.twiml.stream).toMatchObject({ url: 'wss://voice.test/twilio/ws', parameters: { callToken: 'tok&1' } });
    expect(fake.twiml.afterConnect).toContain('<Redirect method="POST">');
    expect(fake.streamSid).toMatch(/^MZ[0-9a-f]{32}$/);
    expect(conn.msgs[0]?.m).toEqual({ event: 'connected', protocol: 'Call', version: '1.0.0' });
    expect(conn.msgs[1]?.m).toEqual({ event: 'start', sequenceNumber: '1', streamSid: fake.streamSid, start: {
      accountSid: SID, streamSid: fake.streamSid, callSid: `CA${'2'.repeat(32)}`, tracks: ['inbound'],
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 }, customParameters: { callToken: 'tok&1' } } });
  });

  it('streams 160-byte noise frames every 20 ms with string counters; say, dtmf and stop', async () => {
    const { fake, conn } = await connect();
    const t0 = performance.now();
    await sleep(200);
    const speech = new Uint8Array(400); // 0x00: loud, unlike the noise
    expect(await fake.say(speech)).toBe(true);
    fake.dtmf('5');
    await fake.stop();
    const media = ofEvent(conn, 'media');
    const frames = media.filter((x) => x.at < t0 + 200);
    expect(frames.length).toBeGreaterThanOrEqual(6);
    expect(frames.length).toBeLessThanOrEqual(12);
    media.forEach(({ m }, i) => {
      expect(m).toEqual({ event: 'media', sequenceNumber: String(i + 2), streamSid: fake.streamSid,
        media: { track: 'inbound', chunk: String(i + 1), timestamp: String(i * 20), payload: expect.any(String) as string } });
    });
    const bytes = media.map(({ m }) => Buffer.from((m.media as { payload: string }).payload, 'base64'));
    expect(bytes.every((b) => b.length === 160)).toBe(true);
    const noise = bytes[0] ?? Buffer.alloc(0);
    expect(noise.some((b) => b !== 0xff && b !== 0x7f)).toBe(true);
    expect(noise.every((b) => b >= 0x7b && (b <= 0x7f || b >= 0xfb))).toBe(true);
    const zeros = bytes.map((b) => b.filter((x) => x === 0).length).filter((n) => n > 0);
    expect(zeros).toEqual([160, 160, 80]);
    const gaps = media.slice(1).map((x, i) => x.at - (media[i]?.at ?? 0));
    expect(gaps.reduce((a, b) => a + b, 0) / gaps.length).toBeGreaterThan(15);
    expect(gaps.reduce((a, b) => a + b, 0) / gaps.length).toBeLessThan(25);
    const rest = conn.msgs.slice(2 + media.length).map((x) => x.m);
    const seq = String(media.length + 2);
    expect(rest).toEqual([
      { event: 'dtmf', streamSid: fake.streamSid, sequenceNumber: seq, dtmf: { track: 'inbound_track', digit: '5' } },
      { event: 'stop', sequenceNumber: String(Number(seq) + 1), streamSid: fake.streamSid, stop: { accountSid: SID, callSid: fake.callSid } },
    ]);
    expect(fake.closed?.code).toBe(1000);
    await fake.waitFor(() => conn.closeCode === 1000, 500, 'server saw 1000');
  });

  it('plays outbound audio and echoes marks: at once when idle, after playback when queued, all on clear', async () => {
    const { fake, conn } = await connect({ streamAudio: false });
    const sid = fake.streamSid;
    const media = (bytes: number) => conn.ws.send(JSON.stringify({ event: 'media', streamSid: sid, media: { payload: Buffer.alloc(bytes, 1).toString('base64') } }));
    const mark = (name: string) => conn.ws.send(JSON.stringify({ event: 'mark', streamSid: sid, mark: { name } }));
    const echoed = (name: string) => fake.waitFor((c) => c.marksEchoed.some((e) => e.name === name), 1000, `echo ${name}`);
    const recv = (name: string) => fake.outbound.find((r) => r.message?.event === 'mark' && r.message.mark.name === name)?.atMs ?? NaN;
    const echo = (name: string) => fake.marksEchoed.find((e) => e.name === name);

    mark('idle');
    await echoed('idle');
    expect(echo('idle')?.cause).toBe('idle');
    expect((echo('idle')?.atMs ?? NaN) - recv('idle')).toBeLessThan(50); // same turn; loose for loaded CI

    media(800); // 100 ms
    mark('played');
    await echoed('played');
    expect(echo('played')?.cause).toBe('played');
    expect((echo('played')?.atMs ?? NaN) - recv('played')).toBeGreaterThanOrEqual(95);
    expect(fake.heard.length).toBe(800);

    await sleep(30);
    const t = fake.now();
    media(1600);
    mark('a');
    media(1600);
    mark('b');
    await fake.waitFor((c) => c.heardMs() >= 150, 1000, 'some playback');
    conn.ws.send(JSON.stringify({ event: 'clear', streamSid: sid }));
    await echoed('b');
    expect([echo('a')?.cause, echo('b')?.cause]).toEqual(['clear', 'clear']);
    expect(fake.clears).toHaveLength(1);
    expect((echo('b')?.atMs ?? NaN) - (fake.clears[0] ?? NaN)).toBeLessThan(50);
    const partial = fake.audioSince(t).length;
    expect(partial).toBeGreaterThanOrEqual(400);
    expect(partial).toBeLessThan(1600); // cut before the end of "a"; "b" never played
    await sleep(30);
    expect(fake.heard.length).toBe(800 + partial); // cleared audio never plays
    expect(fake.silenceGaps(20)).toHaveLength(1); // the 30 ms pause between replies
    expect(fake.silenceGaps(20, { toMs: fake.now() }).length).toBe(2); // plus the dead air since the clear

    mark('after-clear');
    await echoed('after-clear');
    expect(echo('after-clear')?.cause).toBe('idle');
    await fake.waitFor(() => ofEvent(conn, 'mark').length === 5, 500, 'echoes at the server');
    expect(ofEvent(conn, 'mark').map((x) => x.m)).toEqual(['idle', 'played', 'a', 'b', 'after-clear'].map((name, i) =>
      ({ event: 'mark', sequenceNumber: String(i + 2), streamSid: sid, mark: { name } })));
    expect(fake.protocolErrors).toEqual([]);
  });

  it('validates outbound frames strictly and records violations instead of throwing', async () => {
    const { fake, conn } = await connect({ streamAudio: false });
    const sid = fake.streamSid;
    const bad = [
      { event: 'mark', streamSid: sid, mark: { name: 'x' }, extra: 1 },
      { event: 'clear', streamSid: 'MZ' + '0'.repeat(32) },
      { event: 'media', streamSid: sid, media: { payload: Buffer.alloc(100).toString('base64') } },
      { event: 'media', streamSid: sid, media: { payload: Buffer.alloc(160).toString('base64'), track: 'outbound' } },
      { event: 'hello', streamSid: sid },
    ];
    for (const m of bad) conn.ws.send(JSON.stringify(m));
    conn.ws.send('not json');
    conn.ws.send(Buffer.alloc(160), { binary: true });
    await fake.waitFor((c) => c.outbound.length === 7, 1000, 'seven frames');
    expect(fake.protocolErrors.map((e) => e.reason)).toEqual([
      'mark: extra or missing fields', expect.stringContaining('wrong streamSid'),
      'media: payload is 100 bytes, not a multiple of 160', 'media: media must hold only a string payload',
      'unknown event "hello"', 'not JSON', expect.stringContaining('binary frame'),
    ]);
    expect(fake.outbound.every((r) => r.message === null && r.error !== null)).toBe(true);
    expect(fake.marksEchoed).toEqual([]);
    expect(fake.clears).toEqual([]);
    expect(fake.heardMs()).toBe(0);
  });

  it('refuses to connect with a missing or https-signed upgrade; posts signed status callbacks', async () => {
    await expect(FakeTwilio.call(opts({ wsSignature: null }))).rejects.toThrow(/403/);
    const httpsSig = twilio.getExpectedTwilioSignature(TOKEN, 'https://voice.test/twilio/ws', {});
    await expect(FakeTwilio.call(opts({ wsSignature: httpsSig }))).rejects.toThrow(/403/);

    const { fake } = await connect({ streamAudio: false });
    expect(await fake.statusCallback('completed', 0)).toEqual({ status: 200, body: '' });
    expect(posts.at(-1)).toMatchObject({ path: '/twilio/status',
      params: { CallSid: fake.callSid, AccountSid: SID, CallStatus: 'completed', SequenceNumber: '0', CallDuration: '0' } });
    expect((await fake.recordingCallback({ status: 'completed', durationS: 3 })).status).toBe(200);
    expect(posts.at(-1)?.params).toMatchObject({ RecordingStatus: 'completed', RecordingDuration: '3', RecordingChannels: '2' });
    await expect(fake.waitFor(() => false, 30, 'never')).rejects.toThrow(/timed out after 30 ms: never\noutbound media×0/);
    fake.dropConnection();
    expect((await fake.waitForClose(1000)).code).toBe(1006);
  });
});

/** A 400 Hz tone at amplitude 8000 (about -15 dBFS), μ-law: what the engine "says". */
function encodeTone(bytes: number): Uint8Array {
  return encodeUlaw(Int16Array.from({ length: bytes }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 400 * i) / 8000))));
}
const mediaFrames = (conn: Conn) => ofEvent(conn, 'media').map(({ at, m }) => {
  const media = m.media as { chunk: string; payload: string };
  return { at, chunk: Number(media.chunk), seq: Number(m.sequenceNumber), db: ulawEnergyDb(Buffer.from(media.payload, 'base64')) };
});

describe('FakeTwilio on a phone line', () => {
  it('draws the same line from the same seed, inside the profile\'s ranges', () => {
    const a = new Line(withSeed(PHONE_LINE, 7));
    const b = new Line(withSeed(PHONE_LINE, 7));
    const c = new Line(withSeed(PHONE_LINE, 8));
    expect(a.echo).toEqual(b.echo);
    expect(a.echo).not.toEqual(c.echo);
    for (const l of [a, c]) {
      expect(l.echo!.attenuationDb).toBeGreaterThanOrEqual(-30);
      expect(l.echo!.attenuationDb).toBeLessThanOrEqual(-20);
      expect(l.echo!.delayMs).toBeGreaterThanOrEqual(40);
      expect(l.echo!.delayMs).toBeLessThanOrEqual(120);
    }
    const times = Array.from({ length: 500 }, (_, n) => a.deliveryMs(n, 20 * (n + 1)));
    expect(times.every((t, n) => t >= 20 * (n + 1) && t <= 20 * (n + 1) + 60 && t >= (times[n - 1] ?? 0))).toBe(true);
    expect(a.stats.bursts).toBeGreaterThan(0);
  });

  it('echoes the engine\'s audio into the caller\'s frames: attenuated, delayed, and gone after a clear', async () => {
    const { fake, conn } = await connect({ line: { echo: { attenuationDb: -20, delayMs: 100 } } });
    const sid = fake.streamSid;
    await sleep(100);
    const sentAt = performance.now();
    conn.ws.send(JSON.stringify({ event: 'media', streamSid: sid, media: { payload: Buffer.from(encodeTone(4000)).toString('base64') } })); // 500 ms
    await sleep(300);
    conn.ws.send(JSON.stringify({ event: 'clear', streamSid: sid }));
    const clearedAt = performance.now();
    await sleep(400);
    const frames = mediaFrames(conn);
    const loud = frames.filter((f) => f.db > -45);
    const toneDb = ulawEnergyDb(encodeTone(160));
    // Onset: the first frame holding echo left 100 ms (the delay) to 120 ms (its own length) after the audio played.
    expect(loud[0]!.at - sentAt).toBeGreaterThanOrEqual(95);
    expect(loud[0]!.at - sentAt).toBeLessThan(100 + 20 + 40);
    // Level: frames wholly inside the echo are the tone 20 dB down (line noise is ~30 dB below that).
    const inside = loud.slice(1, -1);
    expect(inside.length).toBeGreaterThanOrEqual(8);
    for (const f of inside) expect(Math.abs(f.db - (toneDb - 20))).toBeLessThan(1);
    // The clear cut playback, so the echo ends a delay later: nothing of the last 200 ms of audio.
    expect(loud.at(-1)!.at - clearedAt).toBeLessThan(100 + 20 + 40);
    expect(frames.filter((f) => f.at > clearedAt + 160).every((f) => f.db < -55)).toBe(true);
  });

  it('delivers frames late and in bursts of three, in order, keys after the frames before them', async () => {
    const { fake, conn } = await connect({ line: { seed: 3, jitter: { maxLateMs: 60, burstChance: 0.15 } } });
    await sleep(1_200);
    fake.dtmf('7');
    await fake.waitFor(() => ofEvent(conn, 'dtmf').length === 1, 500, 'the key');
    const frames = mediaFrames(conn);
    expect(frames.map((f) => f.chunk)).toEqual(frames.map((_, i) => i + 1));
    const seqs = conn.msgs.slice(2).map((x) => Number(x.m.sequenceNumber));
    expect(seqs).toEqual(seqs.map((_, i) => i + 2)); // sequence numbers in send order, the key's included
    // Lateness against the on-time schedule (its origin: the earliest frame, which the line made at most 60 ms late).
    const lateness = frames.map((f, i) => f.at - 20 * (i + 1));
    const spread = Math.max(...lateness) - Math.min(...lateness);
    expect(spread).toBeGreaterThan(30);
    expect(spread).toBeLessThan(60 + 25);
    let triples = 0;
    for (let i = 2; i < frames.length; i++) if (frames[i]!.at - frames[i - 2]!.at < 3) triples++;
    expect(triples).toBeGreaterThan(0);
    expect(fake.line!.stats.bursts).toBeGreaterThan(0);
    expect(fake.line!.stats.maxLateMs).toBeLessThanOrEqual(60);
  });

  it('echoes marks late when playback passes them, in order; a clear\'s echoes are not delayed further', async () => {
    const { fake, conn } = await connect({ streamAudio: false, line: { lateMarksMs: 80 } });
    const sid = fake.streamSid;
    const send = (m: Record<string, unknown>) => conn.ws.send(JSON.stringify({ streamSid: sid, ...m }));
    const recv = (name: string) => fake.outbound.find((r) => r.message?.event === 'mark' && r.message.mark.name === name)?.atMs ?? NaN;
    const echo = (name: string) => fake.marksEchoed.find((e) => e.name === name);

    send({ event: 'media', media: { payload: Buffer.alloc(800, 1).toString('base64') } }); // 100 ms
    send({ event: 'mark', mark: { name: 'a' } });
    send({ event: 'mark', mark: { name: 'b' } });
    await fake.waitFor((c) => c.marksEchoed.length === 2, 1_000, 'a and b');
    expect(echo('a')?.cause).toBe('played');
    expect(echo('a')!.atMs - recv('a')).toBeGreaterThanOrEqual(100 + 80 - 5);
    expect(echo('b')!.atMs).toBeGreaterThanOrEqual(echo('a')!.atMs);

    send({ event: 'media', media: { payload: Buffer.alloc(1600, 1).toString('base64') } });
    send({ event: 'mark', mark: { name: 'c' } });
    await sleep(50);
    send({ event: 'clear' });
    await fake.waitFor((c) => c.marksEchoed.length === 3, 1_000, 'c');
    expect(echo('c')?.cause).toBe('clear');
    expect(echo('c')!.atMs - fake.clears[0]!).toBeLessThan(40);
    await fake.waitFor(() => ofEvent(conn, 'mark').length === 3, 500, 'echoes at the server');
    expect(ofEvent(conn, 'mark').map((x) => (x.m.mark as { name: string }).name)).toEqual(['a', 'b', 'c']);
  });
});
