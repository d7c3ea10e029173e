/**
 * fast-check arbitraries for the Twilio Media Stream fuzz tests (docs/design/reliability.md §4 recipe 1).
 *
 * Two families:
 * - `labelledFrame`: a frame whose codec result is known by construction, either a valid Twilio
 *   frame (docs/design/twilio.md §3.2) with the message it must decode to, or a valid frame with exactly
 *   one defect and the `InvalidReason` it must be rejected with. This is the oracle for the codec.
 * - `junkFrame`: anything a hostile or broken peer might send (JSON values, random strings, truncated
 *   JSON, deep nesting, huge strings); only "never throws" and "a typed result" are known for these.
 */
import fc from 'fast-check';
import { MAX_FRAME_BYTES, MAX_PAYLOAD_CHARS } from '../../src/twilio/media-codec.js';
import type { InboundResult, InvalidReason } from '../../src/twilio/media-codec.js';

type Obj = Record<string, unknown>;

const ACCOUNT_SID = `AC${'a'.repeat(32)}`;
const hex = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
const streamSidArb = hex(32).map((h) => `MZ${h}`);
export const callSidArb = hex(32).map((h) => `CA${h}`);

/** A string counter as Twilio sends it: decimal digits, 1 to 15 of them (Number() is exact). */
const counterArb = fc.oneof(fc.nat({ max: 100_000 }), fc.constant(999_999_999_999_999), fc.constant(0)).map(String);
const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
/** Raw μ-law audio that fits the payload cap once base64-encoded (3 bytes → 4 characters). */
const audioArb = fc.uint8Array({ minLength: 1, maxLength: (MAX_PAYLOAD_CHARS / 4) * 3 });

/** Extra fields Twilio might add one day: never one of the fields the codec reads. */
const KNOWN_KEYS = new Set(['event', 'sequenceNumber', 'streamSid', 'media', 'start', 'dtmf', 'mark', 'stop', '__proto__']);
const extrasArb = fc.dictionary(
  fc.string({ maxLength: 12 }).filter((k) => !KNOWN_KEYS.has(k)),
  fc.jsonValue({ maxDepth: 2 }),
  { maxKeys: 3 },
);

const mediaFormat = { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } as const;

/** What a valid frame must decode to (media audio compared byte for byte). */
export type Expected =
  | { kind: 'connected' }
  | { kind: 'start'; streamSid: string; callSid: string; accountSid: string; tracks: string[]; customParameters: Record<string, string>; mediaFormat: typeof mediaFormat }
  | { kind: 'media'; seq: number; chunk: number; timestampMs: number; audio: number[] }
  | { kind: 'dtmf'; digit: string }
  | { kind: 'mark'; name: string }
  | { kind: 'stop'; callSid: string }
  | { kind: 'ignored'; reason: 'unknownEvent' }
  | { kind: 'invalid'; reason: InvalidReason };

interface Labelled {
  /** What the mutation or the event was, for failure messages and coverage counts. */
  label: string;
  frame: Obj;
  expected: Expected;
}

const labelled = (label: string, frame: Obj, expected: Expected): Labelled => ({ label, frame, expected });

export const validMedia = fc
  .record({ seq: counterArb, sid: streamSidArb, chunk: counterArb, ts: counterArb, audio: audioArb, track: fc.constantFrom('inbound', undefined), extras: extrasArb })
  .map(({ seq, sid, chunk, ts, audio, track, extras }) => labelled('media', {
    ...extras, event: 'media', sequenceNumber: seq, streamSid: sid,
    media: { ...(track ? { track } : {}), chunk, timestamp: ts, payload: Buffer.from(audio).toString('base64') },
  }, { kind: 'media', seq: Number(seq), chunk: Number(chunk), timestampMs: Number(ts), audio: [...audio] }));

const paramsArb = fc.dictionary(fc.string({ maxLength: 20 }).filter((k) => k !== '__proto__'), fc.string({ maxLength: 40 }), { maxKeys: 8 });
const validStart = fc
  .record({ sid: streamSidArb, call: callSidArb, tracks: fc.array(fc.constantFrom('inbound', 'outbound'), { maxLength: 2 }), params: paramsArb, extras: extrasArb })
  .map(({ sid, call, tracks, params, extras }) => labelled('start', {
    ...extras, event: 'start', sequenceNumber: '1', streamSid: sid,
    start: { streamSid: sid, callSid: call, accountSid: ACCOUNT_SID, tracks, customParameters: params, mediaFormat },
  }, { kind: 'start', streamSid: sid, callSid: call, accountSid: ACCOUNT_SID, tracks, customParameters: params, mediaFormat }));

