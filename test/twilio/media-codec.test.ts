import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  clearMessage, decodePayload, markMessage, MAX_FRAME_BYTES, MediaFrameSchema, mediaMessage,
  mediaShapeOk, parseInbound,
} from '../../src/twilio/media-codec.js';
import type { InboundResult } from '../../src/twilio/media-codec.js';

const STREAM = 'MZ18ad3ab5a668481ce02b83e7395059f0';
const CALL = 'CA8d2f1b4e6a3c5d7e9f0a1b2c3d4e5f60';
const ACCOUNT = 'AC0123456789abcdef0123456789abcdef';
const FRAME = Uint8Array.from({ length: 160 }, (_, i) => (i * 37) & 0xff);
const PAYLOAD = Buffer.from(FRAME).toString('base64');
const SEED = 20_240_611;

// Real-shaped frames (docs/design/twilio.md §3.2).
const connected = { event: 'connected', protocol: 'Call', version: '1.0.0' };
const start = {
  event: 'start', sequenceNumber: '1', streamSid: STREAM,
  start: {
    accountSid: ACCOUNT, streamSid: STREAM, callSid: CALL, tracks: ['inbound'],
    mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
    customParameters: { token: 'tok_abc', from: 'hidden' },
  },
};
const media = (over: Record<string, unknown> = {}, m: Record<string, unknown> = {}) => ({
  event: 'media', sequenceNumber: '3', streamSid: STREAM,
  media: { track: 'inbound', chunk: '2', timestamp: '5', payload: PAYLOAD, ...m }, ...over,
});
const dtmf = { event: 'dtmf', streamSid: STREAM, sequenceNumber: '5', dtmf: { track: 'inbound_track', digit: '1' } };
const mark = { event: 'mark', sequenceNumber: '4', streamSid: STREAM, mark: { name: '7:0:1840' } };
const stop = { event: 'stop', sequenceNumber: '6', streamSid: STREAM, stop: { accountSid: ACCOUNT, callSid: CALL } };

const parse = (v: unknown): InboundResult => parseInbound(JSON.stringify(v), false);
const reason = (r: InboundResult) => (r.kind === 'invalid' ? r.reason : r.kind);

