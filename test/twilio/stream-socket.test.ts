import { EventEmitter } from 'node:events';
import fc from 'fast-check';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { markMessage } from '../../src/twilio/media-codec.js';
import {
  attachMediaStream, createStreamCounters, MEDIA_STREAM_WS_OPTIONS,
} from '../../src/twilio/stream-socket.js';
import type {
  MediaStreamHandle, MediaStreamHandlers, MediaStreamOptions, StreamCounters,
} from '../../src/twilio/stream-socket.js';

const STREAM = 'MZ18ad3ab5a668481ce02b83e7395059f0';
const CALL = 'CA8d2f1b4e6a3c5d7e9f0a1b2c3d4e5f60';
const start = JSON.stringify({
  event: 'start', sequenceNumber: '1', streamSid: STREAM,
  start: {
    accountSid: 'AC' + '0'.repeat(32), streamSid: STREAM, callSid: CALL, tracks: ['inbound'],
    customParameters: { token: 'good' },
    mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
  },
});
const media = (n: number) => JSON.stringify({
  event: 'media', sequenceNumber: String(n + 1), streamSid: STREAM,
  media: { track: 'inbound', chunk: String(n), timestamp: String(n * 20), payload: Buffer.alloc(160, n).toString('base64') },
});
const ev = (event: string, body: object) => JSON.stringify({ event, sequenceNumber: '9', streamSid: STREAM, ...body });
const connected = JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' });

/** `corked`: the handle gets the upgrade request's TCP socket as its transport (as the route does). */
type Setup = { handlers: Partial<MediaStreamHandlers>; opts?: MediaStreamOptions; corked?: boolean };
/** Writes the server's TCP socket made (Node's Writable calls `_write` or `_writev` once per write to the kernel). */
let socketWrites = 0;
let wss: WebSocketServer;
let url = '';
let next: Setup = { handlers: {} };
let lastHandle: MediaStreamHandle | null = null;

beforeAll(async () => {
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...MEDIA_STREAM_WS_OPTIONS });
  wss.on('connection', (socket, request) => {
    const { handlers, opts, corked } = next;
    const tcp = request.socket as typeof request.socket & { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
    socketWrites = 0;
    for (const key of ['_write', '_writev'] as const) {
      const write = tcp[key].bind(tcp);
      tcp[key] = (...args: unknown[]) => {
        socketWrites++;
        write(...args);
      };
    }
    lastHandle = attachMediaStream(socket, { onStart: () => 'accept', ...handlers }, { ...opts, ...(corked ? { transport: request.socket } : {}) });
  });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => wss.close(() => resolve()));
});

/** Connect with the next handlers, send frames, resolve with the close code and reason the client saw. */
async function run(setup: Setup, frames: (string | Buffer)[], after?: (c: WebSocket) => void) {
  next = setup;
  const client = new WebSocket(url);
  const received: string[] = [];
  client.on('message', (d: Buffer) => received.push(d.toString()));
  await new Promise((resolve, reject) => client.once('open', resolve).once('error', reject));
  for (const f of frames) client.send(f, { binary: Buffer.isBuffer(f) });
  after?.(client);
  const [code, reason] = await new Promise<[number, string]>((resolve) =>
    client.once('close', (c: number, r: Buffer) => resolve([c, r.toString()])));
  return { code, reason, received };
}

function recorder(extra: Partial<MediaStreamHandlers> = {}) {
  const events: string[] = [];
  const counters: StreamCounters = createStreamCounters();
  const handlers: Partial<MediaStreamHandlers> = {
    onStart: (s) => (events.push(`start:${s.callSid}:${s.customParameters.token}`), 'accept'),
    onMedia: (m) => events.push(`media:${m.seq}:${m.audio.length}:${m.audio[0]}`),
    onDtmf: (d) => events.push(`dtmf:${d.digit}`),
    onMark: (m) => events.push(`mark:${m.name}`),
    onStop: (s) => events.push(`stop:${s.callSid}`),
    onClose: (code, reason) => events.push(`close:${code}:${reason}`),
    onHandlerError: (e) => events.push(`error:${(e as Error).message}`),
    ...extra,
  };
  return { events, counters, handlers };
}