const validOther = fc.oneof(
  fc.constant(labelled('connected', { event: 'connected', protocol: 'Call', version: '1.0.0' }, { kind: 'connected' })),
  fc.constantFrom(...'0123456789*#ABCD').map((digit) =>
    labelled('dtmf', { event: 'dtmf', sequenceNumber: '5', streamSid: 'MZ1', dtmf: { track: 'inbound_track', digit } }, { kind: 'dtmf', digit })),
  fc.string({ minLength: 1, maxLength: 256 }).map((name) =>
    labelled('mark', { event: 'mark', sequenceNumber: '4', streamSid: 'MZ1', mark: { name } }, { kind: 'mark', name })),
  callSidArb.map((callSid) =>
    labelled('stop', { event: 'stop', sequenceNumber: '9', streamSid: 'MZ1', stop: { accountSid: ACCOUNT_SID, callSid } }, { kind: 'stop', callSid })),
  fc.string({ maxLength: 20 }).filter((e) => !['connected', 'start', 'media', 'dtmf', 'mark', 'stop'].includes(e)).map((event) =>
    labelled('unknown event', { event, streamSid: 'MZ1', anything: [1, { x: null }] }, { kind: 'ignored', reason: 'unknownEvent' })),
);

const validFrame = fc.oneof({ arbitrary: validMedia, weight: 3 }, { arbitrary: validStart, weight: 2 }, { arbitrary: validOther, weight: 2 });

// ---- one defect each, with the reason it must be rejected for ---------------------------------

/** Values that are not a valid string counter: wrong type, sign, decimals, spaces, other digits, too long. */
const badCounter = fc.oneof(
  fc.constantFrom<unknown>('', ' 1', '1 ', '+1', '-1', '1.5', '1e3', '0x1f', '١٢', '9'.repeat(16), null, true, [], {}, '\u0000'),
  fc.integer(), fc.double(),
);
const badSid = fc.oneof(fc.constantFrom<unknown>('', 'M'.repeat(65), null, 0, ['MZ'], {}), fc.integer());
const notObject = fc.oneof(fc.constantFrom<unknown>(null, [], 'x', 0, true, ['a']), fc.string({ maxLength: 8 }), fc.integer());
const setPath = (o: Obj, path: readonly string[], value: unknown): Obj => {
  const [head, ...rest] = path;
  if (head === undefined) return o;
  const child = o[head];
  return { ...o, [head]: rest.length === 0 ? value : setPath(typeof child === 'object' && child !== null ? (child as Obj) : {}, rest, value) };
};
const deleteKey = (o: Obj, key: string): Obj => Object.fromEntries(Object.entries(o).filter(([k]) => k !== key));

/** A base64 payload with one character outside the alphabet (length kept a multiple of 4). */
const badAlphabet = fc.record({ audio: fc.uint8Array({ minLength: 3, maxLength: 600 }), at: fc.nat(), ch: fc.constantFrom(...'!@#$%^&*()-_ .,:;\n\t"é€\u0000~`') })
  .map(({ audio, at, ch }) => {
    const s = Buffer.from(audio).toString('base64');
    const i = at % s.length;
    return s.slice(0, i) + ch + s.slice(i + 1);
  });
/** Valid alphabet, but length % 4 ≠ 0 or padding in the wrong place. */
const badShape = fc.oneof(
  fc.record({ audio: fc.uint8Array({ minLength: 1, maxLength: 600 }), extra: fc.string({ unit: fc.constantFrom(...BASE64_ALPHABET), minLength: 1, maxLength: 3 }) })
    .map(({ audio, extra }) => Buffer.from(audio).toString('base64') + extra),
  fc.constantFrom('A===', 'AA=A', '=AAA', 'AAAA=AAA', '====', 'AB==CD=='),
);