describe('parseInbound: Twilio frames', () => {
  it('parses connected, start, media, dtmf, mark, stop', () => {
    expect(parse(connected)).toEqual({ kind: 'connected' });
    expect(parse(start)).toEqual({
      kind: 'start', streamSid: STREAM, callSid: CALL, accountSid: ACCOUNT, tracks: ['inbound'],
      customParameters: { token: 'tok_abc', from: 'hidden' },
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
    });
    const m = parse(media());
    expect(m).toMatchObject({ kind: 'media', seq: 3, chunk: 2, timestampMs: 5 });
    expect(m.kind === 'media' && Array.from(m.audio)).toEqual(Array.from(FRAME));
    expect(parse(dtmf)).toEqual({ kind: 'dtmf', digit: '1' });
    expect(parse(mark)).toEqual({ kind: 'mark', name: '7:0:1840' });
    expect(parse(stop)).toEqual({ kind: 'stop', callSid: CALL });
  });

  it('accepts Buffers, numeric comparison of string counters, odd-length payloads, no customParameters', () => {
    const r = parseInbound(Buffer.from(JSON.stringify(media({ sequenceNumber: '10' }, { timestamp: '9' }))), false);
    expect(r).toMatchObject({ kind: 'media', seq: 10, timestampMs: 9 });
    const odd = parse(media({}, { payload: Buffer.from([1, 2, 3, 4, 5]).toString('base64') }));
    expect(odd.kind === 'media' && Array.from(odd.audio)).toEqual([1, 2, 3, 4, 5]);
    const { customParameters: _omit, ...bare } = start.start;
    expect(parse({ ...start, start: bare })).toMatchObject({ kind: 'start', customParameters: {} });
  });

  it('keeps customParameters a plain map: no prototype pollution', () => {
    const r = parseInbound(
      `{"event":"start","start":{"streamSid":"${STREAM}","callSid":"${CALL}","accountSid":"${ACCOUNT}","tracks":["inbound"],` +
        `"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"__proto__":"x","constructor":"y"}}}`,
      false,
    );
    expect(r.kind).toBe('start');
    if (r.kind !== 'start') return;
    expect(Object.getPrototypeOf(r.customParameters)).toBeNull();
    expect(r.customParameters.constructor).toBe('y');
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('ignores unknown events rather than calling them invalid', () => {
    expect(parse({ event: 'someFutureEvent', streamSid: STREAM })).toEqual({ kind: 'ignored', reason: 'unknownEvent' });
  });
});

describe('parseInbound: every invalid reason', () => {
  it.each([
    ['binary', () => parseInbound(Buffer.from('{}'), true)],
    ['tooLarge', () => parseInbound('x'.repeat(MAX_FRAME_BYTES + 1), false)],
    ['json', () => parseInbound('{"event":"media"', false)],
    ['json', () => parseInbound('', false)],
    ['shape', () => parse(null)],
    ['shape', () => parse([])],
    ['shape', () => parse(42)],
    ['shape', () => parse('media')],
    ['shape', () => parse({})],
    ['shape', () => parse({ event: 1 })],
    ['shape', () => parse(media({ sequenceNumber: 3 }))],
    ['shape', () => parse(media({ sequenceNumber: '1e3' }))],
    ['shape', () => parse(media({ sequenceNumber: ' 1' }))],
    ['shape', () => parse(media({}, { chunk: '' }))],
    ['shape', () => parse(media({}, { timestamp: '-5' }))],
    ['shape', () => parse(media({}, { payload: null }))],
    ['shape', () => parse(media({ media: 'x' }))],
    ['shape', () => parse(media({ streamSid: '' }))],
    ['shape', () => parse({ ...start, start: { ...start.start, callSid: 7 } })],
    ['shape', () => parse({ ...start, start: { ...start.start, customParameters: { a: 1 } } })],
    ['shape', () => parse({ ...start, start: { ...start.start, mediaFormat: null } })],
    ['shape', () => parse({ ...dtmf, dtmf: { digit: 'x' } })],
    ['shape', () => parse({ ...dtmf, dtmf: { digit: '12' } })],
    ['shape', () => parse({ ...mark, mark: { name: '' } })],
    ['shape', () => parse({ ...stop, stop: {} })],
    ['base64', () => parse(media({}, { payload: '!!!@' }))],
    ['base64', () => parse(media({}, { payload: 'AAA' }))],
    ['base64', () => parse(media({}, { payload: 'A===' }))],
    ['base64', () => parse(media({}, { payload: 'AA=A' }))],
    ['base64', () => parse(media({}, { payload: 'AAA-' }))],
    ['base64', () => parse(media({}, { payload: 'AAé=' }))],
    ['base64', () => parse(media({}, { payload: 'AAAA\n' }))],
    ['payloadSize', () => parse(media({}, { payload: '' }))],
    ['payloadSize', () => parse(media({}, { payload: 'A'.repeat(4100) }))],
    ['mediaFormat', () => parse({ ...start, start: { ...start.start, mediaFormat: { encoding: 'audio/l16', sampleRate: 8000, channels: 1 } } })],
    ['mediaFormat', () => parse({ ...start, start: { ...start.start, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 16000, channels: 1 } } })],
    ['mediaFormat', () => parse({ ...start, start: { ...start.start, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 2 } } })],
  ] as const)('%s', (expected, run) => {
    expect(reason(run())).toBe(expected);
  });

  it('survives deep nesting without re-serialising', () => {
    const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
    expect(reason(parseInbound(deep(32_000), false))).toBe('shape');
    expect(reason(parseInbound(`{"event":"media","media":${deep(20_000)}}`, false))).toBe('shape');
    expect(reason(parseInbound(`{"event":"start","start":{"customParameters":${deep(20_000)}}}`, false))).toBe('shape');
  });
});