describe('attachMediaStream over a real socket', () => {
  it('delivers events in order, stops once, closes 1000 after stop', async () => {
    const r = recorder();
    const out = await run({ handlers: r.handlers, opts: { counters: r.counters } }, [
      connected, media(0), start, media(1), media(2), ev('dtmf', { dtmf: { track: 'inbound_track', digit: '5' } }),
      ev('mark', { mark: { name: '1:0:100' } }), ev('future', {}), ev('stop', { stop: { callSid: CALL } }),
      ev('stop', { stop: { callSid: CALL } }), media(3),
    ]);
    expect(out.code).toBe(1000);
    expect(r.events).toEqual([
      `start:${CALL}:good`, 'media:2:160:1', 'media:3:160:2', 'dtmf:5', 'mark:1:0:100', `stop:${CALL}`,
    ]);
    expect(r.counters).toMatchObject({ accepted: 1, mediaFrames: 2, ignoredBeforeStart: 1, ignoredEvents: 1, invalidTotal: 0 });
  });

  it('sends only after start, as text frames, and drops after close', async () => {
    const r = recorder();
    let handle: MediaStreamHandle | null = null;
    const out = await run({ handlers: r.handlers, opts: { counters: r.counters } }, [], (client) => {
      setTimeout(() => {
        handle = lastHandle;
        expect(handle!.send(markMessage(STREAM, 'early'))).toBe(false);
        client.send(start);
        setTimeout(() => {
          expect(handle!.send(markMessage(STREAM, '1:0:20'))).toBe(true);
          expect(handle!.streamSid).toBe(STREAM);
          handle!.close(1000, 'done');
          expect(handle!.send(markMessage(STREAM, 'late'))).toBe(false);
        }, 30);
      }, 30);
    });
    expect(out).toMatchObject({ code: 1000, reason: 'done', received: [markMessage(STREAM, '1:0:20')] });
    expect(r.counters.sendsDropped).toEqual({ notStarted: 1, closed: 1, backpressure: 0 });
    expect(r.events.at(-1)).toBe('close:1000:done');
  });

  it('batch: the frames sent inside leave in one write to the socket; outside, one write each', async () => {
    const r = recorder();
    const writes: number[] = [];
    const out = await run({ handlers: r.handlers, opts: { counters: r.counters }, corked: true }, [start], () => {
      setTimeout(() => {
        const handle = lastHandle!;
        let before = socketWrites;
        handle.batch(() => ['1:0:100', '1:0:200', '1:0:300'].forEach((name) => handle.send(markMessage(STREAM, name))));
        writes.push(socketWrites - before);
        before = socketWrites;
        ['1:0:400', '1:0:500'].forEach((name) => handle.send(markMessage(STREAM, name)));
        writes.push(socketWrites - before);
        handle.close(1000, 'done');
      }, 30);
    });
    expect(writes).toEqual([1, 2]);
    expect(out.received).toEqual(['100', '200', '300', '400', '500'].map((ms) => markMessage(STREAM, `1:0:${ms}`)));
  });

  it('closes 1003 on a binary frame', async () => {
    const r = recorder();
    const out = await run({ handlers: r.handlers, opts: { counters: r.counters } }, [start, Buffer.from(media(1))]);
    expect(out.code).toBe(1003);
    expect(r.events).toEqual([`start:${CALL}:good`, 'close:1003:binary frame']);
    expect(r.counters.binaryCloses).toBe(1);
  });

  it('closes 1008 at the 10th invalid frame, not before', async () => {
    const r = recorder();
    const garbage = ['null', '[]', '{', '{"event":1}', media(1).replace(/"payload":"[^"]*"/, '"payload":"!!!!"'),
      '{"event":"media"}', '"x"', '1', '{"event":"start"}'];
    const out = await run({ handlers: r.handlers, opts: { counters: r.counters } }, [...garbage, start, media(1), 'nope', media(2)]);
    expect(out.code).toBe(1008);
    expect(out.reason).toBe('too many invalid frames');
    expect(r.events).toEqual([`start:${CALL}:good`, 'media:2:160:1', 'close:1008:too many invalid frames']);
    expect(r.counters.invalidTotal).toBe(10);
    expect(r.counters.invalid).toEqual({ binary: 0, tooLarge: 0, json: 2, shape: 7, base64: 1, payloadSize: 0, mediaFormat: 0 });
  });

  it('closes 1008 when no start arrives in time', async () => {
    const r = recorder();
    const t = Date.now();
    const out = await run({ handlers: r.handlers, opts: { counters: r.counters, startTimeoutMs: 100 } }, [connected, media(1)]);
    expect(out).toMatchObject({ code: 1008, reason: 'start timeout' });
    expect(Date.now() - t).toBeLessThan(1000);
    expect(r.events).toEqual(['close:1008:start timeout']);
  });

  it('closes 1008 when onStart rejects, and calls nothing but onClose', async () => {
    const r = recorder({ onStart: () => ({ reject: 'VET_E_STREAM_TOKEN' }) });
    const out = await run({ handlers: r.handlers, opts: { counters: r.counters } }, [start, media(1), ev('stop', { stop: { callSid: CALL } })]);
    expect(out).toMatchObject({ code: 1008, reason: 'VET_E_STREAM_TOKEN' });
    expect(r.events).toEqual(['close:1008:VET_E_STREAM_TOKEN']);
    expect(r.counters.rejected).toBe(1);
  });

  it('closes 1008 at once on a start with the wrong media format', async () => {
    const r = recorder();
    const l16 = start.replace('audio/x-mulaw', 'audio/l16');
    const out = await run({ handlers: r.handlers, opts: { counters: r.counters } }, [l16]);
    expect(out).toMatchObject({ code: 1008, reason: 'unsupported media format' });
    expect(r.counters.invalid.mediaFormat).toBe(1);
  });

  it('closes 1008 on a duplicate start and on idle', async () => {
    const r = recorder();
    expect((await run({ handlers: r.handlers }, [start, start])).code).toBe(1008);
    const idle = recorder();
    const out = await run({ handlers: idle.handlers, opts: { idleTimeoutMs: 80 } }, [start, media(1)]);
    expect(out).toMatchObject({ code: 1008, reason: 'idle timeout' });
  });

  it('contains handler exceptions and keeps delivering', async () => {
    const r = recorder({
      onMedia: (m) => { if (m.seq === 2) throw new Error('boom'); r.events.push(`media:${m.seq}`); },
    });
    const out = await run({ handlers: r.handlers }, [start, media(1), media(2), ev('stop', { stop: { callSid: CALL } })]);
    expect(out.code).toBe(1000);
    expect(r.events).toEqual([`start:${CALL}:good`, 'error:boom', 'media:3', `stop:${CALL}`]);
    const t = recorder({ onStart: () => { throw new Error('start boom'); } });
    expect((await run({ handlers: t.handlers }, [start])).code).toBe(1011);
    expect(t.events).toEqual(['error:start boom', 'close:1011:start handler failed']);
  });

  it('reports a peer close once, and the server options cap frame size', async () => {
    const r = recorder();
    await run({ handlers: r.handlers }, [start], (c) => setTimeout(() => c.close(4000, 'bye'), 30));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(r.events).toEqual([`start:${CALL}:good`, 'close:4000:bye']);
    expect((await run({ handlers: {} }, ['x'.repeat(65 * 1024)])).code).toBe(1009);
  });

  it('closes 1008 past 64 fragments and 1007 on invalid UTF-8 (server options)', async () => {
    const fragments = (await run({ handlers: {} }, [], (c) => {
      for (let i = 0; i < 70; i++) c.send('x', { fin: false });
      c.send('x', { fin: true });
    })).code;
    expect(fragments).toBe(1008);
    const utf8 = await run({ handlers: {} }, [], (c) => c.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false }));
    expect(utf8.code).toBe(1007);
  });
});