const mediaDefects: fc.Arbitrary<(f: Obj) => Labelled> = fc.oneof(
  badAlphabet.map((p) => (f: Obj) => labelled('payload alphabet', setPath(f, ['media', 'payload'], p), { kind: 'invalid', reason: 'base64' })),
  badShape.map((p) => (f: Obj) => labelled('payload length/padding', setPath(f, ['media', 'payload'], p), { kind: 'invalid', reason: 'base64' })),
  fc.integer({ min: MAX_PAYLOAD_CHARS / 4 * 3 + 1, max: 40_000 }).map((n) => (f: Obj) =>
    labelled('payload over 4 KiB', setPath(f, ['media', 'payload'], Buffer.alloc(n, 0x7f).toString('base64')), { kind: 'invalid', reason: 'payloadSize' })),
  fc.constant((f: Obj) => labelled('payload empty', setPath(f, ['media', 'payload'], ''), { kind: 'invalid', reason: 'payloadSize' })),
  fc.tuple(fc.constantFrom(['sequenceNumber'], ['media', 'chunk'], ['media', 'timestamp']), badCounter).map(([path, v]) => (f: Obj) =>
    labelled(`counter ${path.join('.')}`, setPath(f, path, v), { kind: 'invalid', reason: 'shape' })),
  badSid.map((v) => (f: Obj) => labelled('media streamSid', setPath(f, ['streamSid'], v), { kind: 'invalid', reason: 'shape' })),
  notObject.map((v) => (f: Obj) => labelled('media not an object', setPath(f, ['media'], v), { kind: 'invalid', reason: 'shape' })),
  fc.oneof(fc.integer(), fc.constantFrom<unknown>(null, [], {}, true)).map((v) => (f: Obj) =>
    labelled('payload not a string', setPath(f, ['media', 'payload'], v), { kind: 'invalid', reason: 'shape' })),
  fc.oneof(fc.integer(), fc.constantFrom<unknown>(null, [], {})).map((v) => (f: Obj) =>
    labelled('track not a string', setPath(f, ['media', 'track'], v), { kind: 'invalid', reason: 'shape' })),
  fc.constantFrom('sequenceNumber', 'streamSid', 'media').map((k) => (f: Obj) =>
    labelled(`media without ${k}`, deleteKey(f, k), { kind: 'invalid', reason: 'shape' })),
);