describe('parseInbound never throws (fast-check, fixed seed)', () => {
  const noThrow = (frame: string | Buffer) => {
    const r = parseInbound(frame, false);
    expect(['connected', 'start', 'media', 'dtmf', 'mark', 'stop', 'ignored', 'invalid']).toContain(r.kind);
  };
  const anyJson = fc.oneof(fc.jsonValue(), fc.constant(null), fc.array(fc.anything()));
  const counterish = fc.oneof(fc.nat().map(String), fc.string(), fc.integer(), fc.constant(null), fc.double());
  const mediaLike = fc.record(
    {
      event: fc.constantFrom('media', 'start', 'dtmf', 'mark', 'stop', 'connected', 'x'),
      sequenceNumber: counterish,
      streamSid: fc.oneof(fc.string(), fc.integer(), anyJson),
      media: fc.oneof(anyJson, fc.record({
        track: fc.oneof(fc.string(), fc.integer()), chunk: counterish, timestamp: counterish,
        payload: fc.oneof(fc.base64String(), fc.string(), fc.integer(), fc.constant(PAYLOAD)),
      }, { requiredKeys: [] })),
      start: fc.oneof(anyJson, fc.record({
        streamSid: fc.oneof(fc.string(), fc.integer()), callSid: fc.string(), accountSid: fc.string(),
        tracks: fc.oneof(fc.array(fc.string()), fc.string()),
        customParameters: fc.oneof(fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer())), anyJson),
        mediaFormat: fc.record({ encoding: fc.string(), sampleRate: fc.oneof(fc.integer(), fc.string()), channels: fc.integer() }),
      }, { requiredKeys: [] })),
      dtmf: fc.oneof(anyJson, fc.record({ digit: fc.oneof(fc.string(), fc.integer()) })),
      mark: fc.oneof(anyJson, fc.record({ name: fc.oneof(fc.string(), fc.integer()) })),
      stop: fc.oneof(anyJson, fc.record({ callSid: fc.oneof(fc.string(), fc.integer()) })),
    },
    { requiredKeys: ['event'] },
  );
  const opts = { seed: SEED, numRuns: 2000 };

  it('over fc.jsonValue() and anything JSON-serialisable', () => {
    fc.assert(fc.property(anyJson, (v) => noThrow(JSON.stringify(v) ?? 'undefined')), opts);
  });
  it('over arbitrary strings, truncated JSON and random bytes', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => noThrow(s)), opts);
    fc.assert(fc.property(mediaLike, fc.nat(), (v, cut) => {
      const s = JSON.stringify(v);
      noThrow(s.slice(0, cut % (s.length + 1)));
    }), opts);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => noThrow(Buffer.from(b))), opts);
  });
  it('over Twilio-shaped records with wrong types', () => {
    fc.assert(fc.property(mediaLike, (v) => noThrow(JSON.stringify(v))), opts);
  });
  it('over deep nesting at random depths', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 30_000 }), fc.constantFrom('[', '{"a":'), (n, open) => {
      const close = open === '[' ? ']' : '}';
      noThrow(`{"event":"media","media":${open.repeat(n)}1${close.repeat(n)}}`);
    }), { seed: SEED, numRuns: 50 });
  });
  it('media fast path agrees with MediaFrameSchema', () => {
    // Valid frames with one field at a time pushed to or past a boundary.
    const edgeCounter = fc.constantFrom('0', '9'.repeat(15), '9'.repeat(16), '', '1.5', '+1', '١', 7);
    const edgeSid = fc.constantFrom('M', 'M'.repeat(64), 'M'.repeat(65), '', 0);
    const edges = fc.record({
      sequenceNumber: fc.oneof(fc.constant('3'), edgeCounter),
      streamSid: fc.oneof(fc.constant(STREAM), edgeSid),
      chunk: fc.oneof(fc.constant('2'), edgeCounter),
      timestamp: fc.oneof(fc.constant('5'), edgeCounter),
      track: fc.constantFrom('inbound', undefined, 1, null),
    }).map(({ sequenceNumber, streamSid, chunk, timestamp, track }) =>
      media({ sequenceNumber, streamSid }, { chunk, timestamp, track }));
    fc.assert(fc.property(fc.oneof(mediaLike, edges, fc.constant(media())), (v) => {
      const value: unknown = JSON.parse(JSON.stringify(v));
      expect(mediaShapeOk(value)).toBe(MediaFrameSchema.safeParse(value).success);
    }), opts);
  });
  it('base64 decoding equals Buffer.from for every valid payload', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 3000 }), (b) => {
      const out = decodePayload(Buffer.from(b).toString('base64'));
      expect(typeof out === 'string' ? out : Array.from(out)).toEqual(Array.from(b));
    }), { seed: SEED, numRuns: 500 });
  });
});

describe('builders', () => {
  it('produce exactly the documented fields', () => {
    expect(mediaMessage(STREAM, FRAME)).toBe(`{"event":"media","streamSid":"${STREAM}","media":{"payload":"${PAYLOAD}"}}`);
    expect(markMessage(STREAM, '7:0:1840')).toBe(`{"event":"mark","streamSid":"${STREAM}","mark":{"name":"7:0:1840"}}`);
    expect(clearMessage(STREAM)).toBe(`{"event":"clear","streamSid":"${STREAM}"}`);
    expect(Object.keys(JSON.parse(mediaMessage(STREAM, FRAME)) as object)).toEqual(['event', 'streamSid', 'media']);
  });

  it('encode views and Buffers alike, and escape strings', () => {
    const big = new Uint8Array(400).fill(9);
    const view = big.subarray(160, 320);
    const parsed = JSON.parse(mediaMessage(STREAM, view)) as { media: { payload: string } };
    expect(Buffer.from(parsed.media.payload, 'base64')).toEqual(Buffer.from(view));
    expect(mediaMessage(STREAM, Buffer.from(FRAME))).toBe(mediaMessage(STREAM, FRAME));
    expect(JSON.parse(markMessage('a"b', 'x\\y"\n'))).toEqual({ event: 'mark', streamSid: 'a"b', mark: { name: 'x\\y"\n' } });
  });
});