describe('frame fuzz over real sockets (docs/design/reliability.md §4 recipe 1, scaled down)', () => {
  it('2,000 seeded frames over 10 sockets: every socket ends cleanly, then a valid call completes', async () => {
    const frame = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null'),
      fc.string(),
      fc.constantFrom(start, media(1), connected, ev('stop', { stop: { callSid: CALL } }), ev('mark', { mark: { name: 7 } })),
      fc.record({ event: fc.constantFrom('media', 'start', 'dtmf'), media: fc.jsonValue(), start: fc.jsonValue() }).map((v) => JSON.stringify(v)),
    );
    const frames = fc.sample(frame, { seed: 424_242, numRuns: 2000 });
    const counters = createStreamCounters();
    const errors: unknown[] = [];
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      run({ handlers: { onHandlerError: (e) => errors.push(e) }, opts: { counters, startTimeoutMs: 300, idleTimeoutMs: 300 } },
        frames.slice(i * 200, (i + 1) * 200))));
    for (const r of results) expect([1000, 1008]).toContain(r.code);
    expect(counters.framesIn).toBeGreaterThan(100);
    expect(errors).toEqual([]);
    const ok = recorder();
    expect((await run({ handlers: ok.handlers }, [connected, start, media(1), ev('stop', { stop: { callSid: CALL } })])).code).toBe(1000);
    expect(ok.events).toEqual([`start:${CALL}:good`, 'media:2:160:1', `stop:${CALL}`]);
  });
});

describe('send backpressure', () => {
  it('drops and reports while bufferedAmount exceeds the cap', () => {
    const fake = Object.assign(new EventEmitter(), {
      OPEN: 1, readyState: 1, bufferedAmount: 2 * 1024 * 1024, sent: [] as string[],
      send(d: string) { this.sent.push(d); }, close() {}, terminate() {},
    });
    const drops: [string, number][] = [];
    const counters = createStreamCounters();
    const handle = attachMediaStream(fake as unknown as WebSocket, {
      onStart: () => 'accept', onSendDropped: (why, n) => drops.push([why, n]),
    }, { counters });
    fake.emit('message', Buffer.from(start), false);
    expect(handle.send('{"event":"clear","streamSid":"x"}')).toBe(false);
    fake.bufferedAmount = 0;
    expect(handle.send('{"event":"clear","streamSid":"x"}')).toBe(true);
    expect(drops).toEqual([['backpressure', 2 * 1024 * 1024]]);
    expect(fake.sent).toHaveLength(1);
    fake.emit('close', 1006, Buffer.alloc(0));
    expect(handle.state).toBe('closed');
  });
});