const startDefects: fc.Arbitrary<(f: Obj) => Labelled> = fc.oneof(
  fc.oneof(
    fc.record({ encoding: fc.constantFrom('audio/l16', 'audio/x-alaw', 'AUDIO/X-MULAW', ''), sampleRate: fc.constant(8000), channels: fc.constant(1) }),
    fc.record({ encoding: fc.constant('audio/x-mulaw'), sampleRate: fc.integer().filter((n) => n !== 8000), channels: fc.constant(1) }),
    fc.record({ encoding: fc.constant('audio/x-mulaw'), sampleRate: fc.constant(8000), channels: fc.integer().filter((n) => n !== 1) }),
  ).map((mf) => (f: Obj) => labelled('mediaFormat values', setPath(f, ['start', 'mediaFormat'], mf), { kind: 'invalid', reason: 'mediaFormat' })),
  // Numbers as strings: the only numeric fields are sampleRate and channels.
  fc.constantFrom(['sampleRate', '8000'], ['channels', '1']).map(([k, v]) => (f: Obj) =>
    labelled(`mediaFormat.${k} as a string`, setPath(f, ['start', 'mediaFormat', k ?? ''], v), { kind: 'invalid', reason: 'shape' })),
  fc.tuple(fc.constantFrom('streamSid', 'callSid', 'accountSid'), badSid).map(([k, v]) => (f: Obj) =>
    labelled(`start.${k}`, setPath(f, ['start', k], v), { kind: 'invalid', reason: 'shape' })),
  fc.oneof(
    notObject.filter((v) => !Array.isArray(v)),
    fc.constant(['a', 'b', 'c', 'd', 'e']),
    fc.constant(['x'.repeat(33)]),
    fc.constant([1]),
  ).map((v) => (f: Obj) => labelled('start.tracks', setPath(f, ['start', 'tracks'], v), { kind: 'invalid', reason: 'shape' })),
  fc.oneof(
    fc.constant({ a: 1 }),
    fc.constant({ token: null }),
    fc.constant(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']))),
    fc.constant({ big: 'v'.repeat(4097) }),
    fc.constant({ ['k'.repeat(257)]: 'v' }),
    fc.constantFrom<unknown>('params', [], 7, null),
  ).map((v) => (f: Obj) => labelled('start.customParameters', setPath(f, ['start', 'customParameters'], v), { kind: 'invalid', reason: 'shape' })),
  notObject.map((v) => (f: Obj) => labelled('start not an object', setPath(f, ['start'], v), { kind: 'invalid', reason: 'shape' })),
  badCounter.map((v) => (f: Obj) =>
    labelled('start.sequenceNumber', setPath(f, ['sequenceNumber'], v), { kind: 'invalid', reason: 'shape' })),
);

const otherDefects = fc.oneof(
  fc.oneof(fc.constantFrom<unknown>('', '12', 'x', 'E', '**', '1 ', null, []), fc.integer()).map((digit) =>
    labelled('dtmf.digit', { event: 'dtmf', dtmf: { track: 'inbound_track', digit } }, { kind: 'invalid', reason: 'shape' })),
  fc.oneof(fc.constantFrom<unknown>('', 'n'.repeat(257), null, []), fc.integer()).map((name) =>
    labelled('mark.name', { event: 'mark', mark: { name } }, { kind: 'invalid', reason: 'shape' })),
  fc.oneof(badSid.map((callSid) => ({ callSid })), notObject).map((stop) =>
    labelled('stop.stop', { event: 'stop', stop }, { kind: 'invalid', reason: 'shape' })),
  fc.oneof(fc.integer(), fc.constantFrom<unknown>(null, [], {}, ['media'], true)).map((event) =>
    labelled('event not a string', { event, media: {} }, { kind: 'invalid', reason: 'shape' })),
);

/** A valid frame with exactly one defect. */
export const defectiveFrame: fc.Arbitrary<Labelled> = fc.oneof(
  fc.tuple(validMedia, mediaDefects).map(([v, defect]) => defect(v.frame)),
  fc.tuple(validStart, startDefects).map(([v, defect]) => defect(v.frame)),
  otherDefects,
);

const labelledFrame = fc.oneof(validFrame, defectiveFrame);

// ---- text-level defects: a labelled frame's JSON, broken as text ------------------------------

export interface LabelledText { label: string; raw: string | Buffer; expected: Expected }

/**
 * A labelled frame serialised, then possibly broken as text: truncated (any proper prefix of an
 * object's JSON is not JSON), padded past the frame limit, or sent as a Buffer.
 */
export const labelledText: fc.Arbitrary<LabelledText> = fc
  .tuple(labelledFrame, fc.constantFrom('as is', 'buffer', 'truncated', 'oversize', 'whitespace'), fc.nat())
  .map(([l, how, n]) => {
    const json = JSON.stringify(l.frame);
    switch (how) {
      case 'buffer':
        return { label: `${l.label} (Buffer)`, raw: Buffer.from(json), expected: l.expected };
      case 'truncated':
        return { label: `${l.label} truncated`, raw: json.slice(0, n % json.length), expected: { kind: 'invalid', reason: 'json' } };
      case 'oversize':
        return { label: `${l.label} over 64 KiB`, raw: json + ' '.repeat(Math.max(0, MAX_FRAME_BYTES + 1 - json.length) + (n % 100)), expected: { kind: 'invalid', reason: 'tooLarge' } };
      case 'whitespace':
        return { label: `${l.label} in whitespace`, raw: `\n\t ${json} \r\n`, expected: l.expected };
      default:
        return { label: l.label, raw: json, expected: l.expected };
    }
  });

// ---- junk: only "never throws" is known ------------------------------------------------------

const deep = (n: number, open: string, close: string, core = '1') => open.repeat(n) + core + close.repeat(n);
/** Anything a hostile or broken peer might send. */
export const junkFrame: fc.Arbitrary<string | Buffer> = fc.oneof(
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.anything({ withNullPrototype: true, withObjectString: true, maxDepth: 3 }).map((v) => {
    try {
      return JSON.stringify(v) ?? 'undefined';
    } catch {
      return String(typeof v); // BigInt and friends
    }
  }),
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: 'grapheme', maxLength: 100 }),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  fc.tuple(fc.integer({ min: 1, max: 32_768 }), fc.constantFrom(['[', ']'], ['{"a":', '}'], ['{"event":"media","media":', '}'])).map(([n, [o, c]]) =>
    deep(n, o ?? '[', c ?? ']')),
  fc.integer({ min: 1, max: 32_768 }).map((n) => '['.repeat(n)), // unbalanced
  fc.tuple(fc.constantFrom('media', 'start', 'dtmf', 'mark', 'stop'), fc.integer({ min: 1, max: 20_000 })).map(([event, n]) =>
    `{"event":"${event}","${event}":${deep(n, '{"x":', '}')},"streamSid":${deep(n, '[', ']')}}`),
  fc.tuple(fc.constantFrom('mark', 'stop', 'dtmf'), fc.integer({ min: 1_000, max: 60_000 })).map(([event, n]) =>
    JSON.stringify({ event, [event]: { name: 'n'.repeat(n), callSid: 'C'.repeat(n), digit: '1'.repeat(n) } })),
  fc.constantFrom('', ' ', 'null', '[]', '{}', '0', '"media"', 'true', '{"event":null}', '{"__proto__":{"event":"media"}}',
    '{"event":"media","media":{"payload":"AAAA","chunk":"1","timestamp":"1"},"sequenceNumber":"1","streamSid":"M","__proto__":null}',
    '{"event":"start","start":{"__proto__":{"callSid":"CA1"}}}', '\uFEFF{"event":"connected"}', '{"event":"connected"}garbage'),
);

/** Every kind `parseInbound` may return. */
export const RESULT_KINDS: readonly InboundResult['kind'][] = ['connected', 'start', 'media', 'dtmf', 'mark', 'stop', 'ignored', 'invalid'];
